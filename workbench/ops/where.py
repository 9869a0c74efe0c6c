"""where: `condition ? input : other` elementwise with broadcasting and type promotion (torch.where).

`input` and `other` may be tensors or numbers (a number is a kernel argument, never a device tensor).
A number that does not fit the result dtype raises RuntimeError as torch's (2**40 into int32, 1e39 into
float32), except for a float16 / bfloat16 result, where torch converts it unchecked (1e6 is inf).
"""

from numbers import Number

import torch
import triton
import triton.language as tl

from ._common import scalar_as
from ._elementwise import BIG, FLOAT_OR_INT_DTYPES, INT_DTYPES, randint, ternary
from .spec import Case, Cost, OpSpec, nbytes, randn, register


@triton.jit
def _select(c, a, b):
    return tl.where(c, a, b)


def where(condition: torch.Tensor, input, other) -> torch.Tensor:
    dtype = _result_type(input, other)
    if dtype not in _UNCHECKED:
        if isinstance(input, Number):
            input = scalar_as("where", "input", input, dtype)
        if isinstance(other, Number):
            other = scalar_as("where", "other", other, dtype)
    return ternary(_select, condition, input, other, dtype, integers=True)


_UNCHECKED = (torch.float16, torch.bfloat16)  # result dtypes torch converts a number to without its check


def _result_type(input, other) -> torch.dtype:
    """torch's result dtype; two numbers give the default dtype (floats) as in torch.where."""
    if isinstance(input, Number) and isinstance(other, Number):
        input = torch.tensor(input)  # a 0-dim tensor of the number's default dtype
    try:
        dtype = torch.result_type(input, other)
    except TypeError:
        raise TypeError(
            f"input, other: expected tensors or numbers, got {type(input).__name__} and "
            f"{type(other).__name__}"
        ) from None
    if dtype not in FLOAT_OR_INT_DTYPES:  # fp32 selects exactly for floats, integers select in their dtype
        raise TypeError(
            f"input, other: expected a float32, float16, bfloat16, int32 or int64 result, got {dtype}"
        )
    return dtype


def _cost(condition, input, other):
    shapes = [t.shape for t in (condition, input, other) if isinstance(t, torch.Tensor)]
    n = torch.Size(torch.broadcast_shapes(*shapes)).numel()
    out = torch.empty(0, dtype=_result_type(input, other)).element_size() * n
    return Cost(bytes=nbytes(condition, input, other) + out, flops=n)


def mask(shape, device, gen, p=0.5):
    """A random boolean mask, true with probability p."""
    return torch.rand(shape, device=device, generator=gen) < p


def causal_mask(q_len, kv_len, device):
    """True where query i may attend key j (the last q_len keys are the queries' own positions)."""
    i = torch.arange(q_len, device=device)[:, None] + (kv_len - q_len)
    return torch.arange(kv_len, device=device)[None, :] <= i


def _case(
    name,
    c_shape,
    a_shape,
    b_shape,
    a_dtype=None,
    b_dtype=None,
    transform=None,
    big=False,
    numbers=(-1.5, float("-inf")),
):
    """a_shape/b_shape None: a Python number (from `numbers`); () a 0-dim tensor. An integer a_dtype /
    b_dtype draws integers (compared exactly)."""

    def draw(shape, dtype, dev, g):
        return randint(shape, dtype, dev, g, 2**40) if dtype in INT_DTYPES else randn(shape, dtype, dev, g)

    def make(d, dev, g):
        c = mask(c_shape, dev, g)
        a = draw(a_shape, a_dtype or d, dev, g) if a_shape is not None else numbers[0]
        b = draw(b_shape, b_dtype or d, dev, g) if b_shape is not None else numbers[1]
        if transform:
            c, a, b = transform(c, a, b)
        return (c, a, b), {}

    return Case(name, make, big=big)


def _causal(name, q_len, kv_len, batch=1):
    def make(d, dev, g):
        c = causal_mask(q_len, kv_len, dev).expand(batch, 1, q_len, kv_len)
        return (c, randn((batch, 32, q_len, kv_len), d, dev, g), float("-inf")), {}

    return Case(name, make)


SPEC = register(
    OpSpec(
        name="where",
        reference=torch.where,
        impl=where,
        cases={
            "quick": lambda: [
                _case("1000", (1000,), (1000,), (1000,)),
                _case("64x300 row other", (64, 300), (64, 300), (300,)),
            ],
            "edge": lambda: [
                _case("rank4 broadcast all three", (2, 1, 5, 7), (3, 1, 7), (2, 3, 1, 1)),
                _case("numbers on both sides", (40, 30), None, None),
                _case("0-dim tensor other", (37, 11), (37, 11), ()),
                _case("promote with fp32 other", (19, 23), (19, 23), (19, 23), b_dtype=torch.float32),
                _case(
                    "transposed",
                    (65, 33),
                    (65, 33),
                    (65, 33),
                    transform=lambda c, a, b: (c.t(), a.t(), b.t()),
                ),
                _case(
                    "strided rank5",
                    (2, 3, 4, 5, 6),
                    (2, 3, 4, 5, 6),
                    (2, 3, 4, 5, 6),
                    transform=lambda c, a, b: tuple(t.permute(4, 2, 0, 3, 1) for t in (c, a, b)),
                ),
                _case("zero-size 0x16", (0, 16), (16,), (0, 16)),
                _case(
                    "int64 +-2**40 tensors", (9, 31), (9, 31), (31,), a_dtype=torch.int64, b_dtype=torch.int64
                ),
                _case("int32 tensor, int number", (7, 5), (7, 5), None, a_dtype=torch.int32, numbers=(0, -1)),
                _case(f"big {BIG}", (BIG,), (BIG,), None, big=True),
            ],
            "llm": lambda: [
                _causal("causal scores prefill 1x32x2048x2048", 2048, 2048),
                _causal("causal scores decode 64x32x1x2048", 1, 2048, batch=64),
                _case("logits filter 64x151936", (64, 151936), (64, 151936), None),
            ],
        },
        cost=_cost,
        aten_impls={"aten::where.self": lambda impl, condition, self, other: impl(condition, self, other)},
    )
)
