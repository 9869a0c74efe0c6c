"""mul: `input * other` with broadcasting and type promotion (torch.mul)."""

import torch
import triton
import triton.language as tl  # noqa: F401  (the interpreter needs tl visible in jit functions)

from ._elementwise import binary, binary_cases, binary_cost
from .spec import OpSpec, register, same_arguments


@triton.jit
def _mul(a, b):
    return a * b


def mul(input: torch.Tensor, other) -> torch.Tensor:
    return binary(_mul, input, other, integers=True)


SPEC = register(
    OpSpec(
        name="mul",
        reference=torch.mul,
        impl=mul,
        cases=binary_cases(integers=2**20),  # products past 2**24, within int64
        cost=binary_cost,
        aten=("aten::mul.Tensor", "aten::mul.Scalar"),
        # aten::mul.Tensor(self, other) and aten::mul.Scalar(self, other): the op's own signature.
        aten_impls={"aten::mul.Tensor": same_arguments, "aten::mul.Scalar": same_arguments},
    )
)
