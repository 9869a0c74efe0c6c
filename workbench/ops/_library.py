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
Autograd: an op with a backward (`OpSpec.backward` / `setup_context`, on the op's own signature) has them
registered on `.default` with `torch.library.register_autograd`, so eager calls, torch.compile and
torch.export all train through them (a backward calls custom operators only: `backward_op` ones or the ops'
own `.default`, so that AOTAutograd can trace it); its twins, for inputs that need a gradient, run their
adapter on `.default` (so the same formula serves the ATen signature). An op without a backward keeps an
Autograd kernel that refuses inputs needing a gradient, naming the op, rather than returning a tensor with
no grad_fn; inputs that need none run below autograd.
"""

from __future__ import annotations

import functools
import inspect
import threading
import warnings
from collections.abc import Callable
from typing import Any

import torch

from workbench import backends

from .mlu.persistent import persistent
from .spec import FALLBACK_ERRORS, GENERIC, REGISTRY, OpSpec, aten_overload, on_register

NAMESPACE = "workbench"
_lib = torch.library.Library(NAMESPACE, "FRAGMENT")
_defined: set[str] = set()  # qualified names "op.overload" defined so far
_twins: dict[str, str] = {}  # ATen overload name -> twin overload name under its op
_warned: set[tuple[str, str]] = set()


class _Strict(threading.local):
    on = False  # while the compile backend checks a node, a refusal raises instead of falling back


strict = _Strict()


class _KernelState(threading.local):
    busy = False  # inside a workbench kernel (or a use_ops fallback) on this thread


# Read by workbench.dispatch: while busy, the ATen calls a kernel makes (allocation, views, copies) run
# natively rather than through use_ops.
kernel_state = _KernelState()


def _as_kernel(backward: Callable[..., Any]) -> Callable[..., Any]:
    """An op's backward run as one of our kernels (its own ATen calls native under use_ops, as a forward's
    are): autograd calls it outside any use_ops kernel."""

    def run(ctx, *grads):
        state = kernel_state
        was, state.busy = state.busy, True
        try:
            return backward(ctx, *grads)
        finally:
            state.busy = was

    return run


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


def trainable(op: str) -> torch._ops.OpOverload:
    """The custom operator that carries the op's backward (`.default`); raises where the op has none."""
    if REGISTRY[op].backward is None or generic(op) is None:
        raise no_backward(op)
    return generic(op)


# name -> the custom operator `backward_op` defined under it, once per process
_backward_ops: dict[str, Any] = {}


def backward_op(name: str, fake: Callable[..., Any]) -> Callable[[Callable], Any]:
    """Decorator: a backward's launcher as the custom operator `workbench::<name>`, with `fake` giving its
    outputs' metadata. torch.compile's AOTAutograd traces a backward with fake tensors: it must see our
    kernels as opaque operators, never a Triton launch. The launcher's type hints are its schema.

    Defined once per process: a second module executing the same decorator (a porting candidate made from
    the op's source) gets the operator already defined. Defining it again would make torch drop the first
    definition while the op's module still calls it, a use-after-free inside the dispatcher."""

    def wrap(fn: Callable) -> Any:
        op = _backward_ops.get(name)
        if op is None:
            op = _backward_ops[name] = torch.library.custom_op(f"{NAMESPACE}::{name}", mutates_args=())(fn)
            op.register_fake(fake)
        return op

    return wrap


def overloads() -> list[torch._ops.OpOverload]:
    """Every custom operator defined so far: the ops' own (`.default`), their ATen twins, backward ops."""
    qualnames = [*_defined, *(f"{name}.default" for name in _backward_ops)]
    pairs = (qualname.split(".") for qualname in qualnames)
    return [getattr(getattr(torch.ops.workbench, op), overload) for op, overload in pairs]


def _autograd_kernel(op: str, qualname: str, aten_name: str | None) -> Callable[..., Any]:
    def kernel(*args, **kwargs):
        if torch.is_grad_enabled() and needs_grad(args, kwargs):
            if aten_name is None:  # `.default` of an op without a backward (else register_autograd serves it)
                raise no_backward(op)
            return REGISTRY[op].aten_impls[aten_name](trainable(op), *args, **kwargs)
        overload = getattr(getattr(torch.ops.workbench, qualname.split(".")[0]), qualname.split(".")[1])
        with torch._C._AutoDispatchBelowAutograd():
            return overload(*args, **kwargs)

    return kernel


def _define(
    qualname: str, schema: str, kernel: Callable, fake: Callable, op: str, aten_name: str | None = None
) -> None:
    """Define one custom operator; `aten_name` names the ATen overload a twin stands in for (None for
    `.default`), given only where the op has a backward for the twin's grad-requiring calls to use."""
    name = qualname.removesuffix(".default")  # torch spells the default overload without a suffix
    spec = REGISTRY[op]
    _lib.define(f"{name}{schema}")
    _lib.impl(name, kernel, backends.active().dispatch_key)
    torch.library.register_fake(f"{NAMESPACE}::{name}", fake, lib=_lib)
    if aten_name is None and spec.backward is not None:
        torch.library.register_autograd(
            f"{NAMESPACE}::{name}", _as_kernel(spec.backward), setup_context=spec.setup_context, lib=_lib
        )
    else:
        _lib.impl(name, _autograd_kernel(op, qualname, aten_name), "Autograd")
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
    """`.default`'s kernel: the backend's implementation, or, inside `launch_style()` of the other style,
    that style's form ("mlu": written MLU variants too; "generic" for tile launches), so that a backward
    that recomputes through our ops runs in one launch style throughout."""
    own = backends.active().policy.persistent
    other = "mlu" if not own else GENERIC

    def kernel(*args, **kwargs):
        name = backend if persistent() == own else other
        return contiguous(REGISTRY[op].implementation(name)(*args, **kwargs))

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
        elif spec.backward is not None:
            raise ValueError(
                f"op {spec.name!r} has a backward but no schema torch can infer from its type hints"
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
                qualname,
                signature,
                _run_twin(spec.name, aten_name, backend),
                _fake_twin(overload),
                spec.name,
                aten_name if spec.backward is not None else None,
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


def dispatching(spec: OpSpec) -> Callable[..., Any]:
    """`workbench.ops.<op>`: a function with the op's generic signature that runs the active backend's
    implementation (its variant, e.g. a written mlu one on an MLU, else the generic kernel in the backend's
    style); under torch.compile it calls the op's custom operator (`traced_entry`)."""
    active, variants, impl = backends.active().name, spec.variants, spec.impl
    traced = traced_entry(spec)
    compiling, grad_enabled = torch.compiler.is_compiling, torch.is_grad_enabled

    @functools.wraps(spec.impl)
    def call(*args, **kwargs):
        if compiling():  # dynamo traces the custom operator, never the Triton launch
            return traced(*args, **kwargs)
        if grad_enabled() and needs_grad(args, kwargs):  # autograd's path, or refuse rather than drop it
            return trainable(spec.name)(*args, **kwargs)
        return variants.get(active, impl)(*args, **kwargs)

    return call


on_register(define)
