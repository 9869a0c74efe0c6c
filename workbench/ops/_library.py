"""`torch.ops.workbench.<op>`: every registered op as a PyTorch custom operator.

torch.compile and torch.export see a custom operator as one opaque node whose output they learn from a
fake implementation, so code that calls our ops traces without graph breaks and without tracing into
Triton (or the Triton interpreter). Each op gets, in the `workbench` namespace:

- `.default`, the op's own signature, where torch can infer the schema from the implementation's type
  hints (e.g. `rms_norm(Tensor x, Tensor? weight=None, float eps=1e-06) -> Tensor`); its fake
  implementation is the op's native reference run on fake tensors;
- one overload per ATen overload the op can replace (`OpSpec.aten_impls`), with that overload's schema,
  named `<aten op>_<overload>` (`torch.ops.workbench.add.add_Tensor`, `...rms_norm.rms_norm_default`).
  The compile backend puts these in place of ATen nodes; their fake implementation is the ATen overload
  itself, and their kernel the op's adapter. Every kernel returns contiguous outputs and every fake says
  so (a compiler plans the code after a custom operator from its fake's strides). Inputs the adapter
  refuses at run time (a shape the node's check at compile time did not see) run the ATen overload
  instead, with a warning per op and reason.
  Overloads that mutate or alias an input (`copy_`, `fill_`) get no twin.

Kernels are registered on the active backend's dispatch key, bound before any op module is imported,
and look the op up in the registry at call time (so a variant added later is the one that runs).
Until the ops have a backward, an Autograd kernel refuses inputs that need a gradient, naming the op,
rather than returning a tensor with no grad_fn; otherwise it runs the op below autograd.
"""

from __future__ import annotations

import inspect
import threading
import warnings
from collections.abc import Callable
from typing import Any

import torch

from workbench import backends

from .spec import FALLBACK_ERRORS, REGISTRY, OpSpec, aten_overload

NAMESPACE = "workbench"
_lib = torch.library.Library(NAMESPACE, "FRAGMENT")
_defined: set[str] = set()  # qualified names "op.overload" defined so far
_twins: dict[str, str] = {}  # ATen overload name -> twin overload name under its op
_warned: set[tuple[str, str]] = set()


class _Strict(threading.local):
    on = False  # while the compile backend checks a node, a refusal raises instead of falling back


strict = _Strict()


def twin_name(aten_name: str) -> str:
    """'aten::add.Tensor' -> 'add_Tensor'; 'aten::mm' -> 'mm_default'; 'aten::__and__.Tensor' -> 'and_Tensor'
    (torch refuses overload names with leading underscores)."""
    op, _, overload = aten_name.partition("::")[2].partition(".")
    return f"{op.strip('_')}_{overload or 'default'}"


def twin(op: str, aten_name: str) -> torch._ops.OpOverload | None:
    """The custom operator standing in for ATen overload `aten_name` (owned by registry op `op`), or None."""
    name = _twins.get(aten_name)
    return getattr(getattr(torch.ops.workbench, op), name) if name else None


def generic(op: str) -> torch._ops.OpOverload | None:
    """The custom operator with the op's own signature, or None where the schema could not be inferred."""
    return getattr(torch.ops.workbench, op).default if f"{op}.default" in _defined else None


def needs_grad(args: tuple, kwargs: dict) -> bool:
    """Whether any tensor argument (also inside a list, as cat's) requires grad."""
    for a in (*args, *kwargs.values()):
        if isinstance(a, torch.Tensor):
            if a.requires_grad:
                return True
        elif isinstance(a, (list, tuple)) and any(isinstance(t, torch.Tensor) and t.requires_grad for t in a):
            return True
    return False


def no_backward(op: str) -> RuntimeError:
    return RuntimeError(
        f"workbench op {op!r} has no backward yet: its inputs require grad while grad mode is on. "
        "Call it under torch.no_grad() / torch.inference_mode(), or use the torch op"
    )


def _autograd_kernel(op: str, qualname: str) -> Callable[..., Any]:
    def kernel(*args, **kwargs):
        if torch.is_grad_enabled() and needs_grad(args, kwargs):
            raise no_backward(op)
        overload = getattr(getattr(torch.ops.workbench, qualname.split(".")[0]), qualname.split(".")[1])
        with torch._C._AutoDispatchBelowAutograd():
            return overload(*args, **kwargs)

    return kernel


def _define(qualname: str, schema: str, kernel: Callable, fake: Callable, op: str) -> None:
    name = qualname.removesuffix(".default")  # torch spells the default overload without a suffix
    _lib.define(f"{name}{schema}")
    _lib.impl(name, kernel, backends.active().dispatch_key)
    _lib.impl(name, _autograd_kernel(op, qualname), "Autograd")
    torch.library.register_fake(f"{NAMESPACE}::{name}", fake, lib=_lib)
    _defined.add(qualname)


def _generic_schema(spec: OpSpec) -> str | None:
    try:
        return torch.library.infer_schema(spec.impl, mutates_args=())
    except Exception:  # noqa: BLE001 (untyped, polymorphic or unresolvable hints: the ATen twins cover those)
        return None


def contiguous(out):
    """Outputs made contiguous: what every custom operator here returns, and what its fake says it returns
    (a compiler trusts the fake's strides; the ATen op's or the reference's may differ from a kernel's)."""
    if isinstance(out, torch.Tensor):
        return out if out.is_contiguous() else out.contiguous()
    if isinstance(out, (tuple, list)):
        return type(out)(contiguous(o) for o in out)
    return out


def _run_generic(op: str, backend: str) -> Callable[..., Any]:
    def kernel(*args, **kwargs):
        return contiguous(REGISTRY[op].implementation(backend)(*args, **kwargs))

    return kernel


def _fake_generic(op: str) -> Callable[..., Any]:
    def fake(*args, **kwargs):
        return contiguous(REGISTRY[op].reference(*args, **kwargs))

    return fake


def _fake_twin(overload: torch._ops.OpOverload) -> Callable[..., Any]:
    def fake(*args, **kwargs):
        out = overload(*args, **kwargs)
        return type(out)(*map(contiguous, out)) if hasattr(out, "_fields") else contiguous(out)

    return fake


def _run_twin(op: str, aten_name: str, backend: str) -> Callable[..., Any]:
    native = aten_overload(aten_name)

    def kernel(*args, **kwargs):
        spec = REGISTRY[op]
        try:
            return contiguous(spec.aten_impls[aten_name](spec.implementation(backend), *args, **kwargs))
        except FALLBACK_ERRORS as e:
            if strict.on:
                raise
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            if (aten_name, reason) not in _warned:
                _warned.add((aten_name, reason))
                warnings.warn(
                    f"workbench op {op!r} refused {aten_name} at run time ({reason}); it runs natively",
                    stacklevel=2,
                )
            return contiguous(native(*args, **kwargs))

    return kernel


def define(spec: OpSpec) -> None:
    """Define (once per name) the custom operators of a registered op; see the module docstring."""
    backend = backends.active().name
    if f"{spec.name}.default" not in _defined:
        schema = _generic_schema(spec)
        if schema is not None:
            _define(
                f"{spec.name}.default",
                schema,
                _run_generic(spec.name, backend),
                _fake_generic(spec.name),
                spec.name,
            )
    for aten_name in spec.aten_impls:
        overload = aten_overload(aten_name)
        schema = overload._schema
        if schema.is_mutable or any(a.alias_info is not None for a in (*schema.arguments, *schema.returns)):
            continue
        name = twin_name(aten_name)
        qualname = f"{spec.name}.{name}"
        if qualname not in _defined:
            signature = str(schema)[str(schema).index("(") :]
            _define(
                qualname, signature, _run_twin(spec.name, aten_name, backend), _fake_twin(overload), spec.name
            )
        _twins[aten_name] = name


def traced_entry(spec: OpSpec) -> Callable[..., Any]:
    """What `workbench.ops.<op>` calls while dynamo traces: the custom operator with the op's signature,
    else the op's overload packet (torch picks the ATen twin whose schema fits the arguments)."""
    op = spec.name
    params = [
        p
        for p in inspect.signature(spec.impl).parameters.values()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    positional = [p for p in params if p.kind != p.KEYWORD_ONLY]

    def call(*args, **kwargs):
        if generic(op) is not None:
            return generic(op)(*args, **kwargs)
        # The twins' first argument is ATen's `self`: pass the op's positional parameters by position.
        args, kwargs = list(args), dict(kwargs)
        rest = positional[len(args) :]
        given = [i for i, p in enumerate(rest) if p.name in kwargs]
        for p in rest[: given[-1] + 1] if given else ():
            args.append(kwargs.pop(p.name) if p.name in kwargs else p.default)
        return getattr(torch.ops.workbench, op)(*args, **kwargs)

    return call
