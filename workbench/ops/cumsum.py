"""cumsum along a dim (torch.cumsum), accumulated in fp32 for float results, in int64 for integer ones
(bool and integer inputs give int64 as in torch: position ids from an attention mask), exactly.

Along the last dim each program scans its row tile by tile (a tree scan inside a tile, a running carry
across tiles). Along any other dim the input is viewed as (outer, n, inner) and scanned in
(steps x columns) tiles, loads coalesced along `inner`. Few long scans are cut into chunks: a first
pass sums each chunk, a second scans each chunk from the sum of the chunks before it. In the persistent
launch style (ops.mlu.persistent) programs that fill the cores walk the same items, blocks sized from
on-chip memory.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from workbench import backends

from . import _rows, _split_rows
from ._common import check_tensor, new_output_as
from ._elementwise import randint
from ._launch import launch
from ._reduce import SUM_INPUTS, SUM_RESULTS
from ._shapes import cdiv, next_pow2
from .mlu.persistent import NUM_WARPS, persistent, programs, split_rows, tile_elems
from .spec import Case, Cost, OpSpec, nbytes, randn, register

# Persistent style: columns per tile when scanning a leading dim, enough contiguous columns for wide
# loads, leaving the rest of the tile to scan steps.
MAX_BLOCK_I = 256


@triton.jit
def cumsum_row_chunk(
    x_ptr,
    out_ptr,
    sums_ptr,
    row,
    c,
    chunks,
    n_cols,
    x_row_stride,
    chunk,
    PASS: tl.constexpr,
    BLOCK: tl.constexpr,
    BLOCK_C: tl.constexpr,
    INT: tl.constexpr,
):
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
    if INT:  # an integer result: exact int64 accumulation (the chunk sums are int64 too)
        at = tl.int64
    else:
        at = tl.float32
    if PASS == 1:
        acc = tl.zeros([BLOCK], at)
        for start in range(lo, hi, BLOCK):
            acc += tl.load(x_row + start + cols, mask=start + cols < hi, other=0).to(at)
        tl.store(sums_ptr + row * chunks + c, tl.sum(acc, 0))
    else:
        carry = tl.sum(tl.zeros([BLOCK], at), 0)  # a scalar tensor, loop-carried
        if PASS == 2:
            prev = tl.arange(0, BLOCK_C)
            carry += tl.sum(tl.load(sums_ptr + row * chunks + prev, mask=prev < c, other=0), 0)
        for start in range(lo, hi, BLOCK):
            mask = start + cols < hi
            x = tl.load(x_row + start + cols, mask=mask, other=0).to(at)
            tl.store(
                out_row + start + cols, (tl.cumsum(x, 0) + carry).to(out_ptr.dtype.element_ty), mask=mask
            )
            carry += tl.sum(x, 0)


@triton.jit
def cumsum_cols_chunk(
    x_ptr,
    out_ptr,
    sums_ptr,
    o,
    col_block,
    c,
    chunks,
    n,
    inner,
    chunk,
    PASS: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_I: tl.constexpr,
    INT: tl.constexpr,
):
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
    if INT:
        at = tl.int64
    else:
        at = tl.float32
    if PASS == 1:
        acc = tl.zeros([BLOCK_I], at)
        for start in range(lo, hi, BLOCK_N):
            ok = ((start + steps) < hi)[:, None] & col_ok[None, :]
            acc += tl.sum(tl.load(x_ptrs, mask=ok, other=0).to(at), 0)
            x_ptrs += BLOCK_N * inner  # pointer steps: 64-bit, whatever n * inner is
        tl.store(sums_row + c * inner, acc, mask=col_ok)
    else:
        carry = tl.zeros([BLOCK_I], at)
        if PASS == 2:
            for prev in range(0, c):
                carry += tl.load(sums_row + prev * inner, mask=col_ok, other=0)
        for start in range(lo, hi, BLOCK_N):
            ok = ((start + steps) < hi)[:, None] & col_ok[None, :]
            x = tl.load(x_ptrs, mask=ok, other=0).to(at)
            tl.store(out_ptrs, (tl.cumsum(x, 0) + carry[None, :]).to(out_ptr.dtype.element_ty), mask=ok)
            carry += tl.sum(x, 0)
            x_ptrs += BLOCK_N * inner
            out_ptrs += BLOCK_N * inner


@triton.jit
def _cumsum_rows_kernel(
    x_ptr,
    out_ptr,
    sums_ptr,
    n_cols,
    x_row_stride,
    chunk,
    PASS: tl.constexpr,
    BLOCK: tl.constexpr,
    BLOCK_C: tl.constexpr,
    INT: tl.constexpr,
):
    cumsum_row_chunk(
        x_ptr,
        out_ptr,
        sums_ptr,
        tl.program_id(0).to(tl.int64),
        tl.program_id(1),
        tl.num_programs(1),
        n_cols,
        x_row_stride,
        chunk,
        PASS,
        BLOCK,
        BLOCK_C,
        INT,
    )


@triton.jit
def _cumsum_cols_kernel(
    x_ptr,
    out_ptr,
    sums_ptr,
    n,
    inner,
    chunk,
    PASS: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_I: tl.constexpr,
    INT: tl.constexpr,
):
    cumsum_cols_chunk(
        x_ptr,
        out_ptr,
        sums_ptr,
        tl.program_id(0),
        tl.program_id(1),
        tl.program_id(2),
        tl.num_programs(2),
        n,
        inner,
        chunk,
        PASS,
        BLOCK_N,
        BLOCK_I,
        INT,
    )


# The persistent style (ops.mlu.persistent): programs that fill the cores walk the same items, (row, chunk)
# or (outer, column block, chunk), in a grid-stride loop.


@triton.jit
def _cumsum_rows_persistent_kernel(
    x_ptr,
    out_ptr,
    sums_ptr,
    n_cols,
    x_row_stride,
    chunk,
    n_items,
    chunks,
    PASS: tl.constexpr,
    BLOCK: tl.constexpr,
    BLOCK_C: tl.constexpr,
    INT: tl.constexpr,
):
    for item in range(tl.program_id(0).to(tl.int64), n_items, tl.num_programs(0)):  # row * chunks + chunk
        cumsum_row_chunk(
            x_ptr,
            out_ptr,
            sums_ptr,
            item // chunks,
            item % chunks,
            chunks,
            n_cols,
            x_row_stride,
            chunk,
            PASS,
            BLOCK,
            BLOCK_C,
            INT,
        )


@triton.jit
def _cumsum_cols_persistent_kernel(
    x_ptr,
    out_ptr,
    sums_ptr,
    n,
    inner,
    chunk,
    n_items,
    col_blocks,
    chunks,
    PASS: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_I: tl.constexpr,
    INT: tl.constexpr,
):
    for item in range(tl.program_id(0).to(tl.int64), n_items, tl.num_programs(0)):
        tile = item // chunks  # item = (o * col_blocks + column block) * chunks + chunk
        cumsum_cols_chunk(
            x_ptr,
            out_ptr,
            sums_ptr,
            tile // col_blocks,
            tile % col_blocks,
            item % chunks,
            chunks,
            n,
            inner,
            chunk,
            PASS,
            BLOCK_N,
            BLOCK_I,
            INT,
        )


def prepare(x: torch.Tensor, dim: int, dtype: torch.dtype | None) -> tuple[torch.Tensor, int | None]:
    """Validate; (output, dim made non-negative, or None when there is nothing to compute). Shared by
    every cumsum launcher (generic, MLU style). Bool and integer inputs give int64 unless `dtype` says;
    an integer output is accumulated in int64 (INT), a float one in fp32."""
    check_tensor("x", x, SUM_INPUTS)
    if dtype is not None and dtype not in SUM_RESULTS:
        raise TypeError(f"dtype: expected one of {SUM_RESULTS} or None, got {dtype}")
    ndim = max(x.dim(), 1)
    if isinstance(dim, bool) or not isinstance(dim, int) or not -ndim <= dim < ndim:
        raise ValueError(f"dim: expected a dim in [{-ndim}, {ndim}), got {dim!r}")
    out = new_output_as(x, dtype or (x.dtype if x.is_floating_point() else torch.int64))
    return out, (dim % ndim if x.numel() else None)


def cumsum(x: torch.Tensor, dim: int, *, dtype: torch.dtype | None = None) -> torch.Tensor:
    out, dim = prepare(x, dim, dtype)
    if dim is None:
        return out
    is_int = not out.is_floating_point()
    acc_dtype = torch.int64 if is_int else torch.float32
    # persistent: live tiles of the loaded x and the chunk total or running carry (fp32, or int64)
    limit = tile_elems(acc_dtype.itemsize + x.element_size()) if persistent() else None
    if x.dim() == 0 or dim == x.dim() - 1:
        rows = _rows.as_rows(x)
        n_rows, n = rows.shape
        if limit:
            block = min(limit, next_pow2(n))
            chunks, chunk = split_rows(n_rows, n, block)
            items = n_rows * chunks
            kernel, grid, extra = _cumsum_rows_persistent_kernel, (programs(items),), (items, chunks)
            warps = NUM_WARPS
        else:
            block = min(1024 * backends.active().policy.block_scale, next_pow2(n))
            chunks, chunk = _split_rows.chunking(n_rows, n, block)
            kernel, grid, extra, warps = _cumsum_rows_kernel, (n_rows, chunks), (), _rows.row_warps(block)
        # one chunk per row: PASS 0 has no totals, `out` stands in for the buffer it never reads
        sums = torch.empty(n_rows * chunks, dtype=acc_dtype, device=x.device) if chunks > 1 else out
        for step in (1, 2) if chunks > 1 else (0,):
            launch(
                kernel,
                grid,
                rows,
                out,
                sums,
                n,
                rows.stride(0),
                chunk,
                *extra,
                PASS=step,
                BLOCK=block,
                BLOCK_C=next_pow2(chunks),
                INT=is_int,
                num_warps=warps,
            )
        return out
    xc = x.contiguous()
    n = x.shape[dim]
    outer, inner = math.prod(x.shape[:dim]), math.prod(x.shape[dim + 1 :])
    if limit:
        block_i = min(MAX_BLOCK_I, next_pow2(inner), limit)
        block_n = max(1, min(next_pow2(n), limit // block_i))
    else:
        block_i = min(64, next_pow2(inner))
        block_n = min(next_pow2(n), 32 * backends.active().policy.block_scale)
    col_blocks = cdiv(inner, block_i)
    if limit:
        chunks, chunk = split_rows(outer * col_blocks, n, block_n)
        items = outer * col_blocks * chunks
        kernel, grid, extra = _cumsum_cols_persistent_kernel, (programs(items),), (items, col_blocks, chunks)
    else:
        chunks, chunk = _split_rows.chunking(outer * col_blocks, n, block_n)
        kernel, grid, extra = _cumsum_cols_kernel, (outer, col_blocks, chunks), ()
    sums = torch.empty(outer * chunks * inner, dtype=acc_dtype, device=x.device) if chunks > 1 else out
    for step in (1, 2) if chunks > 1 else (0,):
        launch(
            kernel,
            grid,
            xc,
            out,
            sums,
            n,
            inner,
            chunk,
            *extra,
            PASS=step,
            BLOCK_N=block_n,
            BLOCK_I=block_i,
            INT=is_int,
            num_warps=NUM_WARPS if limit else 4,
        )
    return out


def _reference(x, dim, *, dtype=None):
    return torch.cumsum(x, dim, dtype=dtype)


def _cost(x, dim, *, dtype=None):
    return Cost(bytes=2 * nbytes(x), flops=max(1, x.numel()))


def _eighths(x):
    """-1/8, 0 or 1/8 (zero mean) from standard normal draws."""
    return (x * 4).round_().clamp_(-1, 1).div_(8)


def _case(name, shape, dim=-1, transform=None, out_dtype=None, big=False, x_dtype=None):
    """x_dtype: a fixed bool / integer input dtype instead of the run's float dtype (compared exactly)."""

    def make(dtype, device, gen):
        if x_dtype is not None:
            x = randint(shape, x_dtype, device, gen, 2**40 if x_dtype == torch.int64 else 2**20)
        else:
            x = randn(shape, dtype, device, gen)
        return ((transform(x) if transform else x), dim), ({"dtype": out_dtype} if out_dtype else {})

    return Case(name, make, big=big)


SPEC = register(
    OpSpec(
        name="cumsum",
        reference=_reference,
        impl=cumsum,
        cases={
            "quick": lambda: [
                _case("16x300", (16, 300)),
                _case("40x30 dim0", (40, 30), dim=0),
                _case("bool mask 2x40 (positions, int64)", (2, 40), x_dtype=torch.bool),
            ],
            "edge": lambda: [
                _case("rank3 dim1", (3, 50, 7), dim=1),
                _case("transposed dim-1", (30, 40), transform=lambda x: x.t()),
                _case("long rows 2x5000", (2, 5000)),
                _case("fp32 output", (4, 100), out_dtype=torch.float32),
                _case("0-dim", (), dim=0),
                _case("zero rows 0x16", (0, 16)),
                _case("int64 +-2**40 rank3 dim1", (3, 50, 7), dim=1, x_dtype=torch.int64),
                _case("int32 long rows 2x5000 (chunked)", (2, 5000), x_dtype=torch.int32),
                _case("bool transposed dim-1", (30, 40), transform=lambda x: x.t(), x_dtype=torch.bool),
                _case("bool to int32 output", (4, 100), out_dtype=torch.int32, x_dtype=torch.bool),
                # Multiples of 1/8 in [-1/8, 1/8]: every partial sum is exact in float32 whatever the order of
                # the additions (a float32 reference of 2**30 random floats is no better than the kernel), and
                # stays within fp16's range.
                _case("big 2x(2**30+5) dim1 (eighths)", (2, 2**30 + 5), dim=1, transform=_eighths, big=True),
                _case(
                    "big (2**21+3)x1024 dim0 (eighths)",
                    (2**21 + 3, 1024),
                    dim=0,
                    transform=_eighths,
                    big=True,
                ),
            ],
            "llm": lambda: [
                _case("top-p probs 64x151936", (64, 151936)),
                _case("positions 2048x2048 dim0", (2048, 2048), dim=0),
            ],
        },
        cost=_cost,
        aten=("aten::cumsum",),
        aten_impls={"aten::cumsum": lambda impl, self, dim, *, dtype=None: impl(self, dim, dtype=dtype)},
    )
)
