"""cumsum along a dim (torch.cumsum), accumulated in fp32 whatever the input dtype.

Along the last dim each program scans its row tile by tile (a tree scan inside a tile, a running carry
across tiles). Along any other dim the input is viewed as (outer, n, inner) and scanned in
(steps x columns) tiles, loads coalesced along `inner`. Few long scans are cut into chunks: a first
pass sums each chunk, a second scans each chunk from the sum of the chunks before it.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from workbench import backends

from . import _rows, _split_rows
from ._common import check_tensor, new_output
from ._launch import launch
from ._shapes import cdiv, next_pow2
from .spec import FLOAT_DTYPES, Case, Cost, OpSpec, nbytes, randn, register


@triton.jit
def cumsum_row_chunk(x_ptr, out_ptr, sums_ptr, row, c, chunks, n_cols, x_row_stride, chunk,
                     PASS: tl.constexpr, BLOCK: tl.constexpr, BLOCK_C: tl.constexpr):
    """Scan along contiguous rows: chunk c of row `row` owns columns [c * chunk, (c + 1) * chunk).

    PASS 1 writes each chunk's total to sums; PASS 2 scans its chunk starting from the totals of the
    chunks before it; PASS 0 is one chunk per row, no totals. Shared by the generic kernel (one program
    per (row, chunk)) and the MLU-style variant (a grid-stride loop over them).
    """
    x_row = x_ptr + row * x_row_stride
    out_row = out_ptr + row * n_cols
    cols = tl.arange(0, BLOCK)
    lo = c.to(tl.int64) * chunk
    hi = tl.minimum(lo + chunk, n_cols)
    if PASS == 1:
        acc = tl.zeros([BLOCK], tl.float32)
        for start in range(lo, hi, BLOCK):
            acc += tl.load(x_row + start + cols, mask=start + cols < hi, other=0.0).to(tl.float32)
        tl.store(sums_ptr + row * chunks + c, tl.sum(acc, 0))
    else:
        carry = tl.sum(tl.zeros([BLOCK], tl.float32), 0)  # an fp32 scalar tensor, loop-carried
        if PASS == 2:
            prev = tl.arange(0, BLOCK_C)
            carry += tl.sum(tl.load(sums_ptr + row * chunks + prev, mask=prev < c, other=0.0), 0)
        for start in range(lo, hi, BLOCK):
            mask = start + cols < hi
            x = tl.load(x_row + start + cols, mask=mask, other=0.0).to(tl.float32)
            tl.store(out_row + start + cols, (tl.cumsum(x, 0) + carry).to(out_ptr.dtype.element_ty), mask=mask)
            carry += tl.sum(x, 0)


@triton.jit
def cumsum_cols_chunk(x_ptr, out_ptr, sums_ptr, o, col_block, c, chunks, n, inner, chunk,
                      PASS: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_I: tl.constexpr):
    """Scan along the middle dim of a contiguous (outer, n, inner) tensor, BLOCK_N x BLOCK_I tiles at a
    time (loads coalesced along inner): outer index o, columns of `col_block`, steps [c * chunk, ...).
    The passes are those of cumsum_row_chunk, with one total per column. Shared like it."""
    o = o.to(tl.int64)
    cols = col_block.to(tl.int64) * BLOCK_I + tl.arange(0, BLOCK_I)
    col_ok = cols < inner
    steps = tl.arange(0, BLOCK_N)
    lo = c.to(tl.int64) * chunk
    hi = tl.minimum(lo + chunk, n)
    base = o * n * inner + lo * inner
    x_ptrs = x_ptr + base + steps[:, None] * inner + cols[None, :]
    out_ptrs = out_ptr + base + steps[:, None] * inner + cols[None, :]
    sums_row = sums_ptr + o * chunks * inner + cols
    if PASS == 1:
        acc = tl.zeros([BLOCK_I], tl.float32)
        for start in range(lo, hi, BLOCK_N):
            ok = ((start + steps) < hi)[:, None] & col_ok[None, :]
            acc += tl.sum(tl.load(x_ptrs, mask=ok, other=0.0).to(tl.float32), 0)
            x_ptrs += BLOCK_N * inner  # pointer steps: 64-bit, whatever n * inner is
        tl.store(sums_row + c * inner, acc, mask=col_ok)
    else:
        carry = tl.zeros([BLOCK_I], tl.float32)
        if PASS == 2:
            for prev in range(0, c):
                carry += tl.load(sums_row + prev * inner, mask=col_ok, other=0.0)
        for start in range(lo, hi, BLOCK_N):
            ok = ((start + steps) < hi)[:, None] & col_ok[None, :]
            x = tl.load(x_ptrs, mask=ok, other=0.0).to(tl.float32)
            tl.store(out_ptrs, (tl.cumsum(x, 0) + carry[None, :]).to(out_ptr.dtype.element_ty), mask=ok)
            carry += tl.sum(x, 0)
            x_ptrs += BLOCK_N * inner
            out_ptrs += BLOCK_N * inner


@triton.jit
def _cumsum_rows_kernel(x_ptr, out_ptr, sums_ptr, n_cols, x_row_stride, chunk,
                        PASS: tl.constexpr, BLOCK: tl.constexpr, BLOCK_C: tl.constexpr):
    cumsum_row_chunk(x_ptr, out_ptr, sums_ptr, tl.program_id(0).to(tl.int64), tl.program_id(1),
                     tl.num_programs(1), n_cols, x_row_stride, chunk, PASS, BLOCK, BLOCK_C)


@triton.jit
def _cumsum_cols_kernel(x_ptr, out_ptr, sums_ptr, n, inner, chunk,
                        PASS: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_I: tl.constexpr):
    cumsum_cols_chunk(x_ptr, out_ptr, sums_ptr, tl.program_id(0), tl.program_id(1), tl.program_id(2),
                      tl.num_programs(2), n, inner, chunk, PASS, BLOCK_N, BLOCK_I)


def prepare(x: torch.Tensor, dim: int, dtype: torch.dtype | None) -> tuple[torch.Tensor, int | None]:
    """Validate; (output, dim made non-negative, or None when there is nothing to compute). Shared by
    every cumsum launcher (generic, MLU style)."""
    check_tensor("x", x)
    if dtype is not None and dtype not in FLOAT_DTYPES:
        raise TypeError(f"dtype: expected one of {FLOAT_DTYPES} or None, got {dtype}")
    ndim = max(x.dim(), 1)
    if isinstance(dim, bool) or not isinstance(dim, int) or not -ndim <= dim < ndim:
        raise ValueError(f"dim: expected a dim in [{-ndim}, {ndim}), got {dim!r}")
    out = new_output(x.shape, dtype or x.dtype, x.device)
    return out, (dim % ndim if x.numel() else None)


def cumsum(x: torch.Tensor, dim: int, *, dtype: torch.dtype | None = None) -> torch.Tensor:
    out, dim = prepare(x, dim, dtype)
    if dim is None:
        return out
    if x.dim() == 0 or dim == x.dim() - 1:
        rows = _rows.as_rows(x)
        n_rows, n = rows.shape
        block = min(1024 * backends.active().policy.block_scale, next_pow2(n))
        chunks, chunk = _split_rows.chunking(n_rows, n, block)
        sums = torch.empty(n_rows * chunks if chunks > 1 else 1, dtype=torch.float32, device=x.device)
        meta = dict(BLOCK=block, BLOCK_C=next_pow2(chunks), num_warps=_rows.row_warps(block))
        for step in ((1, 2) if chunks > 1 else (0,)):
            launch(_cumsum_rows_kernel, (n_rows, chunks), rows, out, sums, n, rows.stride(0), chunk, PASS=step,
                   **meta)
        return out
    xc = x.contiguous()
    n = x.shape[dim]
    outer, inner = math.prod(x.shape[:dim]), math.prod(x.shape[dim + 1:])
    block_i = min(64, next_pow2(inner))
    block_n = min(next_pow2(n), 32 * backends.active().policy.block_scale)
    col_blocks = cdiv(inner, block_i)
    chunks, chunk = _split_rows.chunking(outer * col_blocks, n, block_n)
    sums = torch.empty(outer * chunks * inner if chunks > 1 else 1, dtype=torch.float32, device=x.device)
    for step in ((1, 2) if chunks > 1 else (0,)):
        launch(_cumsum_cols_kernel, (outer, col_blocks, chunks), xc, out, sums, n, inner, chunk, PASS=step,
               BLOCK_N=block_n, BLOCK_I=block_i, num_warps=4)
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
    aten_impls={"aten::cumsum": lambda impl, self, dim, *, dtype=None: impl(self, dim, dtype=dtype)},
))
