"""silu_and_mul: `silu(gate) * up`, the gated MLP activation of Qwen3 (transformers' `act_fn(gate) * up`).

A fused op (one read of each input, one write) with no single ATen overload; broadcasting and type
promotion follow torch, as in the unfused expression.
"""

import torch
import triton
import triton.language as tl

from ._elementwise import binary, binary_cases, binary_cost
from .spec import Case, Cost, OpSpec, randn, register

INTERMEDIATE = 12288  # Qwen3-8B's MLP width


@triton.jit
def _silu_mul(gate, up):
    # exp(-gate) overflows to inf for very negative gate: gate / inf = -0, the right limit.
    return gate / (1.0 + tl.exp(-gate)) * up


def silu_and_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return binary(_silu_mul, gate, up, names=("gate", "up"))


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

SPEC = register(OpSpec(
    name="silu_and_mul",
    reference=_reference,
    impl=silu_and_mul,
    cases={
        "quick": _BINARY["quick"],
        "edge": _BINARY["edge"],
        "llm": lambda: [_llm_case(f"decode {r}x{INTERMEDIATE}", r) for r in (1, 64)]
        + [_llm_case(f"prefill 2048x{INTERMEDIATE}", 2048)],
    },
    cost=_cost,
    aten=(),
    doc="Fused silu(gate) * up of the gated MLP; no ATen overload.",
))
