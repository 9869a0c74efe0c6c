"""Reductions over some dims (sum, mean, max with indices) in the MLU style.

The input is viewed as (outer, n, inner) exactly as the generic kernels view it (`ops._reduce`, whose
validation and jit helpers `sum_columns` / `max_columns` these reuse). The outer x inner results are
numbered k = o * inner + i; a tile is BLOCK_N reduced steps x BLOCK_K results, and as many programs as
fill the cores walk the result tiles in a grid-stride loop. Reducing the last dim (inner == 1) packs
several short rows into one tile; reducing a leading dim takes a wide run of contiguous columns.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._launch import launch
from .._reduce import max_columns, prepare_max, prepare_sum, sum_columns
from .._shapes import cdiv, next_pow2
from . import sizing


@triton.jit
def _kept_offsets(k, inner, so, si, INNER_ONE: tl.constexpr):
    """Element offsets of results k (int64): o * so + i * si for k = o * inner + i."""
    if INNER_ONE:
        return k * so
    else:
        return (k // inner) * so + (k % inner) * si


@triton.jit
def _sum_kernel(x_ptr, out_ptr, n_kept, n, inner, so, sn, si,
                MEAN: tl.constexpr, INNER_ONE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                INT: tl.constexpr):
    nprog = tl.num_programs(0)
    for first in range(tl.program_id(0).to(tl.int64) * BLOCK_K, n_kept, nprog * BLOCK_K):
        k = first + tl.arange(0, BLOCK_K)
        k_ok = k < n_kept
        total = sum_columns(x_ptr + _kept_offsets(k, inner, so, si, INNER_ONE), n, sn, k_ok, BLOCK_N, BLOCK_K,
                            INT)
        if MEAN:
            total = total / n  # n == 0 gives NaN, as torch's mean of nothing
        tl.store(out_ptr + k, total.to(out_ptr.dtype.element_ty), mask=k_ok)


@triton.jit
def _max_kernel(x_ptr, out_ptr, idx_ptr, n_kept, n, inner, so, sn, si,
                INNER_ONE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    nprog = tl.num_programs(0)
    for first in range(tl.program_id(0).to(tl.int64) * BLOCK_K, n_kept, nprog * BLOCK_K):
        k = first + tl.arange(0, BLOCK_K)
        k_ok = k < n_kept
        best, best_at = max_columns(x_ptr + _kept_offsets(k, inner, so, si, INNER_ONE), n, sn, k_ok, BLOCK_N,
                                    BLOCK_K)
        tl.store(out_ptr + k, best.to(out_ptr.dtype.element_ty), mask=k_ok)
        tl.store(idx_ptr + k, best_at, mask=k_ok)


def tiles(n_kept: int, n: int, inner: int, bytes_per_elem: float) -> tuple[int, int, int]:
    """(BLOCK_N, BLOCK_K, programs) for n_kept results of n steps each."""
    limit = sizing.tile_elems(bytes_per_elem)
    per_program = next_pow2(cdiv(max(n_kept, 1), sizing.max_programs()))
    if inner == 1:  # rows: as much of a row as a tile holds, short rows packed several to a tile
        block_n = min(next_pow2(max(n, 1)), limit)
        block_k = max(1, min(limit // block_n, per_program))
    else:  # a leading dim: a run of contiguous columns, as many steps as fit
        block_k = min(next_pow2(inner), per_program, limit)
        block_n = max(1, min(next_pow2(max(n, 1)), limit // block_k))
    return block_n, block_k, sizing.programs(cdiv(n_kept, block_k))


def reduce_sum(x: torch.Tensor, dim=None, keepdim: bool = False, dtype: torch.dtype | None = None,
               mean: bool = False) -> torch.Tensor:
    """torch.sum / torch.mean over `dim`, MLU style, fp32 accumulation; a sum of bool or integers (or
    with an integer `dtype`) accumulates in int64 exactly, as the generic kernel."""
    out, geometry = prepare_sum(x, dim, keepdim, dtype, mean)
    if geometry is None:
        return out
    src, outer, n, inner, (so, sn, si) = geometry
    is_int = not out.is_floating_point()
    # live tiles: the accumulator (fp32, or int64) and the loaded x
    block_n, block_k, programs = tiles(outer * inner, n, inner, (8 if is_int else 4) + src.element_size())
    launch(_sum_kernel, (programs,), src, out, outer * inner, n, inner, so, sn, si, MEAN=mean,
           INNER_ONE=inner == 1, BLOCK_N=block_n, BLOCK_K=block_k, INT=is_int, num_warps=sizing.NUM_WARPS)
    return out


def reduce_max(x: torch.Tensor, dim: int, keepdim: bool = False):
    """torch.max(x, dim, keepdim), MLU style: (values, indices); a NaN wins, ties give the first index."""
    values, indices, geometry = prepare_max(x, dim, keepdim)
    if geometry is not None:
        src, outer, n, inner, (so, sn, si) = geometry
        # live tiles: the loaded x; the per-result best, its index and the first NaN (4 + 8 + 8 bytes),
        # counted per tile element to leave room for the comparison temporaries
        block_n, block_k, programs = tiles(outer * inner, n, inner, 20 + src.element_size())
        launch(_max_kernel, (programs,), src, values, indices, outer * inner, n, inner, so, sn, si,
               INNER_ONE=inner == 1, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=sizing.NUM_WARPS)
    return torch.return_types.max((values, indices))
