"""rms_norm, MLU style: rows packed into big 2-D tiles, programs that fill the cores, fp32 math.

The kernel also serves add_rms_norm's mlu variant (HAS_RESIDUAL: the row is x + residual, rounded to
x's dtype and written out before it is normalised); long rows take the generic kernels' pass,
`rms_norm.rms_norm_long_row`.
"""

import torch
import triton
import triton.language as tl

from .. import add_rms_norm as _add_rms_norm
from ..rms_norm import SPEC, prepare, rms_norm_long_row
from .._launch import launch
from . import persistent
from .persistent import row_tiles


@triton.jit
def _rms_norm_kernel(x_ptr, r_ptr, w_ptr, out_ptr, sum_ptr, n_rows, n_cols, x_row_stride, r_row_stride, eps,
                     HAS_RESIDUAL: tl.constexpr, HAS_WEIGHT: tl.constexpr, BLOCK_R: tl.constexpr,
                     BLOCK_C: tl.constexpr, ONE_TILE: tl.constexpr):
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
            out_offs = rows[:, None] * n_cols + cols[None, :]
            if HAS_RESIDUAL:
                r = tl.load(r_ptr + rows[:, None] * r_row_stride + cols[None, :], mask=mask, other=0.0)
                h = (x + r.to(tl.float32)).to(sum_ptr.dtype.element_ty)
                tl.store(sum_ptr + out_offs, h, mask=mask)
                x = h.to(tl.float32)
            y = x * tl.math.rsqrt(tl.sum(x * x, 1) / n_cols + eps)[:, None]
            if HAS_WEIGHT:
                y = y * w[None, :]
            tl.store(out_ptr + out_offs, y.to(out_ptr.dtype.element_ty), mask=mask)
    else:
        for row in range(pid.to(tl.int64), n_rows, nprog):
            rms_norm_long_row(x_ptr + row * x_row_stride, r_ptr + row * r_row_stride, w_ptr,
                              out_ptr + row * n_cols, sum_ptr + row * n_cols, n_cols, eps, HAS_RESIDUAL,
                              HAS_WEIGHT, BLOCK_C)


def launch_rows(rows: torch.Tensor, res_rows: torch.Tensor | None, weight: torch.Tensor | None,
                out: torch.Tensor, total: torch.Tensor | None, eps: float) -> None:
    """rms_norm of `rows` (plus `res_rows`, the sum written to `total`, when given) into `out`."""
    n_rows, n = rows.shape
    el, w_el = rows.element_size(), weight.element_size() if weight is not None else 0
    r_el = el if res_rows is not None else 0
    # live tiles: x, the residual and the weight row; streamed: the fp32 accumulator, two load sites of
    # x and of the residual, and the weight
    t = row_tiles(n_rows, n, one_tile_bytes=el + r_el + w_el, streamed_bytes=4 + 2 * (el + r_el) + w_el)
    launch(
        _rms_norm_kernel, (t.programs,),
        rows, res_rows if res_rows is not None else rows, weight if weight is not None else rows, out,
        total if total is not None else out, n_rows, n, rows.stride(0),
        res_rows.stride(0) if res_rows is not None else 0, float(eps), HAS_RESIDUAL=res_rows is not None,
        HAS_WEIGHT=weight is not None, BLOCK_R=t.block_r, BLOCK_C=t.block_c, ONE_TILE=t.one_tile,
        num_warps=persistent.NUM_WARPS,
    )


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1e-6) -> torch.Tensor:
    out, rows = prepare(x, weight)
    if rows is not None:
        launch_rows(rows, None, weight, out, None, eps)
    return out


SPEC.add_variant("mlu", rms_norm)


def add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor | None = None,
                 eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """rms_norm's kernel with the residual add fused in."""
    out, total, rows, res_rows = _add_rms_norm.prepare(x, residual, weight)
    if rows is not None:
        launch_rows(rows, res_rows, weight, out, total, eps)
    return out, total


_add_rms_norm.SPEC.add_variant("mlu", add_rms_norm)
