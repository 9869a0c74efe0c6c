"""softmax and log_softmax, MLU style: rows packed into big 2-D tiles, programs that fill the cores, fp32 exp.

One kernel serves both ops (LOG, as the generic softmax kernel); long rows take the generic kernel's
online log-sum-exp pass (`softmax.row_logsumexp`), one row per program at a time.
"""

import torch
import triton
import triton.language as tl

from .. import log_softmax as _log_softmax
from .._launch import launch
from ..softmax import SPEC, finish, prepare, row_logsumexp, write_row
from . import persistent
from .persistent import row_tiles


@triton.jit
def _softmax_kernel(
    x_ptr,
    out_ptr,
    n_rows,
    n_cols,
    x_row_stride,
    out_row_stride,
    LOG: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_C: tl.constexpr,
    ONE_TILE: tl.constexpr,
):
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    cols = tl.arange(0, BLOCK_C)
    if ONE_TILE:
        col_ok = cols < n_cols
        for first in range(pid.to(tl.int64) * BLOCK_R, n_rows, nprog * BLOCK_R):
            rows = first + tl.arange(0, BLOCK_R)
            mask = (rows < n_rows)[:, None] & col_ok[None, :]
            x = tl.load(
                x_ptr + rows[:, None] * x_row_stride + cols[None, :], mask=mask, other=-float("inf")
            ).to(tl.float32)
            shifted = x - tl.max(x, 1)[:, None]
            e = tl.exp(shifted)
            if LOG:
                y = shifted - tl.log(tl.sum(e, 1))[:, None]
            else:
                y = e / tl.sum(e, 1)[:, None]
            tl.store(
                out_ptr + rows[:, None] * out_row_stride + cols[None, :],
                y.to(out_ptr.dtype.element_ty),
                mask=mask,
            )
    else:
        for row in range(pid.to(tl.int64), n_rows, nprog):
            x_row = x_ptr + row * x_row_stride
            out_row = out_ptr + row * out_row_stride
            write_row(x_row, out_row, 0, n_cols, row_logsumexp(x_row, n_cols, BLOCK_C), LOG, BLOCK_C)


def softmax_rows(x: torch.Tensor, dim: int, log: bool) -> torch.Tensor:
    """softmax or log_softmax of `x` along `dim`, MLU style (the launcher both mlu variants use)."""
    out, rows = prepare(x, dim)
    if rows is not None:
        n_rows, n = rows.shape
        el = rows.element_size()
        # live tiles: the loaded x; streamed: running max and sum (fp32) and the two load sites
        t = row_tiles(n_rows, n, one_tile_bytes=el, streamed_bytes=8 + 2 * el)
        launch(
            _softmax_kernel,
            (t.programs,),
            rows,
            out,
            n_rows,
            n,
            rows.stride(0),
            n,
            LOG=log,
            BLOCK_R=t.block_r,
            BLOCK_C=t.block_c,
            ONE_TILE=t.one_tile,
            num_warps=persistent.NUM_WARPS,
        )
    return finish(out, x, dim)


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return softmax_rows(x, dim, log=False)


SPEC.add_variant("mlu", softmax)


def log_softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return softmax_rows(x, dim, log=True)


_log_softmax.SPEC.add_variant("mlu", log_softmax)
