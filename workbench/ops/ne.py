"""ne: `input != other` elementwise (not equal) with broadcasting, as a bool tensor (torch.ne)."""

import torch
import triton
import triton.language as tl  # noqa: F401  (the interpreter needs tl visible in jit functions)

from ._comparison import comparison, comparison_cases, comparison_cost
from .spec import OpSpec, register


@triton.jit
def _ne(a, b):
    return a != b


def ne(input: torch.Tensor, other) -> torch.Tensor:
    return comparison(_ne, input, other)


SPEC = register(
    OpSpec(
        name="ne",
        reference=torch.ne,
        impl=ne,
        cases=comparison_cases(),
        cost=comparison_cost,
        # aten::ne.Scalar(self, Scalar other) and aten::ne.Tensor(self, Tensor other)
        aten_impls={
            "aten::ne.Scalar": lambda impl, self, other: impl(self, other),
            "aten::ne.Tensor": lambda impl, self, other: impl(self, other),
        },
    )
)
