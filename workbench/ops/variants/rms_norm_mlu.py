"""rms_norm, MLU style: rows packed into big 2-D tiles, programs that fill the cores, fp32 math."""

import torch
import triton
import triton.language as tl

from ..rms_norm import SPEC, prepare
from .._launch import launch
from .._mlu import sizing
from .._mlu.rows import row_tiles


@triton.jit
def _rms_norm_kernel(x_ptr, w_ptr, out_ptr, n_rows, n_cols, x_row_stride, eps,
                     HAS_WEIGHT: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
                     ONE_TILE: tl.constexpr):
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    cols = tl.arange(0, BLOCK_C)
    if ONE_TILE:
        col_ok = cols < n_cols
        if HAS_WEIGHT:  # loaded once per program, reused for every row it handles
            w = tl.load(w_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
        for first in range(pid.to(tl.int64) * BLOCK_R, n_rows, nprog * BLOCK_R):
            rows = first + tl.arange(0, BLOCK_R)
            mask = (rows < n_rows)[:, None] & col_ok[None, :]
            x_ptrs = x_ptr + rows[:, None] * x_row_stride + cols[None, :]
            x = tl.load(x_ptrs, mask=mask, other=0.0).to(tl.float32)
            y = x * tl.math.rsqrt(tl.sum(x * x, 1) / n_cols + eps)[:, None]
            if HAS_WEIGHT:
                y = y * w[None, :]
            out_ptrs = out_ptr + rows[:, None] * n_cols + cols[None, :]
            tl.store(out_ptrs, y.to(out_ptr.dtype.element_ty), mask=mask)
    else:
        for row in range(pid.to(tl.int64), n_rows, nprog):
            x_row = x_ptr + row * x_row_stride
            out_row = out_ptr + row * n_cols
            acc = tl.zeros([BLOCK_C], tl.float32)
            for start in range(0, n_cols, BLOCK_C):
                x = tl.load(x_row + start + cols, mask=start + cols < n_cols, other=0.0).to(tl.float32)
                acc += x * x
            rstd = tl.math.rsqrt(tl.sum(acc, 0) / n_cols + eps)
            for start in range(0, n_cols, BLOCK_C):
                mask = start + cols < n_cols
                y = tl.load(x_row + start + cols, mask=mask, other=0.0).to(tl.float32) * rstd
                if HAS_WEIGHT:
                    y = y * tl.load(w_ptr + start + cols, mask=mask, other=0.0).to(tl.float32)
                tl.store(out_row + start + cols, y.to(out_ptr.dtype.element_ty), mask=mask)


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1e-6) -> torch.Tensor:
    out, rows = prepare(x, weight)
    if rows is None:
        return out
    n_rows, n = rows.shape
    el, w_el = rows.element_size(), weight.element_size() if weight is not None else 0
    # live tiles: x and the weight row; streamed: the fp32 accumulator, two x load sites and the weight
    t = row_tiles(n_rows, n, one_tile_bytes=el + w_el, streamed_bytes=4 + 2 * el + w_el)
    launch(
        _rms_norm_kernel, (t.programs,),
        rows, weight if weight is not None else rows, out, n_rows, n, rows.stride(0), float(eps),
        HAS_WEIGHT=weight is not None, BLOCK_R=t.block_r, BLOCK_C=t.block_c, ONE_TILE=t.one_tile,
        num_warps=sizing.NUM_WARPS,
    )
    return out


SPEC.add_variant("mlu", rms_norm)
