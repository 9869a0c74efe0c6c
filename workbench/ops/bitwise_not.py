"""bitwise_not: `~x` of a bool (logical not) or integer tensor (torch.bitwise_not)."""

import torch
import triton
import triton.language as tl  # noqa: F401  (the interpreter needs tl visible in jit functions)

from ._bitwise import BITWISE_DTYPES, bitwise_cases
from ._elementwise import unary, unary_cost
from .spec import OpSpec, register


@triton.jit
def _not(x):
    return ~x


def bitwise_not(x: torch.Tensor) -> torch.Tensor:
    return unary(_not, x, dtypes=BITWISE_DTYPES)


SPEC = register(
    OpSpec(
        name="bitwise_not",
        reference=torch.bitwise_not,
        impl=bitwise_not,
        cases=bitwise_cases(binary=False),
        cost=unary_cost,
        aten_impls={"aten::bitwise_not": lambda impl, self: impl(self)},
    )
)
