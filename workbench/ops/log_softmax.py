"""log_softmax along any dim (torch.log_softmax): `x - max - log(sum(exp(x - max)))`, in fp32.

The last dim is the fast path; other dims are moved there, as softmax does.
"""

import torch
import triton
import triton.language as tl

from . import _rows
from ._common import check_tensor, new_output
from ._launch import launch
from .spec import Case, Cost, OpSpec, Unsupported, nbytes, randn, register


@triton.jit
def _row_lse(x_row, n_cols, BLOCK: tl.constexpr):
    """log(sum(exp(x))) of one row, one online pass: a running max and a sum rescaled to it, per lane."""
    cols = tl.arange(0, BLOCK)
    m = tl.full([BLOCK], -float("inf"), tl.float32)
    s = tl.zeros([BLOCK], tl.float32)
    for start in range(0, n_cols, BLOCK):
        x = tl.load(x_row + start + cols, mask=start + cols < n_cols, other=-float("inf")).to(tl.float32)
        m_new = tl.maximum(m, x)
        seen = m_new > -float("inf")  # lanes that saw only -inf keep a zero sum
        s = tl.where(seen, s * tl.exp(m - m_new) + tl.exp(x - m_new), 0.0)
        m = m_new
    row_max = tl.max(m, 0)
    # All -inf: -inf - -inf is NaN, as torch gives; a +inf or NaN anywhere spreads as in torch.
    return row_max + tl.log(tl.sum(s * tl.exp(m - row_max), 0))


@triton.jit
def _log_softmax_kernel(x_ptr, out_ptr, n_cols, x_row_stride, out_row_stride,
                        BLOCK: tl.constexpr, ONE_TILE: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * x_row_stride
    out_row = out_ptr + row * out_row_stride
    cols = tl.arange(0, BLOCK)
    if ONE_TILE:
        mask = cols < n_cols
        x = tl.load(x_row + cols, mask=mask, other=-float("inf")).to(tl.float32)
        m = tl.max(x, 0)
        lse = m + tl.log(tl.sum(tl.exp(x - m), 0))
        tl.store(out_row + cols, (x - lse).to(out_ptr.dtype.element_ty), mask=mask)
    else:
        lse = _row_lse(x_row, n_cols, BLOCK)
        for start in range(0, n_cols, BLOCK):
            mask = start + cols < n_cols
            x = tl.load(x_row + start + cols, mask=mask, other=0.0).to(tl.float32)
            tl.store(out_row + start + cols, (x - lse).to(out_ptr.dtype.element_ty), mask=mask)


def log_softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    check_tensor("x", x)
    if not -max(x.dim(), 1) <= dim < max(x.dim(), 1):
        raise ValueError(f"dim: expected a dim in [{-max(x.dim(), 1)}, {max(x.dim(), 1)}), got {dim}")
    moved = x.movedim(dim, -1) if x.dim() else x
    out = new_output(moved.shape, x.dtype, x.device)
    if x.numel() > 0:
        rows = _rows.as_rows(moved)
        n_rows, n = rows.shape
        block, one_tile = _rows.tile(n)
        launch(_log_softmax_kernel, (n_rows,), rows, out, n, rows.stride(0), n,
               BLOCK=block, ONE_TILE=one_tile, num_warps=_rows.row_warps(block))
    return out.movedim(-1, dim) if x.dim() else out


def _aten_log_softmax(impl, self, dim, half_to_float):
    """aten::_log_softmax(self, dim, half_to_float): the kernel keeps the input dtype."""
    if half_to_float:
        raise Unsupported("half_to_float=True (fp16 in, fp32 out) is not implemented")
    return impl(self, dim)


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


SPEC = register(OpSpec(
    name="log_softmax",
    reference=torch.log_softmax,
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
    aten_impls={"aten::_log_softmax": _aten_log_softmax},
))
