"""Data-movement launchers in the MLU style: strided copy (cat) and gather along a dim (index_select,
gather), as many programs as fill the cores, each walking its blocks in a grid-stride loop.

Same contracts as workbench.ops._movement, whose validation and layout they reuse (`prepare_copy`,
the ops' `prepare`). Values never pass through fp32 except on the way to bf16 (rounded as torch does),
so integer copies stay exact; offsets are int64 from the first multiplication on.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._elementwise import MAX_DIMS, _offsets
from .._launch import launch
from .._movement import _to_bf16_rne, prepare_copy
from ..spec import Unsupported
from . import sizing


@triton.jit
def _copy_kernel(src_ptr, dst_ptr, n, s1, s2, s3, ss0, ss1, ss2, ss3, ds0, ds1, ds2, ds3,
                 CONTIGUOUS: tl.constexpr, TO_BF16: tl.constexpr, BLOCK: tl.constexpr):
    step = tl.num_programs(0).to(tl.int64) * BLOCK
    for start in range(tl.program_id(0).to(tl.int64) * BLOCK, n, step):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < n
        if CONTIGUOUS:
            s_offs = offs
            d_offs = offs
        else:
            s_offs = _offsets(offs, s1, s2, s3, ss0, ss1, ss2, ss3)
            d_offs = _offsets(offs, s1, s2, s3, ds0, ds1, ds2, ds3)
        x = tl.load(src_ptr + s_offs, mask=mask)
        if TO_BF16:
            y = _to_bf16_rne(x.to(tl.float32))
        else:
            y = x.to(dst_ptr.dtype.element_ty)
        tl.store(dst_ptr + d_offs, y, mask=mask)


@triton.jit
def _gather_kernel(x_ptr, idx_ptr, out_ptr, n, dim_size, s1, s2, s3, xs0, xs1, xs2, xs3, is0, is1, is2, is3,
                   DIM: tl.constexpr, BLOCK: tl.constexpr):
    # out[i] = x[i with coordinate DIM replaced by index[i]]; out is contiguous, shape (s0, s1, s2, s3).
    step = tl.num_programs(0).to(tl.int64) * BLOCK
    for start in range(tl.program_id(0).to(tl.int64) * BLOCK, n, step):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < n
        i3 = offs % s3
        rest = offs // s3
        i2 = rest % s2
        rest = rest // s2
        i1 = rest % s1
        i0 = rest // s1
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


def copy_into(dst: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """dst.copy_(src) as workbench.ops._movement.copy_into, MLU style; returns dst."""
    plan = prepare_copy(dst, src)
    if plan is None:
        return dst
    src, sizes, d_strides, s_strides, contiguous, to_bf16 = plan
    n = dst.numel()
    block = sizing.block_1d(n, src.element_size())  # live tile: the loaded src
    launch(_copy_kernel, (sizing.programs(triton.cdiv(n, block)),), src, dst, n, *sizes, *s_strides, *d_strides,
           CONTIGUOUS=contiguous, TO_BF16=to_bf16, BLOCK=block, num_warps=sizing.NUM_WARPS)
    return dst


def gather_into(out: torch.Tensor, x: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
    """out (contiguous, index's shape) = x gathered along `dim` at `index`, as _movement.gather_into."""
    rank = x.dim()
    if rank > MAX_DIMS:
        raise Unsupported(f"x: rank {rank} gathers are not implemented (at most {MAX_DIMS} dims)")
    n = out.numel()
    if n == 0:
        return out
    pad = MAX_DIMS - rank
    sizes = [1] * pad + list(index.shape)
    x_strides = [0] * pad + list(x.stride())
    i_strides = [0] * pad + list(index.stride())
    block = sizing.block_1d(n, index.element_size() + x.element_size())  # live tiles: the index and x
    launch(_gather_kernel, (sizing.programs(triton.cdiv(n, block)),), x, index, out, n, x.shape[dim], *sizes[1:],
           *x_strides, *i_strides, DIM=dim + pad, BLOCK=block, num_warps=sizing.NUM_WARPS)
    return out
