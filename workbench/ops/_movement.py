"""Data-movement launchers: strided copy with dtype conversion, fill, and gather along a dim.

These move values without arithmetic, so they take integer and bool tensors too (values never pass
through fp32: an int64 copy stays exact). Destinations may be strided views: dims are ordered by the
destination's strides before merging, so a permuted but dense destination (e.g. `empty_like` of a
transposed input) is copied as one flat range. Used by the copy, fill, cat, index_select and gather ops.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import triton
import triton.language as tl

from . import _index_check
from ._common import check_tensor, scalar_as
from ._elementwise import BLOCK, MAX_DIMS, _coords, _merge_dims, _offsets, padded_layout
from ._launch import launch
from ._shapes import broadcast, broadcast_strides, cdiv
from .mlu.persistent import NUM_WARPS, grid_1d, persistent
from .spec import FLOAT_DTYPES, Unsupported

MOVE_DTYPES = FLOAT_DTYPES + (torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64, torch.bool)
INDEX_DTYPES = (torch.int32, torch.int64)


@triton.jit
def _to_bf16_rne(x):
    """fp32 -> bf16 rounding to nearest even by bit arithmetic, NaN kept: what torch does, and the same on
    every backend (the Triton interpreter truncates in `.to(tl.bfloat16)`)."""
    bits = x.to(tl.uint32, bitcast=True)
    bits = tl.where(x != x, 0x7FC00000, bits + 0x7FFF + ((bits >> 16) & 1))
    return (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)


# One tile of the copy and the fill: the tile-style kernels run one per program, the persistent ones
# loop over theirs. `offs` are int64 flat indices in dst's merged dim order.


@triton.jit
def _copy_tile(
    src_ptr,
    dst_ptr,
    offs,
    n,
    s1,
    s2,
    s3,
    ss0,
    ss1,
    ss2,
    ss3,
    ds0,
    ds1,
    ds2,
    ds3,
    CONTIGUOUS: tl.constexpr,
    TO_BF16: tl.constexpr,
):
    mask = offs < n
    s_offs = _offsets(offs, s1, s2, s3, ss0, ss1, ss2, ss3, CONTIGUOUS)
    d_offs = _offsets(offs, s1, s2, s3, ds0, ds1, ds2, ds3, CONTIGUOUS)
    x = tl.load(src_ptr + s_offs, mask=mask)
    if TO_BF16:
        y = _to_bf16_rne(x.to(tl.float32))
    else:
        y = x.to(dst_ptr.dtype.element_ty)
    tl.store(dst_ptr + d_offs, y, mask=mask)


@triton.jit
def _fill_tile(
    dst_ptr, value, offs, n, s1, s2, s3, ds0, ds1, ds2, ds3, CONTIGUOUS: tl.constexpr, BLOCK: tl.constexpr
):
    mask = offs < n
    d_offs = _offsets(offs, s1, s2, s3, ds0, ds1, ds2, ds3, CONTIGUOUS)
    tl.store(dst_ptr + d_offs, tl.full([BLOCK], value, dst_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _copy_kernel(
    src_ptr,
    dst_ptr,
    n,
    s1,
    s2,
    s3,
    ss0,
    ss1,
    ss2,
    ss3,
    ds0,
    ds1,
    ds2,
    ds3,
    CONTIGUOUS: tl.constexpr,
    TO_BF16: tl.constexpr,
    BLOCK: tl.constexpr,
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    _copy_tile(
        src_ptr, dst_ptr, offs, n, s1, s2, s3, ss0, ss1, ss2, ss3, ds0, ds1, ds2, ds3, CONTIGUOUS, TO_BF16
    )


@triton.jit
def _fill_kernel(
    dst_ptr, value, n, s1, s2, s3, ds0, ds1, ds2, ds3, CONTIGUOUS: tl.constexpr, BLOCK: tl.constexpr
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    _fill_tile(dst_ptr, value, offs, n, s1, s2, s3, ds0, ds1, ds2, ds3, CONTIGUOUS, BLOCK)


@triton.jit
def _gather_tile(
    x_ptr,
    idx_ptr,
    out_ptr,
    offs,
    n,
    dim_size,
    s1,
    s2,
    s3,
    xs0,
    xs1,
    xs2,
    xs3,
    is0,
    is1,
    is2,
    is3,
    DIM: tl.constexpr,
):
    # out[i] = x[i with coordinate DIM replaced by index[i]]; out is contiguous, shape (s0, s1, s2, s3).
    # Returns the lanes whose index is out of range (for the caller's index check).
    mask = offs < n
    i0, i1, i2, i3 = _coords(offs, s1, s2, s3)
    idx = tl.load(idx_ptr + i0 * is0 + i1 * is1 + i2 * is2 + i3 * is3, mask=mask, other=0).to(tl.int64)
    if DIM == 0:
        i0 = idx
    elif DIM == 1:
        i1 = idx
    elif DIM == 2:
        i2 = idx
    else:
        i3 = idx
    inside = mask & (idx >= 0) & (idx < dim_size)  # out-of-range indices read nothing (0), never past x
    x = tl.load(x_ptr + i0 * xs0 + i1 * xs1 + i2 * xs2 + i3 * xs3, mask=inside, other=0)
    tl.store(out_ptr + offs, x, mask=mask)
    return mask & ~inside


@triton.jit
def _gather_kernel(
    x_ptr,
    idx_ptr,
    out_ptr,
    flag_ptr,
    n,
    dim_size,
    s1,
    s2,
    s3,
    xs0,
    xs1,
    xs2,
    xs3,
    is0,
    is1,
    is2,
    is3,
    DIM: tl.constexpr,
    CHECK: tl.constexpr,
    BLOCK: tl.constexpr,
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    bad = _gather_tile(
        x_ptr, idx_ptr, out_ptr, offs, n, dim_size, s1, s2, s3, xs0, xs1, xs2, xs3, is0, is1, is2, is3, DIM
    )
    if CHECK:  # every bad lane stores the same 1: no atomics needed
        tl.store(flag_ptr + tl.zeros_like(offs), 1, mask=bad)


# The persistent style (ops.mlu.persistent): programs that fill the cores loop over the same tiles.


@triton.jit
def _copy_persistent_kernel(
    src_ptr,
    dst_ptr,
    n,
    s1,
    s2,
    s3,
    ss0,
    ss1,
    ss2,
    ss3,
    ds0,
    ds1,
    ds2,
    ds3,
    CONTIGUOUS: tl.constexpr,
    TO_BF16: tl.constexpr,
    BLOCK: tl.constexpr,
):
    step = tl.num_programs(0).to(tl.int64) * BLOCK
    for start in range(tl.program_id(0).to(tl.int64) * BLOCK, n, step):
        _copy_tile(
            src_ptr,
            dst_ptr,
            start + tl.arange(0, BLOCK),
            n,
            s1,
            s2,
            s3,
            ss0,
            ss1,
            ss2,
            ss3,
            ds0,
            ds1,
            ds2,
            ds3,
            CONTIGUOUS,
            TO_BF16,
        )


@triton.jit
def _fill_persistent_kernel(
    dst_ptr, value, n, s1, s2, s3, ds0, ds1, ds2, ds3, CONTIGUOUS: tl.constexpr, BLOCK: tl.constexpr
):
    step = tl.num_programs(0).to(tl.int64) * BLOCK
    for start in range(tl.program_id(0).to(tl.int64) * BLOCK, n, step):
        _fill_tile(
            dst_ptr, value, start + tl.arange(0, BLOCK), n, s1, s2, s3, ds0, ds1, ds2, ds3, CONTIGUOUS, BLOCK
        )


@triton.jit
def _gather_persistent_kernel(
    x_ptr,
    idx_ptr,
    out_ptr,
    flag_ptr,
    n,
    dim_size,
    s1,
    s2,
    s3,
    xs0,
    xs1,
    xs2,
    xs3,
    is0,
    is1,
    is2,
    is3,
    DIM: tl.constexpr,
    CHECK: tl.constexpr,
    BLOCK: tl.constexpr,
):
    step = tl.num_programs(0).to(tl.int64) * BLOCK
    for start in range(tl.program_id(0).to(tl.int64) * BLOCK, n, step):
        offs = start + tl.arange(0, BLOCK)
        bad = _gather_tile(
            x_ptr,
            idx_ptr,
            out_ptr,
            offs,
            n,
            dim_size,
            s1,
            s2,
            s3,
            xs0,
            xs1,
            xs2,
            xs3,
            is0,
            is1,
            is2,
            is3,
            DIM,
        )
        if CHECK:
            tl.store(flag_ptr + tl.zeros_like(offs), 1, mask=bad)


def _dst_layout(dst: torch.Tensor, *others: torch.Tensor):
    """Sizes of dims 1..3, per-operand strides (dst first) padded to 4 dims, contiguous flag; or None.

    `others` broadcast to dst's shape. Dims are taken in the order of dst's strides (largest first) so a
    dense permuted dst merges to one dim. None when more than 4 dims remain.
    """
    return _dst_merged(tuple(dst.shape), dst.stride(), tuple((t.shape, t.stride()) for t in others))


@functools.lru_cache(maxsize=4096)
def _dst_merged(shape, dst_strides, geometry):
    """_dst_layout of a dst of `shape` and `dst_strides` and others of `geometry` ((shape, strides) each).
    Cached: a decode step repeats a few geometries, and working one out costs ~10 µs of Python."""
    all_strides = [dst_strides] + [broadcast_strides(s, st, shape) for s, st in geometry]
    order = sorted(range(len(shape)), key=lambda d: -all_strides[0][d])
    merged = _merge_dims([shape[d] for d in order], [[st[d] for d in order] for st in all_strides])
    return padded_layout(merged, len(all_strides))


def _check_writable(name: str, dst: torch.Tensor) -> None:
    if any(st == 0 and sz > 1 for st, sz in zip(dst.stride(), dst.shape)):
        raise Unsupported(f"{name}: more than one element refers to the same memory (a broadcast view)")


def prepare_copy(dst: torch.Tensor, src: torch.Tensor):
    """Validate dst.copy_(src) and lay it out: (src, sizes, src_strides, dst_strides, contiguous, to_bf16),
    or None when there is nothing to copy (dst is empty, or src is dst itself: the same view, as torch
    returns at once). Shared by both launch styles; `src` may come back as a compact copy when its strides
    keep dims apart."""
    check_tensor("dst", dst, MOVE_DTYPES)
    check_tensor("src", src, MOVE_DTYPES)
    if src.device != dst.device:
        raise Unsupported(f"src: a copy from {src.device} to {dst.device} is a transfer, not a kernel")
    _check_writable("dst", dst)
    if src.numel() and dst.numel() and src.untyped_storage().data_ptr() == dst.untyped_storage().data_ptr():
        if (
            src.dtype == dst.dtype
            and src.data_ptr() == dst.data_ptr()
            and src.shape == dst.shape
            and src.stride() == dst.stride()
        ):
            return None  # dst.copy_(dst): every element already holds its value
        raise Unsupported("src: shares memory with dst (overlap needs a staged copy)")
    if src.shape != dst.shape and (
        src.dim() > dst.dim() or broadcast(src.shape, dst.shape) != tuple(dst.shape)
    ):
        raise ValueError(f"src: shape {tuple(src.shape)} does not broadcast to dst shape {tuple(dst.shape)}")
    if dst.numel() == 0:
        return None
    layout = _dst_layout(dst, src)
    if layout is None:  # src's strides keep dims apart: read a compact copy of it
        src = src.expand(dst.shape).contiguous()
        layout = _dst_layout(dst, src)
    if layout is None:
        raise Unsupported(f"dst: strides {dst.stride()} do not merge into {MAX_DIMS} dims")
    sizes, (d_strides, s_strides), contiguous = layout
    to_bf16 = dst.dtype == torch.bfloat16 and src.dtype != torch.bfloat16
    return src, sizes, s_strides, d_strides, contiguous, to_bf16


def copy_into(dst: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """dst.copy_(src): src broadcast to dst's shape and converted to dst's dtype; returns dst."""
    plan = prepare_copy(dst, src)
    if plan is None:
        return dst
    src, sizes, s_strides, d_strides, contiguous, to_bf16 = plan
    n = dst.numel()
    if persistent():
        programs, block = grid_1d(n, src.element_size())  # live tile: the loaded src
        launch(
            _copy_persistent_kernel,
            (programs,),
            src,
            dst,
            n,
            *sizes,
            *s_strides,
            *d_strides,
            CONTIGUOUS=contiguous,
            TO_BF16=to_bf16,
            BLOCK=block,
            num_warps=NUM_WARPS,
        )
        return dst
    launch(
        _copy_kernel,
        (cdiv(n, BLOCK),),
        src,
        dst,
        n,
        *sizes,
        *s_strides,
        *d_strides,
        CONTIGUOUS=contiguous,
        TO_BF16=to_bf16,
        BLOCK=BLOCK,
    )
    return dst


def _fill_value(value, dtype: torch.dtype):
    """`value` as the Python number the kernel stores, rejecting what torch rejects (`scalar_as`)."""
    value = scalar_as("fill", "value", value, dtype)
    if dtype == torch.bool:
        return int(value)
    return _round_to(value, dtype) if dtype.is_floating_point else value


@functools.lru_cache(maxsize=1024)
def _round_to(value: float, dtype: torch.dtype) -> float:
    """value rounded to nearest even in `dtype` (as torch converts a fill value), as a Python float.

    The kernel then stores an exactly representable number, so no backend's own rounding is involved.
    Cached: numpy's scalars cost several µs, and a model fills with the same few values.
    """
    if dtype == torch.float16:
        return float(np.float16(value))
    single = np.float32(value)
    if dtype != torch.bfloat16 or not np.isfinite(single):
        return float(single)
    bits = int(single.view(np.uint32))
    bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    return float(np.array(bits & 0xFFFFFFFF, dtype=np.uint32).view(np.float32))


def prepare_fill(dst: torch.Tensor, value):
    """Validate dst.fill_(value) and lay dst out: (value, sizes, dst_strides, contiguous), or None when dst
    is empty. Shared by both launch styles."""
    check_tensor("dst", dst, MOVE_DTYPES)
    value = _fill_value(value, dst.dtype)
    _check_writable("dst", dst)
    if dst.numel() == 0:
        return None
    layout = _dst_layout(dst)
    if layout is None:
        raise Unsupported(f"dst: strides {dst.stride()} do not merge into {MAX_DIMS} dims")
    sizes, (d_strides,), contiguous = layout
    return value, sizes, d_strides, contiguous


def fill_into(dst: torch.Tensor, value) -> torch.Tensor:
    """dst.fill_(value) for a Python number; returns dst."""
    plan = prepare_fill(dst, value)
    if plan is None:
        return dst
    value, sizes, d_strides, contiguous = plan
    n = dst.numel()
    if persistent():
        programs, block = grid_1d(n, dst.element_size())  # live tile: the value block
        launch(
            _fill_persistent_kernel,
            (programs,),
            dst,
            value,
            n,
            *sizes,
            *d_strides,
            CONTIGUOUS=contiguous,
            BLOCK=block,
            num_warps=NUM_WARPS,
        )
        return dst
    launch(
        _fill_kernel, (cdiv(n, BLOCK),), dst, value, n, *sizes, *d_strides, CONTIGUOUS=contiguous, BLOCK=BLOCK
    )
    return dst


def prepare_gather(x: torch.Tensor, dim: int, index: torch.Tensor):
    """Lay out a gather: (n, dim size, sizes of dims 1..3, x strides, index strides, padded DIM), or
    None when there is nothing to gather. Shared by both launch styles."""
    rank = x.dim()
    if rank > MAX_DIMS:
        raise Unsupported(f"x: rank {rank} gathers are not implemented (at most {MAX_DIMS} dims)")
    n = index.numel()
    if n == 0:
        return None
    pad = MAX_DIMS - rank
    sizes = [1] * pad + list(index.shape)
    return (
        n,
        x.shape[dim],
        sizes[1:],
        [0] * pad + list(x.stride()),
        [0] * pad + list(index.stride()),
        dim + pad,
    )


def gather_into(out: torch.Tensor, x: torch.Tensor, dim: int, index: torch.Tensor, op: str) -> torch.Tensor:
    """out (contiguous, index's shape) = x gathered along `dim` at `index` (broadcast views allowed); an
    index outside x.size(dim) raises IndexError naming `op` (`_index_check`)."""
    plan = prepare_gather(x, dim, index)
    if plan is None:
        return out
    n, dim_size, sizes, x_strides, i_strides, padded_dim = plan
    check, flag = _index_check.checking(index), _index_check.flag(index.device)
    if persistent():
        programs, block = grid_1d(n, index.element_size() + x.element_size())  # live tiles: the index and x
        launch(
            _gather_persistent_kernel,
            (programs,),
            x,
            index,
            out,
            flag,
            n,
            dim_size,
            *sizes,
            *x_strides,
            *i_strides,
            DIM=padded_dim,
            CHECK=check,
            BLOCK=block,
            num_warps=NUM_WARPS,
        )
    else:
        launch(
            _gather_kernel,
            (cdiv(n, BLOCK),),
            x,
            index,
            out,
            flag,
            n,
            dim_size,
            *sizes,
            *x_strides,
            *i_strides,
            DIM=padded_dim,
            CHECK=check,
            BLOCK=BLOCK,
        )
    if check:
        _index_check.raise_if_set(index.device, _index_check.out_of_bounds(op, index, dim, dim_size), op)
    return out
