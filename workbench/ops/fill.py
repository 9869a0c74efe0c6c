"""fill: a tensor like x filled with a number (torch.fill / aten::fill.Scalar) and in place (fill_).

The value is a kernel argument (no device tensor is made for it); values torch refuses (an overflow, NaN
into an integer tensor) raise RuntimeError as torch's (`_common.scalar_as`).
"""

import torch

from ._common import check_tensor, new_output_like
from ._elementwise import BIG
from ._movement import MOVE_DTYPES, fill_into
from .spec import Case, Cost, OpSpec, nbytes, randn, register


def prepare(x: torch.Tensor) -> torch.Tensor:
    """Validate x and allocate fill's output (shared by the generic op and its variants)."""
    check_tensor("x", x, MOVE_DTYPES)
    return new_output_like(x, x.dtype)


def fill(x: torch.Tensor, value) -> torch.Tensor:
    return fill_into(prepare(x), value)


fill.into = fill_into  # the in-place form (aten::fill_.Scalar); a variant sets its own launcher's


def _aten_fill_(impl, self, value):
    """aten::fill_.Scalar: in place with the launcher of the backend's implementation (a variant without
    one, e.g. a promoted candidate, gets the generic one)."""
    return getattr(impl, "into", fill_into)(self, value)


def _cost(x, value):
    return Cost(bytes=nbytes(x), flops=0)


def _case(name, shape, value=None, transform=None, dtype=None, big=False):
    """value None: a fresh random number, callable: a function of the dtype; dtype: the tensor's dtype
    instead of the case's."""

    def make(d, dev, g):
        x = randn(shape, d, dev, g)
        if dtype is not None:
            x = x.to(dtype)
        if value is None:
            v = float(randn((), torch.float32, dev, g))
        else:
            v = value(x.dtype) if callable(value) else value
        return ((transform(x) if transform else x), v), {}

    return Case(name, make, big=big)


SPEC = register(
    OpSpec(
        name="fill",
        reference=torch.fill,
        impl=fill,
        cases={
            "quick": lambda: [_case("1000", (1000,)), _case("64x300", (64, 300))],
            "edge": lambda: [
                _case("-inf (a mask) 7x9", (7, 9), float("-inf")),
                _case("nan 5x5", (5, 5), float("nan")),
                _case("int value 3x4", (3, 4), 7),
                _case("transposed 33x65", (65, 33), transform=lambda x: x.t()),
                _case("rank5 permuted", (2, 3, 4, 5, 6), transform=lambda x: x.permute(4, 2, 0, 3, 1)),
                _case("int64 tensor 6x8", (6, 8), 3, dtype=torch.int64),
                _case("bool tensor 6x8", (6, 8), True, dtype=torch.bool),
                _case("zero-size 0x16", (0, 16)),
                _case(f"big {BIG}", (BIG,), big=True),
            ],
            "llm": lambda: [
                _case("causal mask 2048x2048 finfo.min", (2048, 2048), lambda d: torch.finfo(d).min),
                _case("decode logits 64x151936", (64, 151936)),
            ],
        },
        cost=_cost,
        aten_impls={
            "aten::fill.Scalar": lambda impl, self, value: impl(self, value),
            "aten::fill_.Scalar": _aten_fill_,
        },
    )
)
