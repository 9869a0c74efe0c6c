"""bitwise_or: `input | other` of bool / integer tensors with broadcasting and promotion
(torch.bitwise_or)."""

import torch
import triton
import triton.language as tl  # noqa: F401  (the interpreter needs tl visible in jit functions)

from ._bitwise import BITWISE_DTYPES, bitwise_cases
from ._elementwise import binary, binary_cost
from .spec import OpSpec, register


@triton.jit
def _or(a, b):
    return a | b


def bitwise_or(input: torch.Tensor, other) -> torch.Tensor:
    return binary(_or, input, other, dtypes=BITWISE_DTYPES)


def _aten(impl, self, other):
    """aten::bitwise_or / aten::__or__ (.Tensor and .Scalar): (self, other)."""
    return impl(self, other)


SPEC = register(
    OpSpec(
        name="bitwise_or",
        reference=torch.bitwise_or,
        impl=bitwise_or,
        cases=bitwise_cases(binary=True),
        cost=binary_cost,
        # `a | b` in Python is aten::__or__; torch.bitwise_or is aten::bitwise_or
        aten_impls={
            "aten::bitwise_or.Tensor": _aten,
            "aten::bitwise_or.Scalar": _aten,
            "aten::__or__.Tensor": _aten,
            "aten::__or__.Scalar": _aten,
        },
    )
)
