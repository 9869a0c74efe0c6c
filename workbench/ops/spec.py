"""OpSpec: everything about one op in one place, and the registry of all ops.

An op module declares one `OpSpec` (native reference, generic Triton implementation, named alternatives
per backend and algorithm, case generators, cost model, tolerance policy, status) and registers it with
`register`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

GENERIC = "generic"  # the implementation name of the generic kernels (every backend)
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
CASE_SETS = ("quick", "edge", "llm")

# Relative tolerance per dtype (docs/correctness.md): used for ‖out − ref‖/‖ref‖ and, scaled, elementwise.
DEFAULT_TOLERANCE = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}

Inputs = tuple[tuple, dict]  # (args, kwargs) for one call
MakeInputs = Callable[[torch.dtype, torch.device, torch.Generator], Inputs]


class Unsupported(NotImplementedError):
    """Raised by an ATen adapter for inputs the Triton implementation does not handle.

    The dispatch override (workbench.dispatch) then runs the native kernel instead and records the
    message as the reason. Wrappers' own TypeError/ValueError (a dtype, a shape) are treated the same.
    """


# What makes an adapter give way to the native kernel: our wrappers' input validation and Unsupported.
FALLBACK_ERRORS = (Unsupported, TypeError, ValueError)


def aten_overload(name: str) -> torch._ops.OpOverload:
    """torch's OpOverload for a name such as 'aten::add.Tensor' ('aten::mm' is the default overload)."""
    namespace, _, rest = name.partition("::")
    op, _, overload = rest.partition(".")
    try:
        return getattr(getattr(getattr(torch.ops, namespace), op), overload or "default")
    except (AttributeError, RuntimeError):
        raise ValueError(
            f"aten_impls: {name!r} is not an operator overload known to torch {torch.__version__}"
        ) from None


def same_arguments(impl: Callable[..., Any], *args, **kwargs) -> Any:
    """The ATen adapter of an overload whose arguments, as the dispatcher passes them, are the op's own:
    the dispatch override then calls the op directly, one Python frame less per call."""
    return impl(*args, **kwargs)


@dataclass(frozen=True)
class Case:
    """One input configuration. `make` draws fresh random inputs from the generator it is given."""

    name: str
    make: MakeInputs
    # Past 2**31 elements: run only on a real device, with a float32 reference so that it fits in memory.
    big: bool = False


@dataclass(frozen=True)
class Cost:
    """Fewest bytes the op must move through device memory and the floating-point operations it does."""

    bytes: int
    flops: int


@dataclass
class OpSpec:
    name: str
    reference: Callable[..., Any]  # the native op, torch semantics
    impl: Callable[..., Any]  # the generic Triton implementation
    cases: dict[str, Callable[[], list[Case]]]  # case set name -> case list
    cost: Callable[..., Cost]  # same arguments as the op
    aten: tuple[str, ...] = ()  # ATen overloads this op can replace
    # ATen overload -> adapter(impl, *args, **kwargs) for workbench.dispatch: `impl` is this op's
    # implementation for the active backend, args/kwargs the overload's arguments as the dispatcher passes
    # them to a Python kernel (positional as in the schema, keyword-only ones as keywords, defaults left
    # out). It returns what the overload returns, or raises Unsupported. Empty `aten` is filled from these.
    aten_impls: dict[str, Callable[..., Any]] = field(default_factory=dict)
    # Implementations beside `impl`, by name: "<backend>" or "<backend>:<algorithm>" ("generic" for every
    # backend; e.g. "mlu", "generic:merge"). See `implementation`.
    variants: dict[str, Callable[..., Any]] = field(default_factory=dict)
    tolerance: dict[torch.dtype, float] = field(default_factory=lambda: dict(DEFAULT_TOLERANCE))
    dtypes: tuple[torch.dtype, ...] = FLOAT_DTYPES
    status: dict[str, str] = field(
        default_factory=lambda: {"cpu": "promoted", "cuda": "promoted", "mlu": "draft"}
    )
    doc: str = ""
    # Autograd, on the op's own signature (torch.library.register_autograd's contract, registered on
    # `torch.ops.workbench.<op>`): setup_context(ctx, inputs, output) saves what backward needs;
    # backward(ctx, *grad_outputs) returns one gradient (or None) per input. None: no backward, and a call
    # whose inputs need a gradient is refused (direct call); under use_ops torch's autograd kernel, above
    # ours, records torch's formula (a composite op, which it sees decomposed, runs natively then).
    backward: Callable[..., Any] | None = None
    setup_context: Callable[..., Any] | None = None

    def implementation(self, backend: str, algorithm: str | None = None) -> Callable[..., Any]:
        """What runs on `backend`: the implementation written for (backend, algorithm), else the generic
        one of that algorithm (None: the default one, `impl`) in the backend's launch style: every op on
        the shared launchers thereby has an MLU form (persistent launches; ops.mlu.persistent)."""
        written = self.variants.get(backend if algorithm is None else f"{backend}:{algorithm}")
        if written is not None:
            return written
        generic = self.impl if algorithm is None else self.variants.get(f"{GENERIC}:{algorithm}")
        if generic is None:
            raise ValueError(
                f"algorithm: expected one of {self.algorithms()} for op {self.name!r}, got {algorithm!r}"
            )
        return generic if backend == GENERIC else _in_backend_style(generic, backend)

    def algorithms(self) -> list[str]:
        """The names of the generic implementation's alternative algorithms (e.g. topk's "merge")."""
        return [name.split(":", 1)[1] for name in self.variants if name.startswith(f"{GENERIC}:")]

    def variant_name(self, backend: str) -> str:
        """The name of what `implementation(backend)` runs: the backend's own where it has a written
        variant or its own launch style, else "generic"."""
        return backend if backend in self.variants or _persistent_backend(backend) else GENERIC

    def variant_names(self) -> list[str]:
        """ "generic", its algorithms, and the name of every backend's own implementation (written, or the
        generic kernels in the backend's launch style: "mlu" for every op)."""
        from workbench import backends

        styled = [b for b in backends.BACKENDS if _persistent_backend(b)]
        return list(
            dict.fromkeys([GENERIC, *(f"{GENERIC}:{a}" for a in self.algorithms()), *styled, *self.variants])
        )

    def variant(self, name: str) -> Callable[..., Any]:
        """The implementation called `name` (one of `variant_names()`): "<backend>[:<algorithm>]"."""
        if name not in self.variant_names():
            raise ValueError(
                f"variant: expected one of {self.variant_names()} for op {self.name!r}, got {name!r}"
            )
        if name == GENERIC:
            return self.impl
        backend, _, algorithm = name.partition(":")
        return self.implementation(backend, algorithm or None)

    def add_variant(
        self, backend: str, fn: Callable[..., Any], algorithm: str | None = None
    ) -> Callable[..., Any]:
        """Register `fn` as this op's implementation on `backend` ("generic": every backend), as its default
        (chosen there automatically) or as the named `algorithm` (chosen by name)."""
        name = backend if algorithm is None else f"{backend}:{algorithm}"
        if name == GENERIC or name in self.variants:
            raise ValueError(f"op {self.name!r} already has a {name!r} variant")
        self.variants[name] = fn
        return fn

    def case_list(self, case_set: str) -> list[Case]:
        if case_set not in CASE_SETS:
            raise ValueError(f"unknown case set {case_set!r}; expected one of {CASE_SETS}")
        return self.cases[case_set]() if case_set in self.cases else []


REGISTRY: dict[str, OpSpec] = {}
# Called with every op as it is registered: `_library.define`, which `_library` hands in when imported (by
# `workbench.ops`, before any op module), so that this module stays below the custom operators.
_on_register: list[Callable[[OpSpec], None]] = []


def on_register(hook: Callable[[OpSpec], None]) -> None:
    """Call `hook(spec)` for every op registered so far and from now on."""
    _on_register.append(hook)
    for spec in REGISTRY.values():
        hook(spec)


def _persistent_backend(name: str) -> bool:
    """Whether the shared launchers run persistent programs on backend `name` (its launch policy)."""
    from workbench import backends

    return name in backends.BACKENDS and backends.get(name).policy.persistent


@functools.cache
def _in_backend_style(fn: Callable[..., Any], backend: str) -> Callable[..., Any]:
    """`fn` with its launches in `backend`'s style (persistent or tile), wherever it runs; `fn` itself when
    that is the active backend's style already. Callable attributes (an in-place `into`) follow."""
    from workbench import backends

    from .mlu.persistent import launch_style

    persistent = _persistent_backend(backend)
    if persistent == backends.active().policy.persistent:
        return fn

    @functools.wraps(fn)
    def call(*args, **kwargs):
        with launch_style(persistent):
            return fn(*args, **kwargs)

    for name, attr in vars(fn).items():
        if callable(attr) and name != "__wrapped__":
            setattr(call, name, _in_backend_style(attr, backend))
    return call


def register(spec: OpSpec) -> OpSpec:
    if spec.name in REGISTRY:
        raise ValueError(f"op {spec.name!r} is registered twice")
    missing = [s for s in ("quick", "edge", "llm") if s not in spec.cases]
    if missing:
        raise ValueError(f"op {spec.name!r} lacks case sets {missing}")
    if spec.aten_impls and not spec.aten:
        spec.aten = tuple(spec.aten_impls)
    stray = sorted(set(spec.aten_impls) - set(spec.aten))
    if stray:
        raise ValueError(
            f"op {spec.name!r}: aten_impls has overloads {stray} that are not in aten {spec.aten}"
        )
    REGISTRY[spec.name] = spec
    for hook in _on_register:
        hook(spec)
    return spec


def get(name: str) -> OpSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown op {name!r}; registered: {sorted(REGISTRY)}") from None


def input_grads(ctx, *grads) -> tuple:
    """A backward's return value: one gradient per input of the op, None where that input needs none
    (`ctx.needs_input_grad` covers only the arguments the call passed)."""
    need = ctx.needs_input_grad
    return tuple(g if i < len(need) and need[i] else None for i, g in enumerate(grads))


# ---- helpers for case generators and cost models -------------------------------------------------


def randn(shape, dtype: torch.dtype, device: torch.device, gen: torch.Generator, scale: float = 1.0):
    """Fresh standard-normal values (never zeros), drawn on the device itself."""
    t = torch.randn(shape, dtype=torch.float32, device=device, generator=gen)
    return (t * scale).to(dtype) if scale != 1.0 else t.to(dtype)


def without_big(cases: dict) -> dict:
    """`cases` less the past-2**31 ones: for an op whose launcher another op already checks that far
    (GPU time is scarce; the indexing is the launcher's, not the op's math)."""
    return {name: (lambda f=f: [c for c in f() if not c.big]) for name, f in cases.items()}


def nbytes(*tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def numel(shape) -> int:
    return math.prod(shape)
