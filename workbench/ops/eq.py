"""eq: `input == other` elementwise (equal) with broadcasting, as a bool tensor (torch.eq)."""

import torch
import triton
import triton.language as tl  # noqa: F401  (the interpreter needs tl visible in jit functions)

from ._comparison import comparison, comparison_cases, comparison_cost
from .spec import OpSpec, register


@triton.jit
def _eq(a, b):
    return a == b


def eq(input: torch.Tensor, other) -> torch.Tensor:
    return comparison(_eq, input, other)


SPEC = register(
    OpSpec(
        name="eq",
        reference=torch.eq,
        impl=eq,
        cases=comparison_cases(),
        cost=comparison_cost,
        # aten::eq.Scalar(self, Scalar other) and aten::eq.Tensor(self, Tensor other)
        aten_impls={
            "aten::eq.Scalar": lambda impl, self, other: impl(self, other),
            "aten::eq.Tensor": lambda impl, self, other: impl(self, other),
        },
    )
)
