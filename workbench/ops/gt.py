"""gt: `input > other` elementwise (greater than) with broadcasting, as a bool tensor (torch.gt)."""

import torch
import triton
import triton.language as tl  # noqa: F401  (the interpreter needs tl visible in jit functions)

from ._comparison import comparison, comparison_cases, comparison_cost
from .spec import OpSpec, register


@triton.jit
def _gt(a, b):
    return a > b


def gt(input: torch.Tensor, other) -> torch.Tensor:
    return comparison(_gt, input, other)


SPEC = register(
    OpSpec(
        name="gt",
        reference=torch.gt,
        impl=gt,
        cases=comparison_cases(),
        cost=comparison_cost,
        # aten::gt.Scalar(self, Scalar other) and aten::gt.Tensor(self, Tensor other)
        aten_impls={
            "aten::gt.Scalar": lambda impl, self, other: impl(self, other),
            "aten::gt.Tensor": lambda impl, self, other: impl(self, other),
        },
    )
)
