"""ge: `input >= other` elementwise (greater than or equal) with broadcasting, as a bool tensor (torch.ge)."""

import torch
import triton
import triton.language as tl  # noqa: F401  (the interpreter needs tl visible in jit functions)

from ._comparison import comparison, comparison_cases, comparison_cost
from .spec import OpSpec, register


@triton.jit
def _ge(a, b):
    return a >= b


def ge(input: torch.Tensor, other) -> torch.Tensor:
    return comparison(_ge, input, other)


SPEC = register(
    OpSpec(
        name="ge",
        reference=torch.ge,
        impl=ge,
        cases=comparison_cases(),
        cost=comparison_cost,
        # aten::ge.Scalar(self, Scalar other) and aten::ge.Tensor(self, Tensor other)
        aten_impls={
            "aten::ge.Scalar": lambda impl, self, other: impl(self, other),
            "aten::ge.Tensor": lambda impl, self, other: impl(self, other),
        },
    )
)
