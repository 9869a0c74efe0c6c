"""exp: elementwise e**x (torch.exp)."""

import torch
import triton
import triton.language as tl

from ._elementwise import unary, unary_cases, unary_cost
from .spec import OpSpec, register, same_arguments


@triton.jit
def _exp(x):
    return tl.exp(x)


def exp(x: torch.Tensor) -> torch.Tensor:
    return unary(_exp, x)


SPEC = register(OpSpec(
    name="exp",
    reference=torch.exp,
    impl=exp,
    cases=unary_cases(),
    cost=unary_cost,
    aten=("aten::exp",),
    aten_impls={"aten::exp": same_arguments},
))
