"""cumsum along a dim (torch.cumsum), accumulated in fp32 whatever the input dtype.

Along the last dim each program scans its row tile by tile (a tree scan inside a tile, a running carry
across tiles). Along any other dim the input is viewed as (outer, n, inner) and each program walks
the n steps for a block of `inner` columns, so loads stay coalesced.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from workbench import backends

from . import _rows
from ._common import check_tensor, new_output
from ._launch import launch
from ._shapes import cdiv, next_pow2
from .spec import FLOAT_DTYPES, Case, Cost, OpSpec, nbytes, randn, register


@triton.jit
def _cumsum_last_kernel(x_ptr, out_ptr, n_cols, x_row_stride, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * x_row_stride
    out_row = out_ptr + row * n_cols
    cols = tl.arange(0, BLOCK)
    carry = tl.sum(tl.zeros([BLOCK], tl.float32), 0)  # an fp32 scalar tensor, loop-carried
    for start in range(0, n_cols, BLOCK):
        mask = start + cols < n_cols
        x = tl.load(x_row + start + cols, mask=mask, other=0.0).to(tl.float32)
        y = tl.cumsum(x, 0) + carry
        tl.store(out_row + start + cols, y.to(out_ptr.dtype.element_ty), mask=mask)
        carry += tl.sum(x, 0)


@triton.jit
def _cumsum_inner_kernel(x_ptr, out_ptr, n, inner, BLOCK: tl.constexpr):
    outer = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < inner
    x_ptrs = x_ptr + outer * n * inner + cols
    out_ptrs = out_ptr + outer * n * inner + cols
    acc = tl.zeros([BLOCK], tl.float32)
    for _ in range(n):
        acc += tl.load(x_ptrs, mask=mask, other=0.0).to(tl.float32)
        tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=mask)
        x_ptrs += inner  # pointer steps: 64-bit, whatever n * inner is
        out_ptrs += inner


def cumsum(x: torch.Tensor, dim: int, *, dtype: torch.dtype | None = None) -> torch.Tensor:
    check_tensor("x", x)
    if dtype is not None and dtype not in FLOAT_DTYPES:
        raise TypeError(f"dtype: expected one of {FLOAT_DTYPES} or None, got {dtype}")
    ndim = max(x.dim(), 1)
    if isinstance(dim, bool) or not isinstance(dim, int) or not -ndim <= dim < ndim:
        raise ValueError(f"dim: expected a dim in [{-ndim}, {ndim}), got {dim!r}")
    out = new_output(x.shape, dtype or x.dtype, x.device)
    if x.numel() == 0:
        return out
    dim = dim % ndim
    if x.dim() == 0 or dim == x.dim() - 1:
        rows = _rows.as_rows(x)
        n_rows, n = rows.shape
        block = min(1024 * backends.active().policy.block_scale, next_pow2(n))
        launch(_cumsum_last_kernel, (n_rows,), rows, out, n, rows.stride(0), BLOCK=block,
               num_warps=_rows.row_warps(block))
        return out
    xc = x.contiguous()
    n = x.shape[dim]
    outer, inner = math.prod(x.shape[:dim]), math.prod(x.shape[dim + 1:])
    block = min(1024, next_pow2(inner))
    launch(_cumsum_inner_kernel, (outer, cdiv(inner, block)), xc, out, n, inner, BLOCK=block, num_warps=4)
    return out


def _reference(x, dim, *, dtype=None):
    return torch.cumsum(x, dim, dtype=dtype)


def _cost(x, dim, *, dtype=None):
    return Cost(bytes=2 * nbytes(x), flops=max(1, x.numel()))


def _case(name, shape, dim=-1, transform=None, out_dtype=None, big=False):
    def make(dtype, device, gen):
        x = randn(shape, dtype, device, gen)
        return ((transform(x) if transform else x), dim), ({"dtype": out_dtype} if out_dtype else {})

    return Case(name, make, big=big)


SPEC = register(OpSpec(
    name="cumsum",
    reference=_reference,
    impl=cumsum,
    cases={
        "quick": lambda: [_case("16x300", (16, 300)), _case("40x30 dim0", (40, 30), dim=0)],
        "edge": lambda: [
            _case("rank3 dim1", (3, 50, 7), dim=1),
            _case("transposed dim-1", (30, 40), transform=lambda x: x.t()),
            _case("long rows 2x5000", (2, 5000)),
            _case("fp32 output", (4, 100), out_dtype=torch.float32),
            _case("0-dim", (), dim=0),
            _case("zero rows 0x16", (0, 16)),
            _case("big 2x(2**30+5) dim1", (2, 2**30 + 5), dim=1, big=True),
            _case("big (2**21+3)x1024 dim0", (2**21 + 3, 1024), dim=0, big=True),
        ],
        "llm": lambda: [
            _case("top-p probs 64x151936", (64, 151936)),
            _case("positions 2048x2048 dim0", (2048, 2048), dim=0),
        ],
    },
    cost=_cost,
    aten=("aten::cumsum",),
))
