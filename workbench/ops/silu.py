"""silu: `x * sigmoid(x)` (torch.nn.functional.silu)."""

import torch
import triton
import triton.language as tl

from ._elementwise import unary, unary_cases, unary_cost
from .spec import OpSpec, register, same_arguments


@triton.jit
def _silu(x):
    # exp(-x) overflows to inf for very negative x, giving x / inf = -0: the right limit.
    return x / (1.0 + tl.exp(-x))


def silu(x: torch.Tensor) -> torch.Tensor:
    return unary(_silu, x)


SPEC = register(OpSpec(
    name="silu",
    reference=torch.nn.functional.silu,
    impl=silu,
    cases=unary_cases(),
    cost=unary_cost,
    aten=("aten::silu",),
    aten_impls={"aten::silu": same_arguments},
))
