"""Case sets and cost model shared by the reductions (sum, mean, max)."""

from __future__ import annotations

import torch

from ._elementwise import randint
from .spec import Case, Cost, nbytes, randn


def reduce_cost(x: torch.Tensor, *_, **__) -> Cost:
    return Cost(bytes=nbytes(x), flops=x.numel())


def _ties(x):
    """Few distinct values per row, so the largest one repeats: the first index must win."""
    return torch.round(x * 2) / 2


def _nan_rows(x):
    x[1, 3] = float("nan")
    x[1, 7] = float("nan")
    x[4, 0] = float("nan")
    return x


def _neg_inf_row(x):
    x[2] = -float("inf")
    return x


def reduce_cases(
    with_dtype: bool = False, single_dim: bool = False, big: bool = True, integers: bool = False
) -> dict:
    """quick / edge / llm cases calling `op(x, dim, keepdim[, dtype=])`.

    `single_dim`: one int dim per case (max); otherwise lists of dims and all-dims cases are added.
    `big`: include the past-2**31 case (mean shares sum's kernel and leaves it to sum).
    `integers`: also bool / int32 / int64 inputs (fixed dtypes, compared exactly), as sum takes them.
    """

    def case(name, shape, dim, keepdim=False, transform=None, big=False, **kwargs):
        def make(d, dev, g):
            x = randn(shape, d, dev, g)
            return ((transform(x) if transform else x), dim, keepdim), dict(kwargs)

        return Case(name, make, big=big)

    def int_case(name, shape, dim, x_dtype, keepdim=False, transform=None):
        def make(d, dev, g):
            x = randint(shape, x_dtype, dev, g, 2**40 if x_dtype == torch.int64 else 2**20)
            return ((transform(x) if transform else x), dim, keepdim), {}

        return Case(name, make)

    ints = (
        {"quick": [], "edge": []}
        if not integers
        else {
            "quick": [int_case("bool mask 4x30 dim -1 (int64 result)", (4, 30), -1, torch.bool)],
            "edge": [
                int_case("int64 +-2**40 dims (0, 2)", (4, 5, 6), [0, 2], torch.int64),
                int_case("int32 all dims keepdim", (7, 9), None, torch.int32, keepdim=True),
                int_case("bool transposed dim 0", (30, 40), 0, torch.bool, transform=lambda x: x.t()),
            ],
        }
    )
    multi = (
        []
        if single_dim
        else [
            case("dims (0, 2) of 4x5x6", (4, 5, 6), [0, 2]),
            case("all dims 7x9 keepdim", (7, 9), None, keepdim=True),
            case("dims [] means all (aten) 5x6", (5, 6), []),
            case("sum over an empty dim 3x0", (3, 0), 1),
        ]
    )
    dtype_case = [case("fp32 output 6x50", (6, 50), -1, dtype=torch.float32)] if with_dtype else []
    values = (
        []
        if not single_dim
        else [
            case("ties: the first index wins 9x40", (9, 40), -1, transform=_ties),
            case("NaN rows 6x10", (6, 10), 1, transform=_nan_rows),
            case("-inf row 5x10", (5, 10), 1, transform=_neg_inf_row),
        ]
    )
    return {
        "quick": lambda: [
            case("64x300 dim -1", (64, 300), -1),
            case("8x1000 dim 0", (8, 1000), 0),
            *ints["quick"],
        ],
        "edge": lambda: (
            [
                case("rank3 4x5x33 dim 1 keepdim", (4, 5, 33), 1, keepdim=True),
                case("rank4 2x3x4x70 dim -1", (2, 3, 4, 70), -1),
                case("transposed 40x30 dim 1", (30, 40), 1, transform=lambda x: x.t()),
                case("strided x[:, ::3] dim 0", (50, 60), 0, transform=lambda x: x[:, ::3]),
                case("long row 3x40000", (3, 40000), -1),
                case("single element dim 7x1", (7, 1), 1),
                case("zero rows 0x16 dim 1", (0, 16), 1),
                case("0-dim input", (), 0),
            ]
            + ([case("big 262146x8193 dim -1", (262146, 8193), -1, big=True)] if big else [])
            + multi
            + dtype_case
            + values
            + ints["edge"]
        ),
        "llm": lambda: [
            case("hidden decode 1x4096 keepdim (RMSNorm)", (1, 4096), -1, keepdim=True),
            case("hidden decode 64x4096 keepdim", (64, 4096), -1, keepdim=True),
            case("hidden prefill 2048x4096 keepdim", (2048, 4096), -1, keepdim=True),
            case("columns 2048x4096 dim 0", (2048, 4096), 0),
            case("vocab 64x151936", (64, 151936), -1),
            case("attn 32x2048 dim -1", (32, 2048), -1),
        ],
    }
