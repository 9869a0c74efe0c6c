"""exp: elementwise e**x (torch.exp)."""

import torch
import triton
import triton.language as tl

from ._elementwise import binary, unary, unary_cases, unary_cost
from .spec import OpSpec, register


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


def _backward(ctx, dy):
    """dx = dy * exp(x), from the saved output."""
    (y,) = ctx.saved_tensors
    return (binary(_times, y, dy, out_dtype=y.dtype),)


SPEC = register(OpSpec(
    name="exp",
    reference=torch.exp,
    impl=exp,
    cases=unary_cases(),
    cost=unary_cost,
    aten=("aten::exp",),
    aten_impls={"aten::exp": lambda impl, self: impl(self)},
    backward=_backward,
    setup_context=_setup_context,
))
