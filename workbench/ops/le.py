"""le: `input <= other` elementwise (less than or equal) with broadcasting, as a bool tensor (torch.le)."""

import torch
import triton
import triton.language as tl  # noqa: F401  (the interpreter needs tl visible in jit functions)

from ._comparison import comparison, comparison_cases, comparison_cost
from .spec import OpSpec, register


@triton.jit
def _le(a, b):
    return a <= b


def le(input: torch.Tensor, other) -> torch.Tensor:
    return comparison(_le, input, other)


SPEC = register(
    OpSpec(
        name="le",
        reference=torch.le,
        impl=le,
        cases=comparison_cases(),
        cost=comparison_cost,
        # aten::le.Scalar(self, Scalar other) and aten::le.Tensor(self, Tensor other)
        aten_impls={
            "aten::le.Scalar": lambda impl, self, other: impl(self, other),
            "aten::le.Tensor": lambda impl, self, other: impl(self, other),
        },
    )
)
