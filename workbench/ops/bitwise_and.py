"""bitwise_and: `input & other` of bool / integer tensors with broadcasting and promotion
(torch.bitwise_and)."""

import torch
import triton
import triton.language as tl  # noqa: F401  (the interpreter needs tl visible in jit functions)

from ._bitwise import BITWISE_DTYPES, bitwise_cases
from ._elementwise import binary, binary_cost
from .spec import OpSpec, register


@triton.jit
def _and(a, b):
    return a & b


def bitwise_and(input: torch.Tensor, other) -> torch.Tensor:
    return binary(_and, input, other, dtypes=BITWISE_DTYPES)


def _aten(impl, self, other):
    """aten::bitwise_and / aten::__and__ (.Tensor and .Scalar): (self, other)."""
    return impl(self, other)


SPEC = register(
    OpSpec(
        name="bitwise_and",
        reference=torch.bitwise_and,
        impl=bitwise_and,
        cases=bitwise_cases(binary=True),
        cost=binary_cost,
        # `a & b` in Python is aten::__and__; torch.bitwise_and is aten::bitwise_and
        aten_impls={
            "aten::bitwise_and.Tensor": _aten,
            "aten::bitwise_and.Scalar": _aten,
            "aten::__and__.Tensor": _aten,
            "aten::__and__.Scalar": _aten,
        },
    )
)
