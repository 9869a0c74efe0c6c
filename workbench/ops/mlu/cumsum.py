"""cumsum, MLU style: programs that fill the cores walk the (row, chunk) or (outer, column block, chunk)
items of the generic op in a grid-stride loop, fp32 carries (int64 for an integer result, as the
generic op), blocks sized from NRAM. Few long scans are
cut into chunks (a pass of chunk totals, then a pass that scans each chunk from the totals before it).
Reuses cumsum's validation (`prepare`) and its per-item scans (`cumsum_row_chunk`, `cumsum_cols_chunk`)."""

import math

import torch
import triton
import triton.language as tl

from .. import _rows
from ..cumsum import SPEC, cumsum_cols_chunk, cumsum_row_chunk, prepare
from .._launch import launch
from . import persistent
from .persistent import split_rows

# Columns per tile when scanning a leading dim: enough contiguous columns for wide loads, leaving the
# rest of the tile to scan steps.
MAX_BLOCK_I = 256


@triton.jit
def _rows_kernel(x_ptr, out_ptr, sums_ptr, n_items, n_cols, x_row_stride, chunks, chunk,
                 PASS: tl.constexpr, BLOCK: tl.constexpr, BLOCK_C: tl.constexpr, INT: tl.constexpr):
    for item in range(tl.program_id(0).to(tl.int64), n_items, tl.num_programs(0)):  # row * chunks + chunk
        cumsum_row_chunk(x_ptr, out_ptr, sums_ptr, item // chunks, item % chunks, chunks, n_cols,
                         x_row_stride, chunk, PASS, BLOCK, BLOCK_C, INT)


@triton.jit
def _cols_kernel(x_ptr, out_ptr, sums_ptr, n_items, n, inner, col_blocks, chunks, chunk,
                 PASS: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_I: tl.constexpr, INT: tl.constexpr):
    for item in range(tl.program_id(0).to(tl.int64), n_items, tl.num_programs(0)):
        tile = item // chunks  # item = (o * col_blocks + column block) * chunks + chunk
        cumsum_cols_chunk(x_ptr, out_ptr, sums_ptr, tile // col_blocks, tile % col_blocks, item % chunks,
                          chunks, n, inner, chunk, PASS, BLOCK_N, BLOCK_I, INT)


def cumsum(x: torch.Tensor, dim: int, *, dtype: torch.dtype | None = None) -> torch.Tensor:
    out, dim = prepare(x, dim, dtype)
    if dim is None:
        return out
    is_int = not out.is_floating_point()
    acc_dtype = torch.int64 if is_int else torch.float32
    # live tiles: the loaded x and the chunk total or running carry (fp32, or int64)
    limit = persistent.tile_elems(acc_dtype.itemsize + x.element_size())
    if x.dim() == 0 or dim == x.dim() - 1:
        rows = _rows.as_rows(x)
        n_rows, n = rows.shape
        block = min(limit, triton.next_power_of_2(n))
        chunks, chunk = split_rows(n_rows, n, block)
        items = n_rows * chunks
        sums = torch.empty(items if chunks > 1 else 1, dtype=acc_dtype, device=x.device)
        for step in ((1, 2) if chunks > 1 else (0,)):
            launch(_rows_kernel, (persistent.programs(items),), rows, out, sums, items, n, rows.stride(0),
                   chunks, chunk, PASS=step, BLOCK=block, BLOCK_C=triton.next_power_of_2(chunks), INT=is_int,
                   num_warps=persistent.NUM_WARPS)
        return out
    xc = x.contiguous()
    n = x.shape[dim]
    outer, inner = math.prod(x.shape[:dim]), math.prod(x.shape[dim + 1:])
    block_i = min(MAX_BLOCK_I, triton.next_power_of_2(inner), limit)
    block_n = max(1, min(triton.next_power_of_2(n), limit // block_i))
    col_blocks = triton.cdiv(inner, block_i)
    chunks, chunk = split_rows(outer * col_blocks, n, block_n)
    items = outer * col_blocks * chunks
    sums = torch.empty(outer * chunks * inner if chunks > 1 else 1, dtype=acc_dtype, device=x.device)
    for step in ((1, 2) if chunks > 1 else (0,)):
        launch(_cols_kernel, (persistent.programs(items),), xc, out, sums, items, n, inner, col_blocks,
               chunks, chunk, PASS=step, BLOCK_N=block_n, BLOCK_I=block_i, INT=is_int,
               num_warps=persistent.NUM_WARPS)
    return out


SPEC.add_variant("mlu", cumsum)
