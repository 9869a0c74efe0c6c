"""Checking one node of a traced graph: its op run on real inputs shaped like the node's (a refusal or a
failure costs that node only, with the reason), and inductor's decompositions less the overloads we keep
whole. Shared by the backend's rewrite and the fusion patterns."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
import torch.fx

from workbench.ops import _library
from workbench.selection import FALLBACK_ERRORS, aten_overload


def hint(v) -> int:
    if isinstance(v, int):
        return v
    node = v.node
    hint = getattr(node, "hint", None)
    return int(hint) if hint is not None else int(node.shape_env.size_hint(node.expr))


def real(v):
    """A real value shaped like a traced one: random floats, zero integers and bools (valid indices)."""
    if isinstance(v, torch.Tensor):
        # Filled through a flat base: a broadcast input (a stride of 0) shares elements, which normal_()
        # on the strided view refuses.
        shape, strides = [hint(s) for s in v.shape], [hint(s) for s in v.stride()]
        size = 0 if 0 in shape else 1 + sum((n - 1) * s for n, s in zip(shape, strides))
        base = torch.empty(size, dtype=v.dtype, device=v.device)
        base.normal_() if base.is_floating_point() else base.zero_()
        return base.as_strided(shape, strides)
    if isinstance(v, torch.SymInt):
        return hint(v)
    if isinstance(v, torch.SymFloat):
        return float(v.node.hint)
    if isinstance(v, (list, tuple)):
        return type(v)(real(x) for x in v)
    if isinstance(v, dict):
        return {k: real(x) for k, x in v.items()}
    return v


def signature(v):
    if isinstance(v, torch.Tensor):
        return ("T", tuple(hint(s) for s in v.shape), tuple(hint(s) for s in v.stride()), v.dtype, v.device)
    if isinstance(v, (list, tuple)):
        return tuple(signature(x) for x in v)
    if isinstance(v, dict):
        return tuple((k, signature(x)) for k, x in v.items())
    if isinstance(v, (torch.SymInt, torch.SymFloat)):
        return ("S", hint(v) if isinstance(v, torch.SymInt) else float(v.node.hint))
    return repr(v)


RELAYOUT = "relayout"  # verdict: our kernel takes the inputs, its output needs a copy to the ATen layout


def layout_differs(out, expected, strides: bool = True) -> str:
    """'' where `out` has the dtype, shape and strides of the traced value `expected`; RELAYOUT where only
    strides differ (all concrete); else how it differs."""
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    exps = list(expected) if isinstance(expected, (list, tuple)) else [expected]
    if isinstance(out, (list, tuple)) != isinstance(expected, (list, tuple)) or len(outs) != len(exps):
        return f"returns {type(out).__name__}, the ATen op {type(expected).__name__}"
    relayout = False
    for o, e in zip(outs, exps):
        if not isinstance(o, torch.Tensor):
            return f"returns {type(o).__name__}, the ATen op a tensor"
        shape = tuple(hint(s) for s in e.shape)
        if o.dtype != e.dtype or tuple(o.shape) != shape:
            return f"returns {o.dtype} {tuple(o.shape)}, the ATen op {e.dtype} {shape}"
        if strides and any(a != hint(b) for a, b, n in zip(o.stride(), e.stride(), shape) if n > 1):
            if not all(isinstance(b, int) for b in e.stride()):
                return f"output strides {tuple(o.stride())} differ from the ATen op's (symbolic)"
            relayout = True
    return RELAYOUT if relayout else ""


def restride(node: torch.fx.Node, expected) -> None:
    """`node` (ours, returning a contiguous value) gives its users `expected`'s strides, which the graph
    after it was traced for: a strided copy after it takes over its uses."""
    with node.graph.inserting_after(node):
        copy = node.graph.call_function(torch.ops.prims.copy_strided.default, (node, list(expected.stride())))
    node.replace_all_uses_with(copy, delete_user_cb=lambda user: user is not copy)
    copy.meta["val"] = expected
    with expected.fake_mode:
        node.meta["val"] = expected.contiguous()


def value(a):
    return a.meta.get("val", a.meta.get("example_value")) if isinstance(a, torch.fx.Node) else a


def traced(args, kwargs):
    return torch.fx.node.map_aggregate(args, value), torch.fx.node.map_aggregate(kwargs, value)


class Checker:
    """Runs an op on real inputs shaped like a node's; the verdict per distinct signature is cached.
    `fastest`: where a `native` op is given and ours takes the inputs, both are timed on them too (device
    time, alternated rounds) and ours is kept only where it is faster beyond the timing spread."""

    def __init__(self, fastest: bool = False):
        self.fastest = fastest
        self.verdicts: dict[tuple, str] = {}

    def __call__(
        self,
        label: str,
        run: Callable[..., Any],
        args,
        kwargs,
        expected,
        strides: bool = True,
        native: Callable[..., Any] | None = None,
    ) -> str:
        """'' if `run` takes these inputs, RELAYOUT if it does with other output strides (when `strides`
        matter), else the reason it does not (with `fastest`: also where `native` is as fast or faster)."""
        key = (label, signature(args), signature(kwargs), strides)
        if key not in self.verdicts:
            native = native if self.fastest else None
            self.verdicts[key] = self._check(run, args, kwargs, expected, strides, native)
        return self.verdicts[key]

    @staticmethod
    def _check(run, args, kwargs, expected, strides: bool, native) -> str:
        from torch.utils._python_dispatch import _disable_current_modes

        # Real tensors, outside every fake or tracing mode the compiler is in.
        with _disable_current_modes(), torch.no_grad():
            real_args, real_kwargs = real(args), real(kwargs)
            _library.strict.on = True
            try:
                out = run(*real_args, **real_kwargs)
            except FALLBACK_ERRORS as e:
                return str(e).splitlines()[0] if str(e) else type(e).__name__
            except Exception as e:  # noqa: BLE001 (a kernel failing for one shape costs its node only)
                return f"kernel failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            finally:
                _library.strict.on = False
            verdict = layout_differs(out, expected, strides)
            if native is not None and verdict in ("", RELAYOUT):
                verdict = _slower(run, native, real_args, real_kwargs) or verdict
        return verdict


def _slower(ours: Callable[..., Any], native: Callable[..., Any], args, kwargs) -> str:
    """'' where `ours` is faster than `native` on these inputs by more than the timing spread; else the
    reason to keep the node native, with both device times."""
    from workbench.profiling.timing import alternated_rounds

    rounds = alternated_rounds(
        [lambda: native(*args, **kwargs), lambda: ours(*args, **kwargs)], warmup_ms=2.0, rep_ms=10.0
    )
    if rounds.ratio(1, reference=0).beyond_spread:
        return ""
    native_us, ours_us = (rounds.kernel_time(i).ms * 1e3 for i in (0, 1))
    return f"native as fast or faster here ({native_us:.1f} us, ours {ours_us:.1f} us)"


@functools.cache
def decompositions_keeping(kept: frozenset) -> dict:
    """Inductor's decompositions, less those of the overloads in `kept` (they stay one node each)."""
    from torch._inductor.decomposition import select_decomp_table

    keep = {aten_overload(ov) for ov in kept}
    return {op: fn for op, fn in select_decomp_table().items() if op not in keep}
