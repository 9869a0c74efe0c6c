"""Reductions over some dims (sum, mean, max with indices), shared by the sum, mean and max ops.

The input is viewed as (outer, n, inner) through its strides: the kept dims before the reduced ones,
the reduced dims and the kept dims after them, each merged into one. One program reduces a tile of
`inner` columns over all n, accumulating in fp32, so a last-dim reduction reads rows and a leading-dim
reduction reads coalesced columns. Inputs that do not merge that way (reduced dims apart, or strides
that do not merge) are permuted and copied first. A sum of bool or integer values (torch gives int64)
accumulates in int64, exactly. In the persistent launch style (ops.mlu.persistent) programs that fill
the cores walk tiles of results instead.
"""

from __future__ import annotations

import functools
import math

import torch
import triton
import triton.language as tl

from workbench import backends

from . import _rows, _split_rows
from ._common import Plans, check_tensor, new_output, new_output_of
from ._elementwise import _merge_dims
from ._launch import Site, aligned, launch
from ._shapes import cdiv, next_pow2
from .mlu.persistent import NUM_WARPS, max_programs, persistent, tile_elems
from .mlu.persistent import programs as persistent_programs
from .spec import FLOAT_DTYPES

TILE = 4096  # elements one program holds per step on a GPU; the launch policy scales it
# Inputs a sum takes besides floats: bool and integers, summed exactly in int64 (torch's result dtype).
INT_INPUTS = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
# What sum and cumsum take and may return (integer results accumulate exactly in int64).
SUM_INPUTS, SUM_RESULTS = FLOAT_DTYPES + INT_INPUTS, FLOAT_DTYPES + (torch.int32, torch.int64)
MAX_GRID_Y = 65535  # CUDA's limit on grid axis 1


@triton.jit
def sum_columns(base, n, sn, col_ok, BLOCK_N: tl.constexpr, BLOCK_I: tl.constexpr, INT: tl.constexpr):
    """Sums over n steps of stride sn of the BLOCK_I columns starting at the pointers `base`: fp32, or
    exact int64 for an integer result (INT).

    Shared by both launch styles."""
    rn = tl.arange(0, BLOCK_N).to(tl.int64)
    if INT:  # an integer result: exact int64 accumulation
        at = tl.int64
    else:
        at = tl.float32
    acc = tl.zeros([BLOCK_N, BLOCK_I], at)
    for start in range(0, n, BLOCK_N):
        r = start + rn
        ok = (r < n)[:, None] & col_ok[None, :]
        acc += tl.load(base[None, :] + r[:, None] * sn, mask=ok, other=0).to(at)
    return tl.sum(acc, 0)


@triton.jit
def _max_by_tiles(base, n, sn, col_ok, BLOCK_N: tl.constexpr, BLOCK_I: tl.constexpr):
    """max_columns for a single column (BLOCK_I == 1, a row reduction): each tile is reduced as it
    comes, so the state is a few scalars."""
    rn = tl.arange(0, BLOCK_N).to(tl.int64)
    best = tl.full([BLOCK_I], -float("inf"), tl.float32)
    best_at = tl.zeros([BLOCK_I], tl.int64)
    first_nan = tl.full([BLOCK_I], n, tl.int64)
    for start in range(0, n, BLOCK_N):
        r = start + rn
        ok = (r < n)[:, None] & col_ok[None, :]
        x = tl.load(base[None, :] + r[:, None] * sn, mask=ok, other=-float("inf")).to(tl.float32)
        is_nan = x != x
        first_nan = tl.minimum(first_nan, tl.min(tl.where(is_nan, r[:, None], n), 0))
        chunk_best, chunk_at = tl.max(
            tl.where(is_nan, -float("inf"), x), 0, return_indices=True, return_indices_tie_break_left=True
        )
        better = chunk_best > best  # ties keep the earlier chunk's position
        best_at = tl.where(better, start + chunk_at.to(tl.int64), best_at)
        best = tl.where(better, chunk_best, best)
    has_nan = first_nan < n
    return tl.where(has_nan, float("nan"), best), tl.where(has_nan, first_nan, best_at)


@triton.jit
def _max_by_lanes(base, n, sn, col_ok, BLOCK_N: tl.constexpr, BLOCK_I: tl.constexpr):
    """max_columns for several columns: each lane of the (BLOCK_N, BLOCK_I) tile keeps its own best and
    first NaN across the loop (elementwise, as sum_columns accumulates), and the tile is reduced across
    lanes once at the end; reducing every tile across its rows cost a shuffle per tile."""
    rn = tl.arange(0, BLOCK_N).to(tl.int64)
    best = tl.full([BLOCK_N, BLOCK_I], -float("inf"), tl.float32)
    best_at = tl.zeros([BLOCK_N, BLOCK_I], tl.int64) + rn[:, None]  # an all -inf column: its first row
    first_nan = tl.full([BLOCK_N, BLOCK_I], n, tl.int64)
    for start in range(0, n, BLOCK_N):
        r = (start + rn)[:, None]
        ok = (r < n) & col_ok[None, :]
        x = tl.load(base[None, :] + r * sn, mask=ok, other=-float("inf")).to(tl.float32)
        is_nan = x != x
        first_nan = tl.minimum(first_nan, tl.where(is_nan, r, n))
        better = x > best  # NaN compares false; a tie keeps the lane's earlier row
        best_at = tl.where(better, r, best_at)
        best = tl.where(better, x, best)
    top = tl.max(best, 0)
    top_at = tl.min(tl.where(best == top[None, :], best_at, n), 0)  # the first row holding the max
    nan_at = tl.min(first_nan, 0)
    has_nan = nan_at < n
    return tl.where(has_nan, float("nan"), top), tl.where(has_nan, nan_at, top_at)


@triton.jit
def max_columns(base, n, sn, col_ok, BLOCK_N: tl.constexpr, BLOCK_I: tl.constexpr):
    """(max, its index) over n steps of stride sn of the BLOCK_I columns starting at the pointers `base`.

    torch.max: a NaN wins (the first one), else the first position of the largest value. Shared by the
    kernels of both launch styles."""
    if BLOCK_I == 1:
        best, best_at = _max_by_tiles(base, n, sn, col_ok, BLOCK_N, BLOCK_I)
    else:
        best, best_at = _max_by_lanes(base, n, sn, col_ok, BLOCK_N, BLOCK_I)
    return best, best_at


@triton.jit
def _sum_kernel(
    x_ptr,
    out_ptr,
    n,
    inner,
    so,
    sn,
    si,
    chunk,
    count,
    MEAN: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_I: tl.constexpr,
    INT: tl.constexpr,
):
    """Program (o, column tile, split) sums rows [split * chunk, + chunk) of its columns into
    out[o, split, cols]; with one split that is the whole sum (MEAN: divided by `count`)."""
    o = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1).to(tl.int64) * BLOCK_I + tl.arange(0, BLOCK_I)
    split = tl.program_id(2).to(tl.int64)
    col_ok = cols < inner
    start = split * chunk
    total = sum_columns(
        x_ptr + o * so + start * sn + cols * si,
        tl.minimum(chunk, n - start),
        sn,
        col_ok,
        BLOCK_N,
        BLOCK_I,
        INT,
    )
    if MEAN:
        total = total / count  # count == 0 gives NaN, as torch's mean of nothing
    tl.store(
        out_ptr + (o * tl.num_programs(2) + split) * inner + cols,
        total.to(out_ptr.dtype.element_ty),
        mask=col_ok,
    )


@triton.jit
def _max_kernel(
    x_ptr,
    out_ptr,
    idx_ptr,
    part_idx_ptr,
    n,
    inner,
    so,
    sn,
    si,
    chunk,
    MERGE: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_I: tl.constexpr,
):
    """Program (o, column tile, split): the max and its index over rows [split * chunk, + chunk). MERGE:
    x holds the splits' maxima and part_idx their indices; the position found picks the index."""
    o = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1).to(tl.int64) * BLOCK_I + tl.arange(0, BLOCK_I)
    split = tl.program_id(2).to(tl.int64)
    col_ok = cols < inner
    start = split * chunk
    best, best_at = max_columns(
        x_ptr + o * so + start * sn + cols * si, tl.minimum(chunk, n - start), sn, col_ok, BLOCK_N, BLOCK_I
    )
    if MERGE:  # the winning split's own index (splits in order: ties and NaNs keep the first, as torch)
        best_at = tl.load(part_idx_ptr + o * so + best_at * sn + cols * si, mask=col_ok, other=0)
    else:
        best_at += start
    out = (o * tl.num_programs(2) + split) * inner + cols
    tl.store(out_ptr + out, best.to(out_ptr.dtype.element_ty), mask=col_ok)
    tl.store(idx_ptr + out, best_at, mask=col_ok)


# The persistent style (ops.mlu.persistent). The outer x inner results are numbered k = o * inner + i; a
# tile is BLOCK_N reduced steps x BLOCK_K results, and programs that fill the cores walk the result tiles
# in a grid-stride loop. Reducing the last dim (inner == 1) packs several short rows into one tile;
# reducing a leading dim takes a wide run of contiguous columns.


@triton.jit
def _kept_offsets(k, inner, so, si, INNER_ONE: tl.constexpr):
    """Element offsets of results k (int64): o * so + i * si for k = o * inner + i."""
    if INNER_ONE:
        return k * so
    else:
        return (k // inner) * so + (k % inner) * si


@triton.jit
def _sum_persistent_kernel(
    x_ptr,
    out_ptr,
    n_kept,
    n,
    inner,
    so,
    sn,
    si,
    MEAN: tl.constexpr,
    INNER_ONE: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    INT: tl.constexpr,
):
    nprog = tl.num_programs(0)
    for first in range(tl.program_id(0).to(tl.int64) * BLOCK_K, n_kept, nprog * BLOCK_K):
        k = first + tl.arange(0, BLOCK_K)
        k_ok = k < n_kept
        total = sum_columns(
            x_ptr + _kept_offsets(k, inner, so, si, INNER_ONE), n, sn, k_ok, BLOCK_N, BLOCK_K, INT
        )
        if MEAN:
            total = total / n  # n == 0 gives NaN, as torch's mean of nothing
        tl.store(out_ptr + k, total.to(out_ptr.dtype.element_ty), mask=k_ok)


@triton.jit
def _max_persistent_kernel(
    x_ptr,
    out_ptr,
    idx_ptr,
    n_kept,
    n,
    inner,
    so,
    sn,
    si,
    INNER_ONE: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    nprog = tl.num_programs(0)
    for first in range(tl.program_id(0).to(tl.int64) * BLOCK_K, n_kept, nprog * BLOCK_K):
        k = first + tl.arange(0, BLOCK_K)
        k_ok = k < n_kept
        best, best_at = max_columns(
            x_ptr + _kept_offsets(k, inner, so, si, INNER_ONE), n, sn, k_ok, BLOCK_N, BLOCK_K
        )
        tl.store(out_ptr + k, best.to(out_ptr.dtype.element_ty), mask=k_ok)
        tl.store(idx_ptr + k, best_at, mask=k_ok)


def _persistent_tiles(n_kept: int, n: int, inner: int, bytes_per_elem: float) -> tuple[int, int, int]:
    """(BLOCK_N, BLOCK_K, programs) for n_kept results of n steps each."""
    limit = tile_elems(bytes_per_elem)
    per_program = next_pow2(cdiv(max(n_kept, 1), max_programs()))
    if inner == 1:  # rows: as much of a row as a tile holds, short rows packed several to a tile
        block_n = min(next_pow2(max(n, 1)), limit)
        block_k = max(1, min(limit // block_n, per_program))
    else:  # a leading dim: a run of contiguous columns, as many steps as fit
        block_k = min(next_pow2(inner), per_program, limit)
        block_n = max(1, min(next_pow2(max(n, 1)), limit // block_k))
    return block_n, block_k, persistent_programs(cdiv(n_kept, block_k))


def normalize_dims(x: torch.Tensor, dim, name: str = "dim") -> list[int]:
    """Sorted unique non-negative dims; None or [] means all (torch's convention for sum/mean)."""
    rank = x.dim()
    if rank == 0 and dim is not None and dim != [] and dim != ():
        normalize_dims(x.reshape(1), dim, name)  # a 0-dim tensor takes dim 0 or -1, as torch
    if rank == 0:
        return [0]  # viewed as shape [1]
    if dim is None:
        return list(range(rank))
    dims = [dim] if isinstance(dim, int) else list(dim)
    if not dims:
        return list(range(rank))
    out = set()
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, int):
            raise TypeError(f"{name}: expected ints, got {type(d).__name__}")
        bound = max(rank, 1)
        if not -bound <= d < bound:
            raise ValueError(f"{name}: expected a dim in [{-bound}, {bound}), got {d}")
        if d % bound in out:
            raise ValueError(f"{name}: dim {d} appears twice")
        out.add(d % bound)
    return sorted(out)


def _three_dims(x: torch.Tensor, dims: list[int]):
    """(x or a copy, outer, n, inner, (so, sn, si)) viewing x as (outer, n, inner)."""
    shape = tuple(x.shape) if x.dim() else (1,)
    view = _three_dim_view(shape, x.stride() if x.dim() else (1,), tuple(dims))
    if view is not None:
        return (x, *view)
    kept = [d for d in range(len(shape)) if d not in dims]
    moved = x.reshape(shape).permute(*kept, *dims).contiguous()
    n = math.prod(shape[d] for d in dims)
    outer = math.prod(shape[d] for d in kept)
    return moved, outer, n, 1, (n, 1, 0)


@functools.lru_cache(maxsize=4096)
def _three_dim_view(shape: tuple, strides: tuple, dims: tuple):
    """(outer, n, inner, (so, sn, si)) of a tensor of `shape` and `strides` as an (outer, n, inner) view,
    n over the reduced `dims` (sorted), or None when the dims before, in or after them do not merge into
    one. Cached: a decode step repeats a few geometries."""
    lo, hi = dims[0], dims[-1] + 1
    if dims != tuple(range(lo, hi)):
        return None
    groups = [(shape[:lo], strides[:lo]), (shape[lo:hi], strides[lo:hi]), (shape[hi:], strides[hi:])]
    merged = [_merge_dims(s, [st]) for s, st in groups]
    if not all(len(m) <= 1 for m in merged):
        return None
    sizes = [m[0][0] if m else 1 for m in merged]
    return (*sizes, tuple(m[0][1][0] if m else 0 for m in merged))


def _out_shape(x: torch.Tensor, dims: list[int], keepdim: bool) -> list[int]:
    if x.dim() == 0:
        return []
    return [1 if d in dims else s for d, s in enumerate(x.shape) if keepdim or d not in dims]


def _tiles(n: int, inner: int) -> tuple[int, int, int]:
    """(BLOCK_N, BLOCK_I, num_warps) for a tile of about TILE * block_scale elements."""
    return _tiles_of(TILE * backends.active().policy.block_scale, n, inner)


@functools.lru_cache(maxsize=4096)
def _tiles_of(budget: int, n: int, inner: int) -> tuple[int, int, int]:
    """`_tiles` for tiles of `budget` elements. Cached: a decode step repeats the same sizes."""
    block_i = min(next_pow2(max(inner, 1)), 64) if inner > 1 else 1
    block_n = max(1, min(next_pow2(max(n, 1)), budget // block_i))
    return block_n, block_i, _rows.row_warps(min(block_n * block_i, TILE))


def _grid(outer: int, inner: int, block_i: int, splits: int = 1) -> tuple[int, int, int]:
    tiles = cdiv(inner, block_i)
    if tiles > MAX_GRID_Y:
        raise ValueError(
            f"x: {inner} kept elements after the reduced dims need {tiles} column tiles, "
            f"more than the {MAX_GRID_Y} this launch allows"
        )
    return outer, tiles, splits


def _splits(outer: int, inner: int, n: int, block_n: int, block_i: int) -> tuple[int, int]:
    """(splits, rows per split): a long reduction with too few (outer x column tile) programs to fill the
    device is cut into splits of whole tiles, reduced again by a second pass."""
    programs = outer * cdiv(inner, block_i)
    if programs >= _split_rows.target_programs() or n < 2 * block_n:
        return 1, n
    return _split_rows.chunking(programs, n, block_n)


def prepare_sum(x: torch.Tensor, dim, keepdim: bool, dtype: torch.dtype | None, mean: bool = False):
    """Validate; (output, (x or a copy, outer, n, inner, (so, sn, si)) or None when the output is empty).
    A sum of bool or integers (or with an integer `dtype`) gives int64 unless `dtype` says; the kernels
    then accumulate in int64 (INT: the output is not floating point). Shared by every sum/mean launcher
    (both launch styles)."""
    check_tensor("x", x, FLOAT_DTYPES if mean else SUM_INPUTS)
    allowed = FLOAT_DTYPES if mean else SUM_RESULTS
    if dtype is not None and dtype not in allowed:
        names = ", ".join(str(d).replace("torch.", "") for d in allowed)
        raise TypeError(f"dtype: expected one of ({names}), got {dtype}")
    dims = normalize_dims(x, dim)
    out_dtype = dtype or (x.dtype if x.is_floating_point() else torch.int64)
    out = new_output(_out_shape(x, dims, keepdim), out_dtype, x.device)
    return out, (_three_dims(x, dims) if out.numel() else None)


def prepare_max(x: torch.Tensor, dim: int, keepdim: bool):
    """Validate; (values, indices, (x or a copy, outer, n, inner, (so, sn, si)) or None when empty).
    Shared by every max launcher (both launch styles)."""
    check_tensor("x", x)
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim: expected an int, got {type(dim).__name__}")
    dims = normalize_dims(x, dim)
    if x.dim() and x.shape[dims[0]] == 0:
        raise ValueError(f"x: cannot take the max over dim {dim} of size 0 (shape {tuple(x.shape)})")
    shape = _out_shape(x, dims, keepdim)
    values = new_output(shape, x.dtype, x.device)
    indices = new_output(shape, torch.int64, x.device)
    return values, indices, (_three_dims(x, dims) if values.numel() else None)


# x's shape, strides, dtype and device and the arguments -> (output shape and dtype, grid, runtime ints,
# Site) of a one-pass sum that reads x in place: RMSNorm's mean of every layer repeats one geometry.
_sum_plans = Plans()


def reduce_sum(
    x: torch.Tensor, dim=None, keepdim: bool = False, dtype: torch.dtype | None = None, mean: bool = False
) -> torch.Tensor:
    """torch.sum / torch.mean over `dim` (None or []: all dims), fp32 accumulation; a sum of bool or
    integers (or with an integer `dtype`) accumulates in int64 and gives int64 unless `dtype` says."""
    try:
        plan_key = (
            x.shape,
            x.stride(),
            x.dtype,
            x.device,
            tuple(dim) if isinstance(dim, list) else dim,
            keepdim,
            dtype,
            mean,
        )
    except AttributeError:  # not a tensor: prepare_sum names it
        plan_key = None
    plan = _sum_plans.get(plan_key)
    if plan is not None:  # checked before
        shape, out_dtype, grid, ints, site = plan
        out = new_output_of(x, shape, out_dtype)
        site(grid, x, out, *ints, aligned=not x.data_ptr() & 15)
        return out
    out, geometry = prepare_sum(x, dim, keepdim, dtype, mean)
    if geometry is None:
        return out
    src, outer, n, inner, (so, sn, si) = geometry
    integer = not out.is_floating_point()
    if persistent():
        # live tiles: the accumulator (fp32, or int64) and the loaded x
        block_n, block_k, programs = _persistent_tiles(
            outer * inner, n, inner, (8 if integer else 4) + src.element_size()
        )
        launch(
            _sum_persistent_kernel,
            (programs,),
            src,
            out,
            outer * inner,
            n,
            inner,
            so,
            sn,
            si,
            MEAN=mean,
            INNER_ONE=inner == 1,
            BLOCK_N=block_n,
            BLOCK_K=block_k,
            INT=integer,
            num_warps=NUM_WARPS,
        )
        return out
    block_n, block_i, warps = _tiles(n, inner)
    splits, chunk = _splits(outer, inner, n, block_n, block_i)
    if splits > 1:  # partial sums (fp32, or int64 for integers), then their sum
        part = torch.empty(
            (outer, splits, inner), dtype=torch.int64 if integer else torch.float32, device=x.device
        )
        launch(
            _sum_kernel,
            _grid(outer, inner, block_i, splits),
            src,
            part,
            n,
            inner,
            so,
            sn,
            si,
            chunk,
            n,
            MEAN=False,
            BLOCK_N=block_n,
            BLOCK_I=block_i,
            INT=integer,
            num_warps=warps,
        )
        src, n, (so, sn, si) = part, splits, (splits * inner, inner, 1)
        block_n, block_i, warps = _tiles(n, inner)
    grid, ints = _grid(outer, inner, block_i), (n, inner, so, sn, si, n, geometry[2])
    site = Site(_sum_kernel, MEAN=mean, BLOCK_N=block_n, BLOCK_I=block_i, INT=integer, num_warps=warps)
    site(grid, src, out, *ints, aligned=aligned(src))
    if splits == 1 and src is x:
        _sum_plans.put(plan_key, (tuple(out.shape), out.dtype, grid, ints, site))
    return out


def reduce_max(x: torch.Tensor, dim: int, keepdim: bool = False):
    """torch.max(x, dim, keepdim): (values, indices); a NaN wins, ties give the first index."""
    values, indices, geometry = prepare_max(x, dim, keepdim)
    if geometry is not None:
        src, outer, n, inner, (so, sn, si) = geometry
        if persistent():
            # live tiles: the loaded x; the per-result best, its index and the first NaN (4 + 8 + 8 bytes),
            # counted per tile element to leave room for the comparison temporaries
            block_n, block_k, programs = _persistent_tiles(outer * inner, n, inner, 20 + src.element_size())
            launch(
                _max_persistent_kernel,
                (programs,),
                src,
                values,
                indices,
                outer * inner,
                n,
                inner,
                so,
                sn,
                si,
                INNER_ONE=inner == 1,
                BLOCK_N=block_n,
                BLOCK_K=block_k,
                num_warps=NUM_WARPS,
            )
            return torch.return_types.max((values, indices))
        block_n, block_i, warps = _tiles(n, inner)
        splits, chunk = _splits(outer, inner, n, block_n, block_i)
        part_idx = indices
        if splits > 1:  # each split's max and index, then the max over splits
            part = torch.empty((outer, splits, inner), dtype=torch.float32, device=x.device)
            part_idx = torch.empty((outer, splits, inner), dtype=torch.int64, device=x.device)
            launch(
                _max_kernel,
                _grid(outer, inner, block_i, splits),
                src,
                part,
                part_idx,
                part_idx,
                n,
                inner,
                so,
                sn,
                si,
                chunk,
                MERGE=False,
                BLOCK_N=block_n,
                BLOCK_I=block_i,
                num_warps=warps,
            )
            src, n, (so, sn, si) = part, splits, (splits * inner, inner, 1)
            block_n, block_i, warps = _tiles(n, inner)
        launch(
            _max_kernel,
            _grid(outer, inner, block_i),
            src,
            values,
            indices,
            part_idx,
            n,
            inner,
            so,
            sn,
            si,
            n,
            MERGE=splits > 1,
            BLOCK_N=block_n,
            BLOCK_I=block_i,
            num_warps=warps,
        )
    return torch.return_types.max((values, indices))
