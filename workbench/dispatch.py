"""ATen dispatch override: workbench's Triton ops in place of native kernels, with a coverage report.

    with workbench.use_ops(include=None, exclude=None) as cov:
        model(**inputs)                      # aten::add.Tensor, aten::mm, ... run our kernels
    cov.table()                              # per ATen overload: calls, handled, fallback, reasons

`use_ops` (a context manager) and `enable()` / `disable()` register one Python kernel per ATen overload
that a selected op claims (`OpSpec.aten_impls`) on the active backend's dispatch key (CPU for the
interpreter, CUDA, PrivateUse1 for MLU) through `torch.library.Library(..., "IMPL")`.

How native behaviour stays reachable:
- Fallback. An adapter that raises `Unsupported`, TypeError or ValueError (a dtype, layout or shape its
  kernel does not take; the wrappers validate before they write anything) gives way to the native
  kernel. That kernel was fetched with `torch.library.get_kernel` before we registered, and is called
  with `call_boxed` below our registration: it never passes through the dispatcher to us again.
- Re-entrancy. While a workbench kernel or a fallback runs, the ATen ops it calls itself (allocation,
  `.contiguous()`, a native composite's decomposition, the Triton interpreter's copies) go straight to
  native and are not counted.
- Exit. All registrations live in one Library; when the last selection ends it is destroyed, which
  restores the dispatch table exactly.

Nesting: contexts form a stack over the process-wide `enable()` selection and the innermost one decides
what is replaced (each `include`/`exclude` is a full selection, not relative to the enclosing one). On
exit, a context's counts are added to the enclosing recorder. The dispatcher is process-wide, so the
override applies to every thread; the re-entrancy flag is per thread.

Training. For an op with a backward (`OpSpec.backward`), the kernel also goes on the backend's Autograd
key; a call whose tensor inputs require grad while grad mode is on runs the adapter on the op's custom
operator (`torch.ops.workbench.<op>.default`), which carries the backward, so autograd records our
backward kernels. A composite op (which autograd sees only through its decomposition) without a backward
runs natively there (reason "no backward"), so gradients stay exact. Every other op's kernel sits on the
backend key alone, below torch's own autograd kernel, which has already recorded torch's derivative
formula when our forward runs: such calls are ours whether or not their inputs require grad.

Under `torch.compile`, this override reaches only the ATen calls compiled code still makes; inductor's
own kernels do not pass through it. The first compilation inside a selection without the workbench
backend warns once and names `torch.compile(..., backend="workbench")`, which puts our ops in the graph.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Iterable, Iterator
from numbers import Number
from typing import Any

import torch

from workbench import backends
from workbench.ops import _index_check, _library, _tuning
from workbench.ops.spec import REGISTRY, same_arguments
from workbench.selection import FALLBACK_ERRORS, aten_overload, claims, select

__all__ = [
    "FALLBACK_ERRORS",
    "Coverage",
    "claims",
    "disable",
    "enable",
    "replaced",
    "through_use_ops",
    "use_ops",
]


class Coverage:
    """Counts, per ATen overload, the calls (use_ops) or graph nodes (torch.compile with the workbench
    backend) handled by workbench and those that went to native (why). Fused ops that replace a chain of
    ATen ops are rows named "(pattern) <op>".

    Handled calls are counted in one-element lists (`counter`), one per overload, that the registered
    kernels hold from registration on: a call increments its slot, with no lookup by name.
    """

    def __init__(self, ops: dict[str, str] | None = None, unit: str = "calls"):
        self._handled: dict[str, list[int]] = {}
        self.fallbacks: dict[str, dict[str, int]] = {}
        self._ops = dict(ops or {})  # ATen overload -> workbench op name
        self.unit = unit  # what is counted: "calls" or "nodes"
        self.not_enabled: dict[str, str] = {}  # ATen overload -> why the selection policy left it native

    def counter(self, overload: str) -> list[int]:
        """The slot that counts `overload`'s handled calls (made on first request)."""
        slot = self._handled.get(overload)
        if slot is None:
            slot = self._handled[overload] = [0]
        return slot

    @property
    def handled(self) -> dict[str, int]:
        """ATen overload -> calls handled by workbench (overloads with at least one)."""
        return {overload: slot[0] for overload, slot in self._handled.items() if slot[0]}

    def record_handled(self, overload: str, n: int = 1, op: str | None = None) -> None:
        self.counter(overload)[0] += n
        if op is not None:
            self._ops[overload] = op

    def record_fallback(self, overload: str, reason: str, n: int = 1, op: str | None = None) -> None:
        reasons = self.fallbacks.setdefault(overload, {})
        reasons[reason] = reasons.get(reason, 0) + n
        if op is not None:
            self._ops[overload] = op

    def merge(self, other: Coverage) -> None:
        for overload, n in other.handled.items():
            self.counter(overload)[0] += n
        for overload, reasons in other.fallbacks.items():
            for reason, n in reasons.items():
                self.record_fallback(overload, reason, n)
        self._ops.update(other._ops)
        self.not_enabled.update(other.not_enabled)

    def table(self):
        """One row per ATen overload seen: aten_op, op, calls (or nodes), handled, fallback, reasons.

        `reasons` lists each fallback reason with its count, most frequent first, joined by "; ".
        Rows are sorted by calls (nodes), most first; overloads the selection policy left native come last,
        with none counted (they never reach workbench) and the policy's reason.
        """
        import pandas as pd

        rows = [
            {
                "aten_op": overload,
                "op": self._ops.get(overload, ""),
                "calls": 0,
                "handled": 0,
                "fallback": 0,
                "reasons": reason,
            }
            for overload, reason in self.not_enabled.items()
        ]
        handled_calls = self.handled
        for overload in set(handled_calls) | set(self.fallbacks):
            reasons = sorted(self.fallbacks.get(overload, {}).items(), key=lambda kv: (-kv[1], kv[0]))
            handled, fallback = handled_calls.get(overload, 0), sum(n for _, n in reasons)
            rows.append(
                {
                    "aten_op": overload,
                    "op": self._ops.get(overload, ""),
                    self.unit: handled + fallback,
                    "handled": handled,
                    "fallback": fallback,
                    "reasons": "; ".join(f"{r} ({n})" for r, n in reasons),
                }
            )
        columns = ["aten_op", "op", self.unit, "handled", "fallback", "reasons"]
        df = pd.DataFrame(rows, columns=columns)
        return df.sort_values([self.unit, "aten_op"], ascending=[False, True], ignore_index=True)

    def __repr__(self) -> str:
        handled_calls = self.handled
        handled = sum(handled_calls.values())
        fallback = sum(n for r in self.fallbacks.values() for n in r.values())
        ops = len(handled_calls.keys() | self.fallbacks.keys())
        return f"<Coverage {handled} handled, {fallback} fallen back, over {ops} ATen ops>"


class _Selection:
    def __init__(self, adapters: dict[str, tuple[str, Callable[..., Any], Callable[..., Any]]]):
        self.adapters = adapters  # ATen overload -> (op name, adapter, the op's implementation)
        self.coverage = Coverage({ov: name for ov, (name, _, _) in adapters.items()})


def _install_tuning() -> None:
    """The store-backed tuning cache and the alternated-rounds timer, loaded on the first tuning only."""
    from workbench.profiling import tuning

    tuning.install(replace=False)


# Models under use_ops (and the compile backend, which imports this module) tune as bench and check do.
_tuning.set_default(_install_tuning)

_tls = _library.kernel_state  # busy: inside a workbench kernel (a backward too) or a fallback on this thread
_base: _Selection | None = None  # from enable()
_stack: list[_Selection] = []  # from use_ops(), innermost last
_lib: torch.library.Library | None = None
_registered: frozenset[str] = frozenset()
_native_kernels: dict[tuple[str, str], Any] = {}  # (overload, dispatch key) -> native SafeKernelFunction


def _select(include, exclude, policy: str = "all", store=None) -> _Selection:
    if policy not in ("all", "measured"):
        raise ValueError(f"policy: expected 'all' or 'measured', got {policy!r}")
    adapters = select(include, exclude, fused_ok=False).adapters
    return _measured(adapters, store) if policy == "measured" else _Selection(adapters)


def _measured(adapters: dict[str, tuple[str, Callable[..., Any], Callable[..., Any]]], store) -> _Selection:
    """Policy "measured" (profiling.selection): ops with a measured win on some shape class on this device
    keep their adapter, gated per call by shape class; the others are left native, with the reason."""
    from workbench.profiling import selection
    from workbench.profiling.tuning import default_store

    backend = backends.active()
    device = backend.properties().name
    decisions = selection.measured_selection(store if store is not None else default_store(), device)
    kept, left = {}, {}
    for overload, (name, adapter, _) in adapters.items():
        classes = selection.op_decisions(decisions, name)
        if not any(d.enabled for d in classes.values()):
            reasons = "; ".join(d.reason for d in classes.values())
            left[overload] = reasons or f"not enabled: no bench row on {device}"
            continue
        spec = REGISTRY[name]
        impl = selection.gate(spec.implementation(backend.name), classes, device)
        kept[overload] = (name, adapter, impl)
    chosen = _Selection(kept)
    chosen.coverage.not_enabled.update(left)
    chosen.coverage._ops.update({overload: name for overload, (name, _, _) in adapters.items()})
    return chosen


# ---- registration ---------------------------------------------------------------------------------------


def _native(overload: str, key: str):
    """The kernel that ran for `overload` on `key` before workbench registered anything (cached)."""
    kernel = _native_kernels.get((overload, key))
    if kernel is None:
        if _lib is not None:
            raise RuntimeError(
                "internal: native kernels must be fetched while no workbench kernel is registered"
            )
        if not hasattr(torch.library, "get_kernel"):
            raise RuntimeError(
                f"workbench.use_ops needs torch.library.get_kernel (torch >= 2.9), "
                f"this is torch {torch.__version__}"
            )
        kernel = _native_kernels[(overload, key)] = torch.library.get_kernel(aten_overload(overload), key)
    return kernel


@functools.cache
def _tensor_slots(overload: str) -> tuple[tuple[int, str], ...]:
    """(position, name) of the schema's Tensor and Tensor? arguments."""
    slots = []
    for i, arg in enumerate(aten_overload(overload)._schema.arguments):
        t = arg.type
        if isinstance(t, torch.OptionalType):
            t = t.getElementType()
        if isinstance(t, torch.TensorType):
            slots.append((i, arg.name))
    return tuple(slots)


def _category(dtype: torch.dtype) -> int:
    return 3 if dtype.is_complex else 2 if dtype.is_floating_point else 0 if dtype == torch.bool else 1


def _as_wrapped_number(value: Number, tensors: list[torch.Tensor]) -> torch.Tensor:
    """A 0-dim CPU tensor that promotes like the wrapped number ATen gave us as a Python scalar.

    ATen passes Python kernels a "wrapped number" (a scalar operand such as the 1e-6 in `x + 1e-6`) as a
    Python number, which call_boxed refuses for a Tensor argument. A wrapped number counts only by its
    kind (bool < int < float < complex) in type promotion: where a tensor of that kind or higher is
    present it is ignored (we keep its full precision), else the result takes the default dtype.
    """
    kind = (
        0
        if isinstance(value, bool)
        else 1
        if isinstance(value, int)
        else 2
        if isinstance(value, float)
        else 3
    )
    exact = (torch.bool, torch.int64, torch.float64, torch.complex128)[kind]
    if not tensors:
        return torch.tensor(value, dtype=exact)
    promoted = functools.reduce(torch.promote_types, (t.dtype for t in tensors))
    if kind <= _category(promoted):
        # Dimensioned tensors outrank a 0-dim one of the same kind; among 0-dim ones, match the result.
        return torch.tensor(value, dtype=exact if any(t.dim() for t in tensors) else promoted)
    default = torch.get_default_dtype()
    complex_default = torch.complex128 if default == torch.float64 else torch.complex64
    return torch.tensor(value, dtype=(torch.bool, torch.int64, default, complex_default)[kind])


def _call_native(native, overload: str, keyset, args: tuple, kwargs: dict):
    numbers = [
        (i, name)
        for i, name in _tensor_slots(overload)
        if isinstance(args[i] if i < len(args) else kwargs.get(name), Number)
    ]
    if numbers:
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        args, kwargs = list(args), dict(kwargs)
        for i, name in numbers:
            if i < len(args):
                args[i] = _as_wrapped_number(args[i], tensors)
            else:
                kwargs[name] = _as_wrapped_number(kwargs[name], tensors)
    return native.call_boxed(keyset, *args, **kwargs)


def _kernel(
    overload: str,
    adapter: Callable[..., Any],
    impl: Callable[..., Any],
    native,
    coverage: Coverage,
    autograd: bool = False,
    trainable: Callable[..., Any] | None = None,
) -> Callable[..., Any]:
    """The Python kernel registered for one overload on one key: `adapter(impl, ...)`, or the native kernel.
    `autograd`: the kernel goes on an Autograd key, where a call whose inputs need a gradient runs
    `trainable` (the op's custom operator, which carries the backward) in place of `impl`, or natively
    where that is None. On the backend key torch's autograd kernel has run already: no such test.

    Hot path: a flag test, (on an Autograd key) the grad-mode test, two flag writes, the adapter, one
    counter increment. Everything it needs is bound here, at registration.
    """
    handled = coverage.counter(overload)
    grad_enabled, needs_grad = torch.is_grad_enabled, _library.needs_grad
    direct = adapter is same_arguments  # the op takes the overload's arguments as they are

    def kernel(keyset, *args, **kwargs):
        state = _tls
        if state.busy:
            return _call_native(native, overload, keyset, args, kwargs)
        run = impl
        if autograd and grad_enabled() and needs_grad(args, kwargs):
            if trainable is None:  # no backward: native keeps the gradient
                coverage.record_fallback(overload, "no backward")
                return _call_native(native, overload, keyset, args, kwargs)
            run = trainable
        state.busy = True
        try:
            out = run(*args, **kwargs) if direct else adapter(run, *args, **kwargs)
        except FALLBACK_ERRORS as e:  # still busy: the native kernel's own ATen calls stay native
            coverage.record_fallback(overload, str(e) or type(e).__name__)
            return _call_native(native, overload, keyset, args, kwargs)
        finally:
            state.busy = False
        handled[0] += 1
        return out

    return kernel


@functools.cache
def _keys(overload: str, key: str, trains: bool) -> tuple[str, ...]:
    """The dispatch keys our kernel for `overload` goes on. A composite op (aten::linear, rms_norm, sdpa:
    a CompositeImplicitAutograd kernel that decomposes, with autograd, into other ops) gets the backend's
    Autograd key too: a backend kernel alone would hide the decomposition from autograd, so that a
    call needing a gradient would record a backward torch does not have for this backend (linear_backward)
    or none at all. On that key our kernel sends such calls to the native composite, or, for an op that
    `trains` (has a backward), to its custom operator, which records our backward."""
    name = aten_overload(overload).name()
    composite = torch._C._dispatch_has_kernel_for_dispatch_key(name, "CompositeImplicitAutograd")
    return (key, f"Autograd{key}") if composite or trains else (key,)


def _trainable(op: str) -> Callable[..., Any] | None:
    """The op's custom operator that carries its backward, or None where it has none."""
    return _library.trainable(op) if REGISTRY[op].backward is not None else None


class _CompileWatch:
    """Warns once when torch.compile compiles, while our kernels are registered, without the workbench
    backend: inductor's generated kernels never reach this override. Dynamo's compile callbacks bracket
    each compilation; the workbench backend marks the ones it took part in."""

    def __init__(self):
        self.warned = self.by_workbench = False

    def install(self) -> None:
        """Register the callbacks (again after torch._dynamo.reset(), which clears them)."""
        from torch._dynamo.callback import callback_handler

        if self.start not in callback_handler.start_callbacks:
            callback_handler.register_start_callback(self.start)
            callback_handler.register_end_callback(self.end)

    def start(self, *args) -> None:
        self.by_workbench = False

    def end(self, *args) -> None:
        if _registered and not self.by_workbench and not self.warned:
            self.warned = True
            warnings.warn(
                "workbench.use_ops does not reach code compiled by torch.compile: inductor generates "
                'its own kernels. Use torch.compile(model, backend="workbench") to run workbench '
                "ops in compiled code",
                stacklevel=2,
            )


compile_watch = _CompileWatch()


def _apply() -> None:
    """Make the registered kernels those of the innermost active selection (or none)."""
    global _lib, _registered
    current = _stack[-1] if _stack else _base
    if _lib is not None:
        _lib._destroy()  # restores the kernels that were there before
        _lib, _registered = None, frozenset()
    if not current or not current.adapters:
        return
    key = backends.active().dispatch_key
    compile_watch.install()
    trainable = {overload: _trainable(op) for overload, (op, _, _) in current.adapters.items()}
    keys = {overload: _keys(overload, key, trainable[overload] is not None) for overload in current.adapters}
    natives = {(overload, k): _native(overload, k) for overload in current.adapters for k in keys[overload]}
    lib = torch.library.Library("aten", "IMPL")
    try:
        with warnings.catch_warnings():
            # torch warns once that we override its kernel: that is the point here.
            warnings.filterwarnings("ignore", message="(?s).*Overriding a previously registered kernel")
            for overload, (_, adapter, impl) in current.adapters.items():
                for k in keys[overload]:
                    autograd = k.startswith("Autograd")
                    kernel = _kernel(
                        overload,
                        adapter,
                        impl,
                        natives[(overload, k)],
                        current.coverage,
                        autograd,
                        trainable[overload] if autograd else None,
                    )
                    lib.impl(aten_overload(overload), kernel, k, with_keyset=True)
    except BaseException:
        lib._destroy()
        raise
    _lib, _registered = lib, frozenset(current.adapters)


# ---- public API -----------------------------------------------------------------------------------------


def replaced() -> list[str]:
    """The ATen overloads whose kernel on the active backend's dispatch key is workbench's right now."""
    return sorted(_registered)


def enable(
    include: Iterable[str] | str | None = None,
    exclude: Iterable[str] | str | None = None,
    policy: str = "all",
    store=None,
) -> Coverage:
    """Replace native kernels process-wide until `disable()`; returns the coverage recorder.

    `include`: op names ("add") or ATen overloads ("aten::add.Tensor"); None means every op with ATen
    adapters. `exclude` is taken out of that. Calling enable again replaces the previous selection.
    `policy`: "all" (default) serves every selected op; "measured" only the ops and shape classes where
    `store` (a ResultStore; default $WORKBENCH_STORE or out/workbench.db) holds a correct bench result
    that beats native on this device beyond its spread (workbench.profiling.selection).
    """
    global _base
    selection = _select(include, exclude, policy, store)
    previous, _base = _base, selection
    try:
        _apply()
    except BaseException:
        _base = previous
        _apply()
        raise
    return selection.coverage


def disable() -> Coverage | None:
    """End `enable()`; native kernels return unless a `use_ops` context is still open.
    Returns its recorder."""
    global _base
    previous, _base = _base, None
    _apply()
    return previous.coverage if previous else None


@contextlib.contextmanager
def use_ops(
    include: Iterable[str] | str | None = None,
    exclude: Iterable[str] | str | None = None,
    policy: str = "all",
    store=None,
) -> Iterator[Coverage]:
    """Inside, the selected ATen overloads run workbench's kernels; yields the coverage recorder.

    Selection and policy as in `enable`. Nested contexts: the innermost selection applies; on exit the
    enclosing selection (or native behaviour) is restored and this context's counts join the enclosing
    recorder. A bad index met by a kernel inside and not reported yet raises on exit (this waits for the
    device).
    """
    with _selected(include, exclude, policy, store) as coverage:
        yield coverage
        _index_check.raise_pending()


@contextlib.contextmanager
def _selected(include, exclude, policy: str, store) -> Iterator[Coverage]:
    """`use_ops` without the wait for pending index reports on exit."""
    selection = _select(include, exclude, policy, store)
    _stack.append(selection)
    try:
        _apply()
    except BaseException:
        _stack.remove(selection)
        _apply()
        raise
    try:
        yield selection.coverage
    finally:
        _stack.remove(selection)
        _apply()
        enclosing = _stack[-1] if _stack else _base
        if enclosing is not None:
            enclosing.coverage.merge(selection.coverage)


def through_use_ops(spec) -> Callable[..., Any]:
    """The op's native reference under `use_ops(include=[op])`: our kernels reached through the ATen
    dispatcher, as a model reaches them (and as FlagGems' `use_gems` is reached). A call that none of the
    op's kernels handled (a fallback, or a path that decomposes into other ops) raises, so that native's time
    is never shown as ours. A call does not wait for the device on exit, as a model's one `use_ops` around
    thousands of calls does not: timed calls stay asynchronous (bad indices: `_index_check.raise_pending`)."""

    def call(*args, **kwargs):
        with _selected([spec.name], None, "all", None) as coverage:
            out = spec.reference(*args, **kwargs)
        if not coverage.handled:
            fallbacks = coverage.fallbacks or "none of its ATen overloads was called"
            raise RuntimeError(
                f"use_ops: no call reached workbench's {spec.name} kernels, native ran ({fallbacks})"
            )
        return out

    return call
