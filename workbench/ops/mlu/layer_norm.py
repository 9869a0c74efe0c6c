"""layer_norm, MLU style: rows packed into big 2-D tiles, programs that fill the cores, fp32 math."""

import torch
import triton
import triton.language as tl

from ..layer_norm import SPEC, layer_norm_long_row, prepare
from .._launch import launch
from . import persistent
from .persistent import row_tiles


@triton.jit
def _layer_norm_kernel(x_ptr, w_ptr, b_ptr, out_ptr, n_rows, n_cols, x_row_stride, eps,
                       HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_R: tl.constexpr,
                       BLOCK_C: tl.constexpr, ONE_TILE: tl.constexpr):
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    cols = tl.arange(0, BLOCK_C)
    if ONE_TILE:
        col_ok = cols < n_cols
        if HAS_WEIGHT:  # loaded once per program, reused for every row it handles
            w = tl.load(w_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
        if HAS_BIAS:
            b = tl.load(b_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
        for first in range(pid.to(tl.int64) * BLOCK_R, n_rows, nprog * BLOCK_R):
            rows = first + tl.arange(0, BLOCK_R)
            mask = (rows < n_rows)[:, None] & col_ok[None, :]
            x_ptrs = x_ptr + rows[:, None] * x_row_stride + cols[None, :]
            x = tl.load(x_ptrs, mask=mask, other=0.0).to(tl.float32)
            mean = tl.sum(x, 1) / n_cols
            xc = tl.where(mask, x - mean[:, None], 0.0)
            y = xc * tl.math.rsqrt(tl.sum(xc * xc, 1) / n_cols + eps)[:, None]
            if HAS_WEIGHT:
                y = y * w[None, :]
            if HAS_BIAS:
                y = y + b[None, :]
            out_ptrs = out_ptr + rows[:, None] * n_cols + cols[None, :]
            tl.store(out_ptrs, y.to(out_ptr.dtype.element_ty), mask=mask)
    else:
        for row in range(pid.to(tl.int64), n_rows, nprog):
            layer_norm_long_row(x_ptr + row * x_row_stride, w_ptr, b_ptr, out_ptr + row * n_cols, n_cols, eps,
                                HAS_WEIGHT, HAS_BIAS, BLOCK_C)


def layer_norm(x: torch.Tensor, normalized_shape, weight: torch.Tensor | None = None,
               bias: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    out, rows = prepare(x, normalized_shape, weight, bias)
    if rows is None:
        return out
    n_rows, n = rows.shape
    el = rows.element_size()
    params = sum(p.element_size() for p in (weight, bias) if p is not None)
    # live tiles: x, weight and bias rows; streamed: two fp32 accumulators, three x load sites, params
    t = row_tiles(n_rows, n, one_tile_bytes=el + params, streamed_bytes=8 + 3 * el + params)
    launch(
        _layer_norm_kernel, (t.programs,),
        rows, weight if weight is not None else rows, bias if bias is not None else rows, out, n_rows, n,
        rows.stride(0), float(eps), HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None,
        BLOCK_R=t.block_r, BLOCK_C=t.block_c, ONE_TILE=t.one_tile, num_warps=persistent.NUM_WARPS,
    )
    return out


SPEC.add_variant("mlu", layer_norm)
