"""gelu: exact (erf) or tanh-approximated GELU (torch.nn.functional.gelu).

The exact form has two erf evaluations: libdevice's erf for fp32 results, and for fp16/bf16 results a
rational form (Abramowitz & Stegun 7.1.28, |error| <= 3e-7, below a 16-bit ulp by three orders of
magnitude) that costs about half the instructions, so the op stays memory-bound like the tanh form.
"""

import torch
import triton
import triton.language as tl

from ._elementwise import unary, unary_cases, unary_cost
from .spec import Case, OpSpec, register


@triton.jit
def _gelu_erf(x):
    return 0.5 * x * (1.0 + tl.math.erf(x * 0.7071067811865476))


@triton.jit
def _gelu_erf_16bit(x):
    # erfc(|z|) = 1 / p(|z|)**16 with p the A&S 7.1.28 polynomial; 1 + erf(z) is 2 - erfc(|z|) for z >= 0,
    # erfc(|z|) below: no cancellation in the negative tail.
    z = tl.abs(x) * 0.7071067811865476
    p = 1.0 + z * (
        0.0705230784
        + z * (0.0422820123 + z * (0.0092705272 + z * (0.0001520143 + z * (0.0002765672 + z * 0.0000430638))))
    )
    p = p * p
    p = p * p
    p = p * p
    erfc = 1.0 / (p * p)
    return 0.5 * x * tl.where(x >= 0, 2.0 - erfc, erfc)


@triton.jit
def _gelu_tanh(x):
    inner = 0.7978845608028654 * (x + 0.044715 * x * x * x)
    # tanh(y) = 1 - 2 / (1 + exp(2y)); written out because libdevice.tanh is unavailable in the interpreter.
    tanh = 1.0 - 2.0 / (1.0 + tl.exp(2.0 * inner))
    return 0.5 * x * (1.0 + tanh)


def formula(approximate: str, dtype: torch.dtype = torch.float32):
    """The jit math for `approximate`: "none" (erf; the rational erf for 16-bit `dtype`) or "tanh"."""
    if approximate == "none":
        return _gelu_erf if dtype == torch.float32 else _gelu_erf_16bit
    if approximate == "tanh":
        return _gelu_tanh
    raise ValueError(f"approximate: expected 'none' or 'tanh', got {approximate!r}")


def gelu(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    return unary(formula(approximate, x.dtype), x)


def _both_approximations() -> dict:
    exact, tanh = unary_cases(approximate="none"), unary_cases(approximate="tanh")

    def merged(name):
        def cases():
            return [Case(f"{c.name} erf", c.make, c.big) for c in exact[name]()] + [
                Case(f"{c.name} tanh", c.make, c.big) for c in tanh[name]()
            ]

        return cases

    return {name: merged(name) for name in exact}


SPEC = register(
    OpSpec(
        name="gelu",
        reference=torch.nn.functional.gelu,
        impl=gelu,
        cases=_both_approximations(),
        cost=unary_cost,
        aten=("aten::gelu",),
        aten_impls={"aten::gelu": lambda impl, self, approximate="none": impl(self, approximate=approximate)},
    )
)
