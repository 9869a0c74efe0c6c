"""pow: `input ** exponent` elementwise, exponent a number or a tensor (torch.pow).

Math in fp32: |x|**y = exp2(y * log2|x|), with the sign and the special cases as torch (C pow) has them:
x**0 = 1 and 1**y = 1 even for NaN, a finite negative base with a non-integer exponent gives NaN.
Common exponents take exact paths instead:
2 (x*x, as in RMSNorm's variance), 1, 0.5 (sqrt), -0.5 (rsqrt), -1, 3.
"""

import torch
import triton
import triton.language as tl

from ._elementwise import binary, binary_cost, unary
from .spec import Case, OpSpec, randn, register


@triton.jit
def _general(x, y):
    magnitude = tl.exp2(y * tl.log2(tl.abs(x)))
    y_int = y == tl.floor(y)
    y_odd = y_int & (y - 2.0 * tl.floor(y * 0.5) == 1.0)
    r = tl.where((x < 0) & y_odd, -magnitude, magnitude)
    r = tl.where((x < 0) & (x > -float("inf")) & ~y_int, float("nan"), r)  # (-inf)**0.5 is inf, as in C
    # |x| = 1 with an infinite exponent, and x**0 or 1**y even with a NaN on the other side, are 1.
    r = tl.where((tl.abs(x) == 1.0) & (tl.abs(y) == float("inf")), 1.0, r)
    return tl.where((y == 0.0) | (x == 1.0), 1.0, r)


@triton.jit
def _pow_tensor(a, b):
    return _general(a, b)


@triton.jit
def _square(x):
    return x * x


@triton.jit
def _cube(x):
    return x * x * x


@triton.jit
def _identity(x):
    return x


@triton.jit
def _sqrt(x):
    return tl.sqrt(x)


@triton.jit
def _rsqrt(x):
    return tl.math.rsqrt(x)


@triton.jit
def _reciprocal(x):
    return 1.0 / x


_EXACT = {2.0: _square, 3.0: _cube, 1.0: _identity, 0.5: _sqrt, -0.5: _rsqrt, -1.0: _reciprocal}


def math_for(exponent):
    """(fn, operand): a one-input exact fn and None for the common exponents, else the general two-input
    fn and the exponent as its second operand (a tensor or a float). Shared by the generic op and its
    variants, which run the fn on their own unary / binary launchers."""
    if isinstance(exponent, torch.Tensor):
        return _pow_tensor, exponent
    if isinstance(exponent, bool) or not isinstance(exponent, (int, float)):
        raise TypeError(f"exponent: expected a tensor or a real number, got {type(exponent).__name__}")
    fast = _EXACT.get(float(exponent))
    if fast is not None:
        return fast, None
    return _pow_tensor, float(exponent)


def pow(input: torch.Tensor, exponent) -> torch.Tensor:
    fn, operand = math_for(exponent)
    if operand is None:
        return unary(fn, input, name="input")
    return binary(fn, input, operand, names=("input", "exponent"))


def _base(shape, d, dev, g, positive=False):
    """Magnitudes in [0.5, 3] (no fp16 overflow for exponents up to +-4), random signs unless positive."""
    x = randn(shape, d, dev, g).float()
    magnitude = 0.5 + x.abs().clamp(max=2.5)
    return (magnitude if positive else torch.where(x < 0, -magnitude, magnitude)).to(d)


def _cases() -> dict:
    def case(
        name, shape, exponent=None, positive=False, integer_y=False, e_shape=None, transform=None, big=False
    ):
        """exponent a number, or (exponent None) a tensor of e_shape (default: shape) in [-3, 3]."""

        def make(d, dev, g):
            x = _base(shape, d, dev, g, positive)
            if exponent is not None:
                return ((transform(x) if transform else x), exponent), {}
            e = randn(e_shape or shape, d, dev, g).clamp(-3, 3)
            if integer_y:  # negative bases then have real powers
                e = torch.round(e)
            return ((transform(x), transform(e)) if transform else (x, e)), {}

        return Case(name, make, big=big)

    return {
        "quick": lambda: [
            case("x**2 64x300", (64, 300), 2),
            case("x**y positive base 1000", (1000,), positive=True),
        ],
        "edge": lambda: [
            case("x**0.5 (negatives: NaN)", (7, 40), 0.5),
            case("x**-0.5", (7, 40), -0.5, positive=True),
            case("x**3 int exponent", (7, 40), 3),
            case("x**-1", (7, 40), -1),
            case("x**1.7 general", (7, 40), 1.7, positive=True),
            case("x**-2.5 general", (7, 40), -2.5, positive=True),
            case("x**-2 negative base, general path", (7, 40), -2),
            case("x**0", (5, 6), 0),
            case("x**y negative base, integer y", (9, 33), integer_y=True),
            case("x**y negative base, fractional y (NaN)", (6, 20)),
            case("x**y broadcast exponent row", (6, 20), positive=True, e_shape=(20,)),
            case("x**y transposed", (65, 33), positive=True, transform=lambda t: t.t()),
            case(
                "x**y strided rank5",
                (2, 3, 4, 5, 6),
                positive=True,
                transform=lambda t: t.permute(4, 2, 0, 3, 1),
            ),
            case("x**y zero-size 0x16", (0, 16), e_shape=(16,)),
        ],
        "llm": lambda: [
            case("variance x**2 decode 64x4096", (64, 4096), 2),
            case("variance x**2 prefill 2048x4096", (2048, 4096), 2),
            case("x**y prefill 2048x4096", (2048, 4096), positive=True),
        ],
    }


SPEC = register(
    OpSpec(
        name="pow",
        reference=torch.pow,
        impl=pow,
        cases=_cases(),
        cost=binary_cost,
        aten_impls={
            "aten::pow.Tensor_Scalar": lambda impl, self, exponent: impl(self, exponent),
            "aten::pow.Tensor_Tensor": lambda impl, self, exponent: impl(self, exponent),
        },
    )
)
