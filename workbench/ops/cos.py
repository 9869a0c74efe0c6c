"""cos: elementwise cos(x) in fp32 (torch.cos); rotary embeddings take it of position x frequency angles."""

import torch
import triton
import triton.language as tl

from ._elementwise import unary, unary_cases, unary_cost
from .spec import Case, OpSpec, register, same_arguments, without_big


@triton.jit
def _cos(x):
    return tl.cos(x)


def cos(x: torch.Tensor) -> torch.Tensor:
    return unary(_cos, x)


def angle_cases() -> dict:
    """The unary cases plus RoPE's angle table at Qwen3-8B size; shared by cos and sin."""
    cases = without_big(unary_cases())  # the unary launcher's big case is exp's

    def angles(d, dev, g):  # RoPE angles: positions 0..2047 times inv_freq, head_dim 128, theta 1e6
        inv_freq = 1.0 / (1e6 ** (torch.arange(0, 128, 2, dtype=torch.float32, device=dev) / 128))
        pos = torch.arange(2048, dtype=torch.float32, device=dev)
        return (torch.cat([pos[:, None] * inv_freq] * 2, -1).to(d),), {}

    return {**cases, "llm": lambda: cases["llm"]() + [Case("rope angles 2048x128", angles)]}


SPEC = register(
    OpSpec(
        name="cos",
        reference=torch.cos,
        impl=cos,
        cases=angle_cases(),
        cost=unary_cost,
        aten_impls={"aten::cos": same_arguments},
    )
)
