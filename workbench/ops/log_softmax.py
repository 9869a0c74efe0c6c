"""log_softmax along any dim (torch.log_softmax): `x - max - log(sum(exp(x - max)))`, in fp32.

Shares softmax's kernel (LOG=True): the last dim is the fast path; other dims are moved there.
"""

import torch

from .softmax import aten_adapter, backward, setup_context, softmax_rows
from .spec import Case, Cost, OpSpec, nbytes, randn, register


def log_softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return softmax_rows(x, dim, log=True)


def _cost(x, dim=-1):
    return Cost(bytes=2 * nbytes(x), flops=4 * x.numel())


def _masked(x):
    x[:, 30:] = -float("inf")
    x[3] = -float("inf")  # nothing left: torch gives NaN
    return x


def _case(name, shape, dim=-1, transform=None, scale=1.0, big=False):
    def make(dtype, device, gen):
        x = randn(shape, dtype, device, gen, scale=scale)
        return ((transform(x) if transform else x),), {"dim": dim}

    return Case(name, make, big=big)


SPEC = register(
    OpSpec(
        name="log_softmax",
        reference=lambda x, dim=-1: torch.log_softmax(x, dim),  # the custom op leaves out a default dim
        impl=log_softmax,
        cases={
            "quick": lambda: [_case("64x300", (64, 300)), _case("30x40 dim0", (30, 40), dim=0)],
            "edge": lambda: [
                _case("rank3 2x33x5 dim1", (2, 33, 5), dim=1),
                _case("transposed 40x30", (30, 40), transform=lambda x: x.t()),
                _case("long row 3x40000", (3, 40000), scale=4.0),
                _case("masked rows (-inf), one fully masked", (5, 40), transform=_masked),
                _case("single column 7x1", (7, 1)),
                _case("zero-size 0x16", (0, 16)),
                _case("big 262146x8193", (262146, 8193), big=True),
            ],
            "llm": lambda: [
                _case("decode vocab 1x151936", (1, 151936), scale=3.0),
                _case("decode vocab 64x151936", (64, 151936), scale=3.0),
            ],
        },
        cost=_cost,
        aten=("aten::_log_softmax",),
        aten_impls={"aten::_log_softmax": aten_adapter},
        backward=backward(log=True),
        setup_context=setup_context,
    )
)
