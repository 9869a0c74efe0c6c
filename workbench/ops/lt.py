"""lt: `input < other` elementwise (less than) with broadcasting, as a bool tensor (torch.lt)."""

import torch
import triton
import triton.language as tl  # noqa: F401  (the interpreter needs tl visible in jit functions)

from ._comparison import comparison, comparison_cases, comparison_cost
from .spec import OpSpec, register


@triton.jit
def _lt(a, b):
    return a < b


def lt(input: torch.Tensor, other) -> torch.Tensor:
    return comparison(_lt, input, other)


SPEC = register(
    OpSpec(
        name="lt",
        reference=torch.lt,
        impl=lt,
        cases=comparison_cases(),
        cost=comparison_cost,
        # aten::lt.Scalar(self, Scalar other) and aten::lt.Tensor(self, Tensor other)
        aten_impls={
            "aten::lt.Scalar": lambda impl, self, other: impl(self, other),
            "aten::lt.Tensor": lambda impl, self, other: impl(self, other),
        },
    )
)
