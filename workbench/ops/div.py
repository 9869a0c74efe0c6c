"""div: true division `input / other` with broadcasting and type promotion (torch.div, no rounding mode)."""

import torch
import triton
import triton.language as tl  # noqa: F401  (the interpreter needs tl visible in jit functions)

from ._elementwise import binary, binary_cases, binary_cost
from .spec import OpSpec, register, without_big


@triton.jit
def _div(a, b):
    return a / b


def div(input: torch.Tensor, other) -> torch.Tensor:
    return binary(_div, input, other)


SPEC = register(OpSpec(
    name="div",
    reference=torch.div,
    impl=div,
    cases=without_big(binary_cases()),  # the binary launcher's big case is add's
    cost=binary_cost,
    # aten::div.Scalar calls div.Tensor with the scalar wrapped; div.Tensor_mode (rounding) is not claimed.
    aten_impls={"aten::div.Tensor": lambda impl, self, other: impl(self, other)},
))
