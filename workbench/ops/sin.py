"""sin: elementwise sin(x) in fp32 (torch.sin); rotary embeddings take it of position x frequency angles."""

import torch
import triton
import triton.language as tl

from ._elementwise import unary, unary_cost
from .cos import angle_cases
from .spec import OpSpec, register, same_arguments


@triton.jit
def _sin(x):
    return tl.sin(x)


def sin(x: torch.Tensor) -> torch.Tensor:
    return unary(_sin, x)


SPEC = register(
    OpSpec(
        name="sin",
        reference=torch.sin,
        impl=sin,
        cases=angle_cases(),
        cost=unary_cost,
        aten_impls={"aten::sin": same_arguments},
    )
)
