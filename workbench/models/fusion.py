"""Fused workbench ops in a transformers Qwen3 model, by patching its modules for the length of a context.

transformers writes RMSNorm, rotary embedding and the gated MLP as chains of small ATen ops (an RMSNorm
is to/pow/mean/add/rsqrt/mul/to/mul), so the dispatcher alone can only replace them one small op at a
time — one Python call each, which is what eager decoding pays for. Here each chain becomes one call:

- `rms_norm`: every Qwen3RMSNorm (input, post-attention, per-head q/k and final norms) calls
  `torch.nn.functional.rms_norm`, the ATen op that `use_ops` serves with our kernel;
- `add_rms_norm`: each decoder layer's residual add and post-attention RMSNorm become one fused call;
- `rope`: transformers' `apply_rotary_pos_emb` becomes our fused rotary kernel (q and k in one call);
- `silu_and_mul`: each MLP computes `down_proj(silu_and_mul(gate_proj(x), up_proj(x)))`.

Selection follows `use_ops`: `include`/`exclude` name registry ops, and an op left out keeps its module
as transformers wrote it. Fused ops without an ATen overload are called through the op's
implementation for the active backend (looked up on entry, as `use_ops` does); one that raises
Unsupported/TypeError/ValueError gives way to the original module code, counted as a fallback.
Patches are per module instance, except `apply_rotary_pos_emb`, a module-level function of the
transformers model file, which is swapped for the duration and restored on exit.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import Callable, Iterable, Iterator

import pandas as pd
import torch

from workbench import backends

FUSIONS = ("rms_norm", "add_rms_norm", "rope", "silu_and_mul")


class FusionCounts:
    """Calls of each fused op: served by workbench, or fallen back to the original code (and why)."""

    def __init__(self):
        self.handled: dict[str, int] = {}
        self.fallbacks: dict[str, dict[str, int]] = {}

    def hit(self, op: str) -> None:
        self.handled[op] = self.handled.get(op, 0) + 1

    def miss(self, op: str, reason: str) -> None:
        reasons = self.fallbacks.setdefault(op, {})
        reasons[reason] = reasons.get(reason, 0) + 1

    def table(self) -> pd.DataFrame:
        """Rows shaped like `use_ops` coverage: aten_op "(fused) <op>", op, calls, handled, fallback, reasons."""
        rows = []
        for op in sorted(set(self.handled) | set(self.fallbacks)):
            reasons = sorted(self.fallbacks.get(op, {}).items(), key=lambda kv: -kv[1])
            handled, fallback = self.handled.get(op, 0), sum(n for _, n in reasons)
            rows.append({"aten_op": f"(fused) {op}", "op": op, "calls": handled + fallback, "handled": handled,
                         "fallback": fallback, "reasons": "; ".join(f"{r} ({n})" for r, n in reasons)})
        return pd.DataFrame(rows, columns=["aten_op", "op", "calls", "handled", "fallback", "reasons"])


def selected(include: Iterable[str] | None, exclude: Iterable[str] | None) -> list[str]:
    """The fused ops that an include/exclude selection (registry op names) switches on."""
    from workbench.ops import REGISTRY

    chosen = [f for f in FUSIONS if f in REGISTRY]
    if include is not None:
        include = [include] if isinstance(include, str) else list(include)
        chosen = [f for f in chosen if f in include]
    if exclude is not None:
        exclude = [exclude] if isinstance(exclude, str) else list(exclude)
        chosen = [f for f in chosen if f not in exclude]
    return chosen


def _guarded(op: str, fast: Callable, slow: Callable, counts: FusionCounts) -> Callable:
    """Call `fast`; where it refuses the input, call `slow` (the original code) and record why.

    While `fast` runs, the ATen ops it calls itself (allocations, the Triton interpreter's copies) go
    straight to native and are not counted, as inside a kernel `use_ops` dispatched (its re-entrancy flag).
    """
    from workbench.dispatch import FALLBACK_ERRORS, _tls

    def call(*args, **kwargs):
        was, _tls.busy = _tls.busy, True
        try:
            out = fast(*args, **kwargs)
        except FALLBACK_ERRORS as e:
            _tls.busy = was
            counts.miss(op, str(e).splitlines()[0] if str(e) else type(e).__name__)
            return slow(*args, **kwargs)
        finally:
            _tls.busy = was
        counts.hit(op)
        return out

    label = f"workbench::{op}"

    def call_traced(*args, **kwargs):
        # Under torch.profiler the fused call gets its own range, so its kernels are not "outside aten ops";
        # otherwise no range at all: eager decoding pays for every microsecond on this path.
        if torch.autograd._profiler_enabled():
            with torch.profiler.record_function(label):
                return call(*args, **kwargs)
        return call(*args, **kwargs)
    return call_traced


def _returns_tensor(layer_cls) -> bool:
    """Decoder layers return a tensor in transformers >= 4.54 and a tuple before."""
    annotation = inspect.signature(layer_cls.forward).return_annotation
    return annotation is torch.Tensor or annotation in ("torch.Tensor", "Tensor")


def _patch_rms_norm(norm) -> Callable:
    weight, eps = norm.weight, norm.variance_epsilon

    def forward(x):
        return torch.nn.functional.rms_norm(x, (x.shape[-1],), weight, eps)
    return forward


def _patch_mlp(mlp, impl: Callable, counts: FusionCounts) -> Callable:
    fused = _guarded("silu_and_mul", impl, lambda gate, up: torch.nn.functional.silu(gate) * up, counts)

    def forward(x):
        return mlp.down_proj(fused(mlp.gate_proj(x), mlp.up_proj(x)))
    return forward


def _patch_layer(layer, impl: Callable, counts: FusionCounts, returns_tensor: bool) -> Callable:
    norm = layer.post_attention_layernorm
    eps = norm.variance_epsilon

    def unfused(x, residual, weight, eps):
        total = residual + x
        return norm(total), total

    fused = _guarded("add_rms_norm", impl, unfused, counts)

    def forward(hidden_states, **kwargs):  # transformers passes everything but hidden_states by keyword
        residual = hidden_states
        attn = layer.self_attn(hidden_states=layer.input_layernorm(hidden_states), **kwargs)[0]
        normed, residual = fused(attn, residual, norm.weight, eps)
        out = residual + layer.mlp(normed)
        return out if returns_tensor else (out,)
    return forward


@contextlib.contextmanager
def fused(model: torch.nn.Module, include: Iterable[str] | None = None,
          exclude: Iterable[str] | None = None) -> Iterator[FusionCounts]:
    """Inside, the selected fused ops replace their transformers code in `model`; yields the call counts."""
    from workbench.ops import REGISTRY

    counts = FusionCounts()
    ops = selected(include, exclude)
    backend = backends.active().name
    impl = {op: REGISTRY[op].implementation(backend) for op in ops}
    modeling = sys.modules[type(model).__module__]
    instance_patches: list[torch.nn.Module] = []
    global_patch = None
    try:
        for module in model.modules():
            kind = type(module).__name__
            if kind.endswith("RMSNorm") and "rms_norm" in ops:
                module.forward = _patch_rms_norm(module)
            elif kind.endswith("MLP") and "silu_and_mul" in ops and getattr(module.config, "hidden_act", "") == "silu":
                module.forward = _patch_mlp(module, impl["silu_and_mul"], counts)
            elif kind.endswith("DecoderLayer") and "add_rms_norm" in ops:
                module.forward = _patch_layer(module, impl["add_rms_norm"], counts, _returns_tensor(type(module)))
            else:
                continue
            instance_patches.append(module)
        if "rope" in ops and hasattr(modeling, "apply_rotary_pos_emb"):
            original = modeling.apply_rotary_pos_emb

            def unfused(q, k, cos, sin, unsqueeze_dim=1):
                return original(q, k, cos, sin, unsqueeze_dim=unsqueeze_dim)

            fast = _guarded("rope", impl["rope"], unfused, counts)

            def apply_rotary_pos_emb(q, k, cos, sin, position_ids=None, unsqueeze_dim=1):
                return fast(q, k, cos, sin, unsqueeze_dim=unsqueeze_dim)

            global_patch = (modeling, original)
            modeling.apply_rotary_pos_emb = apply_rotary_pos_emb
        yield counts
    finally:
        for module in instance_patches:
            del module.forward  # the class's forward shows through again
        if global_patch is not None:
            global_patch[0].apply_rotary_pos_emb = global_patch[1]


def split_selection(names: Iterable[str] | None) -> tuple[list[str] | None, list[str]]:
    """(names for `use_ops`, fused-only names) — use_ops refuses ops that have no ATen overload."""
    if names is None:
        return None, []
    from workbench.dispatch import claims
    from workbench.ops import REGISTRY

    names = [names] if isinstance(names, str) else list(names)
    with_aten = set(claims().values())
    unknown = [n for n in names if n not in REGISTRY and not n.startswith("aten::")]
    if unknown:
        raise ValueError(f"ops: expected registered op names, got unknown {unknown}; registered: {sorted(REGISTRY)}")
    aten = [n for n in names if n in with_aten or n.startswith("aten::")]
    fused_only = [n for n in names if n in FUSIONS and n not in aten]
    dropped = [n for n in names if n not in aten and n not in fused_only]
    if dropped:
        raise ValueError(f"ops: {dropped} have neither an ATen overload nor a module fusion, so nothing can "
                         "switch them on in a model")
    return aten, fused_only


class SideCoverage:
    """The workbench side's coverage: `use_ops`'s ATen rows, then the fused-op rows."""

    def __init__(self, aten, fusions: FusionCounts | None):
        self.aten, self.fusions = aten, fusions

    def table(self) -> pd.DataFrame:
        frames = [self.aten.table()] + ([self.fusions.table()] if self.fusions is not None else [])
        frames = [f for f in frames if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else self.aten.table()


@contextlib.contextmanager
def workbench_ops(model: torch.nn.Module, include: Iterable[str] | None = None,
                  exclude: Iterable[str] | None = None, fuse: bool = True) -> Iterator[SideCoverage]:
    """Our kernels in `model`: `use_ops` for ATen ops plus (if `fuse`) the module fusions, one selection."""
    import workbench

    aten_include, _ = split_selection(include)
    aten_exclude, _ = split_selection(exclude)
    with contextlib.ExitStack() as stack:
        cov = stack.enter_context(workbench.use_ops(include=aten_include, exclude=aten_exclude or None))
        counts = stack.enter_context(fused(model, include, exclude)) if fuse else None
        yield SideCoverage(cov, counts)


__all__ = ["FUSIONS", "FusionCounts", "SideCoverage", "fused", "selected", "split_selection", "workbench_ops"]
