"""sub: `input - alpha * other` with broadcasting and type promotion (torch.sub)."""

import torch
import triton
import triton.language as tl  # noqa: F401  (the interpreter needs tl visible in jit functions)

from ._common import scalar_as
from ._elementwise import binary, binary_cases, binary_cost
from .spec import OpSpec, register, same_arguments, without_big


@triton.jit
def _sub(a, b):
    return a - b


def sub(input: torch.Tensor, other, *, alpha=1) -> torch.Tensor:
    if alpha != 1:  # torch's overflow check of alpha in the result dtype (the kernel checks its type)
        scalar_as("sub", "alpha", alpha, torch.result_type(input, other))
    return binary(_sub, input, other, b_scale=alpha, integers=True)


SPEC = register(
    OpSpec(
        name="sub",
        reference=torch.sub,
        impl=sub,
        cases=without_big(binary_cases(integers=2**40)),  # the binary launcher's big case is add's
        cost=binary_cost,
        # aten::sub.Scalar is a composite that calls sub.Tensor with the scalar wrapped: this covers it.
        aten_impls={"aten::sub.Tensor": same_arguments},
    )
)
