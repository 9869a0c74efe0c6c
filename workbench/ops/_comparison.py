"""Shared by the comparison ops (eq, ne, lt, le, gt, ge): a bool result from the binary launcher.

torch compares in the promoted dtype of the operands: float operands are compared in fp32 (exact for
float32/16 and bfloat16 values), integer ones in int64 (exact). A Python number, or a 0-dim tensor that
does not decide the promoted dtype, is first rounded to that dtype as torch does (`bf16_x < 0.1` compares
with bfloat16(0.1), not with 0.1).
"""

from __future__ import annotations

import torch

from ._elementwise import binary, binary_cost, randint
from .spec import Case, Cost, randn


def comparison(fn, input: torch.Tensor, other) -> torch.Tensor:
    """`fn(input, other)` elementwise with broadcasting, as a bool tensor."""
    # A number or a 0-dim operand is rounded / cast to the promoted dtype first; tensors with dims are not.
    if isinstance(input, torch.Tensor) and (
        (isinstance(other, (int, float)) and not isinstance(other, bool))
        or (isinstance(other, torch.Tensor) and not (other.dim() and input.dim()))
    ):
        dtype = torch.result_type(input, other)
        if not isinstance(other, torch.Tensor):
            if dtype.is_floating_point:
                other = torch.tensor(other, dtype=dtype).item()
        elif other.dim() == 0 and other.dtype != dtype:
            other = other.to(dtype)
        if input.dim() == 0 and isinstance(other, torch.Tensor) and other.dim() and input.dtype != dtype:
            input = input.to(dtype)
    return binary(fn, input, other, integers=True, out_dtype=torch.bool)


def comparison_cost(a: torch.Tensor, b, *_, **__) -> Cost:
    cost = binary_cost(a, b)
    shape = torch.broadcast_shapes(a.shape, b.shape) if isinstance(b, torch.Tensor) else a.shape
    # binary_cost counts a promoted-dtype result; a comparison writes one byte per element
    out_promoted = torch.empty(0, dtype=torch.result_type(a, b)).element_size() * torch.Size(shape).numel()
    return Cost(bytes=cost.bytes - out_promoted + torch.Size(shape).numel(), flops=cost.flops)


def _halves(shape, dtype, dev, g):
    """Random values rounded to halves: many ties between the operands."""
    return torch.round(randn(shape, torch.float32, dev, g) * 2).div(2).to(dtype)


def _specials(x):
    x = x.clone()
    x.view(-1)[::7] = float("nan")
    x.view(-1)[1::7] = float("inf")
    x.view(-1)[2::7] = -float("inf")
    return x


def _case(name, a_shape, b_shape, a_dtype=None, b_dtype=None, number=None, a_tf=None, b_tf=None):
    """Float operands (the run's dtype unless given) rounded to halves; integer dtypes draw integers;
    b_shape None: the Python number `number`; () a 0-dim tensor."""

    def draw(shape, dtype, dev, g):
        if dtype is not None and not dtype.is_floating_point:
            return randint(shape, dtype, dev, g, 2**40)
        return _halves(shape, dtype, dev, g)

    def make(d, dev, g):
        a = draw(a_shape, a_dtype or d, dev, g)
        b = number if b_shape is None else draw(b_shape, b_dtype or d, dev, g)
        return ((a_tf(a) if a_tf else a), (b_tf(b) if b_tf and b_shape is not None else b)), {}

    return Case(name, make)


def comparison_cases() -> dict:
    return {
        "quick": lambda: [
            _case("64x300 vs row, ties", (64, 300), (300,)),
            _case("int64 positions vs number", (4, 33), None, a_dtype=torch.int64, number=7),
        ],
        "edge": lambda: [
            _case("python scalar 0.5", (37, 11), None, number=0.5),
            _case("python scalar 0.1 (rounded to the tensor's dtype)", (37, 11), None, number=0.1),
            _case("0-dim tensor", (37, 11), ()),
            _case("promote with fp32", (19, 23), (19, 23), b_dtype=torch.float32),
            _case("rank4 broadcast 2x1x5x7,3x1x7", (2, 1, 5, 7), (3, 1, 7)),
            _case("transposed 33x65", (65, 33), (65, 33), a_tf=lambda x: x.t(), b_tf=lambda x: x.t()),
            _case("nan, inf, -inf", (50,), (50,), a_tf=_specials),
            _case("int32 vs int64", (7, 13), (7, 13), a_dtype=torch.int32, b_dtype=torch.int64),
            _case("int64 vs float number 0.5", (5, 6), None, a_dtype=torch.int64, number=0.5),
            _case("zero-size 0x16", (0, 16), (16,)),
        ],
        "llm": lambda: [
            _case("top-k filter 64x151936 vs kth value", (64, 151936), (64, 1)),
            _case(
                "attention mask 2048x2048 positions",
                (2048, 2048),
                (2048, 1),
                a_dtype=torch.int64,
                b_dtype=torch.int64,
            ),
        ],
    }
