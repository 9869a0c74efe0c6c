"""gelu: exact (erf) or tanh-approximated GELU (torch.nn.functional.gelu)."""

import torch
import triton
import triton.language as tl

from ._elementwise import unary, unary_cases, unary_cost
from .spec import Case, OpSpec, register


@triton.jit
def _gelu_erf(x):
    return 0.5 * x * (1.0 + tl.math.erf(x * 0.7071067811865476))


@triton.jit
def _gelu_tanh(x):
    inner = 0.7978845608028654 * (x + 0.044715 * x * x * x)
    # tanh(y) = 1 - 2 / (1 + exp(2y)); written out because libdevice.tanh is unavailable in the interpreter.
    tanh = 1.0 - 2.0 / (1.0 + tl.exp(2.0 * inner))
    return 0.5 * x * (1.0 + tanh)


def formula(approximate: str):
    """The jit math for `approximate`: "none" (erf) or "tanh"."""
    if approximate == "none":
        return _gelu_erf
    if approximate == "tanh":
        return _gelu_tanh
    raise ValueError(f"approximate: expected 'none' or 'tanh', got {approximate!r}")


def gelu(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    return unary(formula(approximate), x)


def _both_approximations() -> dict:
    exact, tanh = unary_cases(approximate="none"), unary_cases(approximate="tanh")

    def merged(name):
        def cases():
            return [Case(f"{c.name} erf", c.make, c.big) for c in exact[name]()] + [
                Case(f"{c.name} tanh", c.make, c.big) for c in tanh[name]()
            ]
        return cases

    return {name: merged(name) for name in exact}


SPEC = register(OpSpec(
    name="gelu",
    reference=torch.nn.functional.gelu,
    impl=gelu,
    cases=_both_approximations(),
    cost=unary_cost,
    aten=("aten::gelu",),
    aten_impls={"aten::gelu": lambda impl, self, approximate="none": impl(self, approximate=approximate)},
))
