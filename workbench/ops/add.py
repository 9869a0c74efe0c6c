"""add: `input + alpha * other` with broadcasting and type promotion (torch.add)."""

import torch
import triton
import triton.language as tl  # noqa: F401  (the interpreter needs tl visible in jit functions)

from ._common import scalar_as
from ._elementwise import binary, binary_cases, binary_cost
from .spec import OpSpec, register, same_arguments


@triton.jit
def _add(a, b):
    return a + b


def add(input: torch.Tensor, other, *, alpha=1) -> torch.Tensor:
    if alpha != 1:  # torch's overflow check of alpha in the result dtype (the kernel checks its type)
        scalar_as("add", "alpha", alpha, torch.result_type(input, other))
    return binary(_add, input, other, b_scale=alpha, integers=True)


def _aten_add_scalar(impl, self, other, alpha=1):
    """aten::add.Scalar(self, other, alpha=1): alpha may come by position."""
    return impl(self, other, alpha=alpha)


SPEC = register(
    OpSpec(
        name="add",
        reference=torch.add,
        impl=add,
        cases=binary_cases(integers=2**40),  # int64 past fp32's exact range
        cost=binary_cost,
        aten=("aten::add.Tensor", "aten::add.Scalar"),
        # aten::add.Tensor(self, other, *, alpha=1): the op's own signature.
        aten_impls={"aten::add.Tensor": same_arguments, "aten::add.Scalar": _aten_add_scalar},
    )
)
