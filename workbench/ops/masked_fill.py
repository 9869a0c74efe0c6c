"""masked_fill: `input` with `value` where `mask` is true (torch.Tensor.masked_fill); keeps input's dtype
(float, or int32/int64 filled exactly with an integral value: a float is truncated, as torch does).

The ternary elementwise launcher with the mask as condition; `value` is a number, or a 0-dim tensor
(read once on the host when it lives on the CPU, else loaded by the kernel). A number, or a CPU tensor's
value, is converted to input's dtype as torch does: truncated into integers, RuntimeError where it does not
fit (`_common.scalar_as`); a device tensor's value is not read on the host, so not checked.
"""

import torch
import triton
import triton.language as tl

from ._common import check_tensor, scalar_as
from ._elementwise import FLOAT_OR_INT_DTYPES, cached_broadcast, randint, ternary
from .spec import Case, Cost, OpSpec, nbytes, randn, register
from .where import causal_mask, mask


@triton.jit
def _fill_where(m, value, x):
    return tl.where(m, value, x)


def check_args(input: torch.Tensor, mask: torch.Tensor, value) -> None:
    """What masked_fill checks beyond the ternary launcher (shared by the generic op and its variants)."""
    check_tensor("input", input, FLOAT_OR_INT_DTYPES)
    check_tensor("mask", mask, dtypes=(torch.bool,))
    if isinstance(value, torch.Tensor) and value.dim() != 0:
        raise ValueError(f"value: expected a number or a 0-dim tensor, got shape {tuple(value.shape)}")
    # torch accepts a mask that broadcasts to input, never one that grows it.
    if cached_broadcast(mask.shape, input.shape) != input.shape:
        raise ValueError(
            f"mask: shape {tuple(mask.shape)} does not broadcast to input shape {tuple(input.shape)}"
        )


def masked_fill(input: torch.Tensor, mask: torch.Tensor, value) -> torch.Tensor:
    check_args(input, mask, value)
    value = checked_value(input, value)
    return ternary(
        _fill_where, mask, value, input, input.dtype, names=("mask", "value", "input"), integers=True
    )


def checked_value(input: torch.Tensor, value):
    """A number (or a CPU 0-dim tensor's value) converted to input's dtype as torch does; a device tensor
    as it is."""
    if isinstance(value, torch.Tensor):
        if value.device.type != "cpu" or value.is_complex():
            return value
        value = value.item()
    return scalar_as("masked_fill", "value", value, input.dtype)


def _cost(input, mask, value):
    return Cost(bytes=2 * nbytes(input) + nbytes(mask), flops=input.numel())


def _case(name, shape, m_shape=None, value=-1e4, transform=None, x_dtype=None):
    """x_dtype: a fixed integer input dtype instead of the run's float dtype (compared exactly)."""

    def make(d, dev, g):
        x = randint(shape, x_dtype, dev, g, 2**40) if x_dtype else randn(shape, d, dev, g)
        m = mask(m_shape or shape, dev, g)
        v = value(d, dev, g) if callable(value) else value
        if transform:
            x, m = transform(x), transform(m)
        return (x, m, v), {}

    return Case(name, make)


def _causal(name, q_len, kv_len, batch=1):
    def make(d, dev, g):
        return (
            randn((batch, 32, q_len, kv_len), d, dev, g),
            ~causal_mask(q_len, kv_len, dev),
            float("-inf"),
        ), {}

    return Case(name, make)


SPEC = register(
    OpSpec(
        name="masked_fill",
        reference=torch.masked_fill,
        impl=masked_fill,
        cases={
            "quick": lambda: [
                _case("1000", (1000,)),
                _case("64x300 row mask", (64, 300), (300,), value=float("-inf")),
            ],
            "edge": lambda: [
                _case("rank4 broadcast mask 2x3x5x7", (2, 3, 5, 7), (3, 1, 7)),
                _case("0-dim tensor value", (37, 11), value=lambda d, dev, g: randn((), d, dev, g)),
                _case("int value", (37, 11), value=3),
                _case("nan value", (20, 9), value=float("nan")),
                _case("transposed", (65, 33), transform=lambda t: t.t()),
                _case("strided rank5", (2, 3, 4, 5, 6), transform=lambda t: t.permute(4, 2, 0, 3, 1)),
                _case("zero-size 0x16", (0, 16)),
                _case("int64 +-2**40 positions, fill 1", (4, 33), value=1, x_dtype=torch.int64),
                _case(
                    "int32 row mask, 0-dim int value",
                    (6, 20),
                    (20,),
                    x_dtype=torch.int32,
                    value=lambda d, dev, g: torch.tensor(-7),
                ),
            ],
            "llm": lambda: [
                _causal("causal mask prefill 1x32x2048x2048", 2048, 2048),
                _causal("decode 64x32x1x2048", 1, 2048, batch=64),
            ],
        },
        cost=_cost,
        aten_impls={
            "aten::masked_fill.Scalar": lambda impl, self, mask, value: impl(self, mask, value),
            "aten::masked_fill.Tensor": lambda impl, self, mask, value: impl(self, mask, value),
        },
    )
)
