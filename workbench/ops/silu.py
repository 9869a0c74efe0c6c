"""silu: `x * sigmoid(x)` (torch.nn.functional.silu)."""

import torch
import triton
import triton.language as tl

from ._elementwise import binary, unary, unary_cases, unary_cost
from ._library import backward_op
from .spec import OpSpec, register, same_arguments


@triton.jit
def _silu(x):
    # exp(-x) overflows to inf for very negative x, giving x / inf = -0: the right limit.
    return x / (1.0 + tl.exp(-x))


def silu(x: torch.Tensor) -> torch.Tensor:
    return unary(_silu, x)


@triton.jit
def _silu_grad(x, dy):
    s = 1.0 / (1.0 + tl.exp(-x))
    return dy * s * (1.0 + x * (1.0 - s))


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])


@backward_op("silu_backward", lambda x, dy: x.new_empty(x.shape))
def silu_backward(x: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """dx = dy * s * (1 + x * (1 - s)), s = sigmoid(x): one pass of the shared binary launcher."""
    return binary(_silu_grad, x, dy, out_dtype=x.dtype)


def _backward(ctx, dy):
    return (silu_backward(*ctx.saved_tensors, dy),)


SPEC = register(
    OpSpec(
        name="silu",
        reference=torch.nn.functional.silu,
        impl=silu,
        cases=unary_cases(),
        cost=unary_cost,
        aten=("aten::silu",),
        aten_impls={"aten::silu": same_arguments},
        backward=_backward,
        setup_context=_setup_context,
    )
)
