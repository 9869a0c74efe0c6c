"""neg: elementwise `-x` (torch.neg); rotate_half in rotary embeddings applies it to strided halves."""

import torch
import triton
import triton.language as tl  # noqa: F401  (the interpreter needs tl visible in jit functions)

from ._elementwise import unary, unary_cases, unary_cost
from .spec import Case, OpSpec, randn, register, same_arguments, without_big


@triton.jit
def _neg(x):
    return -x


def neg(x: torch.Tensor) -> torch.Tensor:
    return unary(_neg, x)


def _cases() -> dict:
    cases = without_big(unary_cases())  # the unary launcher's big case is exp's

    def rotate_half_input(d, dev, g):  # x[..., 64:] of q in [batch, heads, seq, head_dim]
        return (randn((1, 32, 2048, 128), d, dev, g)[..., 64:],), {}

    rotate_half = Case("rotate_half q[..., 64:] 1x32x2048x64", rotate_half_input)
    return {**cases, "llm": lambda: cases["llm"]() + [rotate_half]}


SPEC = register(
    OpSpec(
        name="neg",
        reference=torch.neg,
        impl=neg,
        cases=_cases(),
        cost=unary_cost,
        aten_impls={"aten::neg": same_arguments},
    )
)
