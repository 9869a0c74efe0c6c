"""exp: elementwise e**x (torch.exp)."""

import torch
import triton
import triton.language as tl

from ._elementwise import binary, unary, unary_cases, unary_cost
from ._library import backward_op
from .spec import OpSpec, register, same_arguments


@triton.jit
def _exp(x):
    return tl.exp(x)


def exp(x: torch.Tensor) -> torch.Tensor:
    return unary(_exp, x)


@triton.jit
def _times(y, dy):
    return y * dy


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(output)


@backward_op("exp_backward", lambda y, dy: y.new_empty(y.shape))
def exp_backward(y: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """dx = dy * exp(x), from the saved output."""
    return binary(_times, y, dy, out_dtype=y.dtype)


def _backward(ctx, dy):
    return (exp_backward(*ctx.saved_tensors, dy),)


SPEC = register(
    OpSpec(
        name="exp",
        reference=torch.exp,
        impl=exp,
        cases=unary_cases(),
        cost=unary_cost,
        aten=("aten::exp",),
        aten_impls={"aten::exp": same_arguments},
        backward=_backward,
        setup_context=_setup_context,
    )
)
