"""embedding, MLU style: the op's validation (`prepare`); programs that fill the cores walk tiles of
BLOCK_R looked-up rows x BLOCK_H columns (rows packed from `persistent.row_tiles`, a long row split into
column tiles) in a grid-stride loop. An index outside [0, V) raises IndexError as the generic kernel's
does (`_index_check`: a flag the kernel sets, read after the launch); with the check off its row is NaN."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import _index_check
from ..embedding import SPEC, prepare
from .._launch import launch
from . import persistent
from .persistent import row_tiles


@triton.jit
def _embedding_kernel(idx_ptr, w_ptr, out_ptr, flag_ptr, n_idx, n_rows, H, w_row_stride, w_col_stride,
                      CHECK: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_H: tl.constexpr):
    col_tiles = tl.cdiv(H, BLOCK_H)
    tiles = tl.cdiv(n_idx, BLOCK_R) * col_tiles
    for t in range(tl.program_id(0).to(tl.int64), tiles, tl.num_programs(0).to(tl.int64)):
        rows = (t // col_tiles) * BLOCK_R + tl.arange(0, BLOCK_R)
        cols = (t % col_tiles) * BLOCK_H + tl.arange(0, BLOCK_H)
        row_ok = rows < n_idx
        idx = tl.load(idx_ptr + rows, mask=row_ok, other=0).to(tl.int64)
        in_range = (idx >= 0) & (idx < n_rows)
        if CHECK:  # every bad row's lane stores the same 1: no atomics needed
            tl.store(flag_ptr + tl.zeros_like(rows), 1, mask=row_ok & ~in_range)
        ok = row_ok[:, None] & (cols < H)[None, :]
        vals = tl.load(w_ptr + idx[:, None] * w_row_stride + cols[None, :] * w_col_stride,
                       mask=ok & in_range[:, None], other=float("nan"))
        tl.store(out_ptr + rows[:, None] * H + cols[None, :], vals, mask=ok)


def embedding(input: torch.Tensor, weight: torch.Tensor, padding_idx: int | None = None) -> torch.Tensor:
    out, idx = prepare(input, weight, padding_idx)
    if idx is None:
        return out
    V, H = weight.shape
    n = idx.numel()
    # live tiles: the looked-up values (the BLOCK_R indices are negligible next to them)
    t = row_tiles(n, H, one_tile_bytes=weight.element_size(), streamed_bytes=weight.element_size())
    tiles = triton.cdiv(n, t.block_r) * triton.cdiv(H, t.block_c)
    check, flag = _index_check.checking(idx), _index_check.flag(idx.device)
    launch(_embedding_kernel, (persistent.programs(tiles),), idx, weight, out, flag, n, V, H,
           weight.stride(0), weight.stride(1), CHECK=check, BLOCK_R=t.block_r, BLOCK_H=t.block_c,
           num_warps=persistent.NUM_WARPS)
    if check:
        _index_check.raise_if_set(idx.device, _index_check.out_of_bounds("embedding", idx, 0, V), "embedding")
    return out


SPEC.add_variant("mlu", embedding)
