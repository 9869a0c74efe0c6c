"""silu_and_mul: `silu(gate) * up`, the gated MLP activation of Qwen3 (transformers' `act_fn(gate) * up`).

A fused op (one read of each input, one write) with no single ATen overload; broadcasting and type
promotion follow torch, as in the unfused expression.
"""

import torch
import triton
import triton.language as tl

from workbench import backends

from ._elementwise import binary, binary_cases, binary_cost
from ._launch import launch
from ._library import backward_op
from ._shapes import cdiv
from .mlu.persistent import grid_1d, persistent
from .spec import Case, Cost, OpSpec, input_grads, randn, register

INTERMEDIATE = 12288  # Qwen3-8B's MLP width


@triton.jit
def _silu_mul(gate, up):
    # exp(-gate) overflows to inf for very negative gate: gate / inf = -0, the right limit.
    return gate / (1.0 + tl.exp(-gate)) * up


def silu_and_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return binary(_silu_mul, gate, up, names=("gate", "up"))


BACKWARD_BLOCK = 1024


@triton.jit
def _silu_and_mul_backward_kernel(gate_ptr, up_ptr, dy_ptr, dgate_ptr, dup_ptr, n, BLOCK: tl.constexpr):
    """dgate = dy * up * s * (1 + gate * (1 - s)) with s = sigmoid(gate); dup = dy * silu(gate). Contiguous
    operands of one shape; a grid-stride loop, so that the grid stays within the launch policy."""
    offs0 = tl.arange(0, BLOCK)
    for start in range(tl.program_id(0) * BLOCK, n, tl.num_programs(0) * BLOCK):
        offs = start + offs0
        mask = offs < n
        gate = tl.load(gate_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        up = tl.load(up_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        s = 1.0 / (1.0 + tl.exp(-gate))
        dgate = dy * up * s * (1.0 + gate * (1.0 - s))
        tl.store(dgate_ptr + offs, dgate.to(dgate_ptr.dtype.element_ty), mask=mask)
        tl.store(dup_ptr + offs, (dy * gate * s).to(dup_ptr.dtype.element_ty), mask=mask)


@backward_op(
    "silu_and_mul_backward", lambda dy, gate, up: (gate.new_empty(gate.shape), up.new_empty(up.shape))
)
def silu_and_mul_backward(
    dy: torch.Tensor, gate: torch.Tensor, up: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(dgate, dup); broadcast operands get their gradient summed back to their shape."""
    shape = dy.shape
    g, u, d = (t.expand(shape).contiguous() for t in (gate, up, dy))
    dgate, dup = (
        torch.empty(shape, dtype=gate.dtype, device=dy.device),
        torch.empty(shape, dtype=up.dtype, device=dy.device),
    )
    n = dy.numel()
    if n:
        if persistent():  # programs that fill the target's cores, blocks within its NRAM
            grid, block = grid_1d(n, 3 * dy.element_size() + gate.element_size() + up.element_size())
        else:
            grid, block = backends.active().policy.grid(cdiv(n, BACKWARD_BLOCK), num_warps=4), BACKWARD_BLOCK
        launch(_silu_and_mul_backward_kernel, (grid,), g, u, d, dgate, dup, n, BLOCK=block, num_warps=4)
    return dgate.sum_to_size(gate.shape), dup.sum_to_size(up.shape)


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, dy):
    return input_grads(ctx, *silu_and_mul_backward(dy, *ctx.saved_tensors))


def _reference(gate, up):
    return torch.nn.functional.silu(gate) * up


def _cost(gate, up):
    return Cost(bytes=binary_cost(gate, up).bytes, flops=5 * binary_cost(gate, up).flops)


def _llm_case(name, rows):
    def make(dtype, device, gen):
        # gate and up as the two halves of one gate_up projection output: strided rows
        gate_up = randn((rows, 2 * INTERMEDIATE), dtype, device, gen)
        return (gate_up[:, :INTERMEDIATE], gate_up[:, INTERMEDIATE:]), {}

    return Case(name, make)


_BINARY = binary_cases()

SPEC = register(
    OpSpec(
        name="silu_and_mul",
        reference=_reference,
        impl=silu_and_mul,
        cases={
            "quick": _BINARY["quick"],
            "edge": _BINARY["edge"],
            "llm": lambda: (
                [_llm_case(f"decode {r}x{INTERMEDIATE}", r) for r in (1, 64)]
                + [_llm_case(f"prefill 2048x{INTERMEDIATE}", 2048)]
            ),
        },
        cost=_cost,
        aten=(),
        doc="Fused silu(gate) * up of the gated MLP; no ATen overload.",
        backward=_backward,
        setup_context=_setup_context,
    )
)
