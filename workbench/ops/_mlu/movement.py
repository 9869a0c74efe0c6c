"""Copy, fill and gather in the MLU style: as many programs as fill the cores, each walking its blocks in
a grid-stride loop.

Same contract as workbench.ops._movement, which validates the arguments and lays them out
(`prepare_copy` / `prepare_fill` / `prepare_gather`) and holds the per-tile work (`_copy_tile`,
`_fill_tile`, `_gather_tile`) that its one-tile-per-program kernels run once and these run in a loop. Values never pass through fp32 except
into bf16 (rounded to nearest even, as torch does), so integer copies stay exact.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._launch import launch
from .._movement import _copy_tile, _fill_tile, _gather_tile, prepare_copy, prepare_fill, prepare_gather
from . import sizing


@triton.jit
def _copy_kernel(src_ptr, dst_ptr, n, s1, s2, s3, ss0, ss1, ss2, ss3, ds0, ds1, ds2, ds3,
                 CONTIGUOUS: tl.constexpr, TO_BF16: tl.constexpr, BLOCK: tl.constexpr):
    step = tl.num_programs(0).to(tl.int64) * BLOCK
    for start in range(tl.program_id(0).to(tl.int64) * BLOCK, n, step):
        _copy_tile(src_ptr, dst_ptr, start + tl.arange(0, BLOCK), n, s1, s2, s3, ss0, ss1, ss2, ss3,
                   ds0, ds1, ds2, ds3, CONTIGUOUS, TO_BF16)


@triton.jit
def _fill_kernel(dst_ptr, value, n, s1, s2, s3, ds0, ds1, ds2, ds3, CONTIGUOUS: tl.constexpr, BLOCK: tl.constexpr):
    step = tl.num_programs(0).to(tl.int64) * BLOCK
    for start in range(tl.program_id(0).to(tl.int64) * BLOCK, n, step):
        _fill_tile(dst_ptr, value, start + tl.arange(0, BLOCK), n, s1, s2, s3, ds0, ds1, ds2, ds3, CONTIGUOUS,
                   BLOCK)


@triton.jit
def _gather_kernel(x_ptr, idx_ptr, out_ptr, n, dim_size, s1, s2, s3, xs0, xs1, xs2, xs3, is0, is1, is2, is3,
                   DIM: tl.constexpr, BLOCK: tl.constexpr):
    step = tl.num_programs(0).to(tl.int64) * BLOCK
    for start in range(tl.program_id(0).to(tl.int64) * BLOCK, n, step):
        _gather_tile(x_ptr, idx_ptr, out_ptr, start + tl.arange(0, BLOCK), n, dim_size, s1, s2, s3,
                     xs0, xs1, xs2, xs3, is0, is1, is2, is3, DIM)


def copy_into(dst: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """dst.copy_(src) (src broadcast to dst and converted to its dtype), MLU style; returns dst."""
    plan = prepare_copy(dst, src)
    if plan is None:
        return dst
    src, sizes, s_strides, d_strides, contiguous, to_bf16 = plan
    n = dst.numel()
    block = sizing.block_1d(n, src.element_size())  # live tile: the loaded src
    launch(_copy_kernel, (sizing.programs(triton.cdiv(n, block)),), src, dst, n, *sizes, *s_strides, *d_strides,
           CONTIGUOUS=contiguous, TO_BF16=to_bf16, BLOCK=block, num_warps=sizing.NUM_WARPS)
    return dst


def fill_into(dst: torch.Tensor, value) -> torch.Tensor:
    """dst.fill_(value) for a Python number, MLU style; returns dst."""
    plan = prepare_fill(dst, value)
    if plan is None:
        return dst
    value, sizes, d_strides, contiguous = plan
    n = dst.numel()
    block = sizing.block_1d(n, dst.element_size())  # live tile: the value block
    launch(_fill_kernel, (sizing.programs(triton.cdiv(n, block)),), dst, value, n, *sizes, *d_strides,
           CONTIGUOUS=contiguous, BLOCK=block, num_warps=sizing.NUM_WARPS)
    return dst


def gather_into(out: torch.Tensor, x: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
    """out (contiguous, index's shape) = x gathered along `dim` at `index`, as _movement.gather_into."""
    plan = prepare_gather(x, dim, index)
    if plan is None:
        return out
    n, dim_size, sizes, x_strides, i_strides, padded_dim = plan
    block = sizing.block_1d(n, index.element_size() + x.element_size())  # live tiles: the index and x
    launch(_gather_kernel, (sizing.programs(triton.cdiv(n, block)),), x, index, out, n, dim_size, *sizes,
           *x_strides, *i_strides, DIM=padded_dim, BLOCK=block, num_warps=sizing.NUM_WARPS)
    return out
