"""Helpers for row-wise ops (softmax, norms): view the input as rows of its last dimension."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from workbench import backends

from ._shapes import cdiv, next_pow2
from .mlu import persistent as _persistent

# Rows up to this length are held in registers in one tile; longer rows loop over tiles.
MAX_ONE_TILE = 16384


def is_last_dim(x: torch.Tensor, dim: int) -> bool:
    """Whether `dim` (validated) already is x's last dim (or x is 0-dim): no movedim needed, which costs
    a few µs per decode-sized call."""
    return x.dim() == 0 or dim in (-1, x.dim() - 1)


def as_rows(x: torch.Tensor) -> torch.Tensor:
    """A 2-D (rows, last dim) tensor whose last dim has stride 1; copies only when it must."""
    if x.dim() == 2 and x.stride(1) == 1 and x.shape[1]:  # already rows: reshape would give an equal view
        return x
    n = x.shape[-1] if x.dim() else 1
    rows = x.reshape(-1, n) if x.dim() else x.reshape(1, 1)
    return rows if rows.stride(-1) == 1 or n <= 1 else rows.contiguous()


def tile(n: int) -> tuple[int, bool]:
    """(BLOCK, fits in one tile) for rows of length n."""
    block = next_pow2(max(n, 1))
    return (block, True) if block <= MAX_ONE_TILE else (8192, False)


# Short rows are packed several to a program, so that each program moves about this many elements.
ROW_PACK_ELEMENTS = 4096


def rows_per_program(n_rows: int, block: int) -> int:
    """How many rows of a one-tile row op (tile width `block`) one program handles."""
    return max(1, min(next_pow2(n_rows), ROW_PACK_ELEMENTS // block))


def row_warps(block: int) -> int:
    """16 elements per thread for mid-size rows; long rows get 16 warps, since one program streams a row."""
    return min(16, max(4, block // 512))


@functools.lru_cache(maxsize=4096)
def packed_launch(n_rows: int, n: int) -> tuple[int, int, int, bool, int]:
    """(programs, rows per program, BLOCK, one tile, num_warps) of a row op that packs short rows several
    to a program (`rows_per_program`) and gives a long row a program of its own. Cached: a decode step
    repeats the same few sizes."""
    block, one_tile = tile(n)
    block_r = rows_per_program(n_rows, block) if one_tile else 1
    return cdiv(n_rows, block_r), block_r, block, one_tile, row_warps(block_r * block)


@dataclass(frozen=True)
class RowRuns:
    """Launch of a row kernel whose programs each take a run of consecutive rows (the backward kernels,
    which keep one partial sum per program)."""

    programs: int
    per_program: int  # rows per program: the runs cover every row, the last one may be shorter
    block: int  # columns per tile
    one_tile: bool  # a whole row fits in the tile
    num_warps: int


def row_runs(
    n_rows: int,
    n: int,
    one_tile_bytes: float,
    streamed_bytes: float,
    max_block: int | None = None,
    max_programs: int | None = None,
) -> RowRuns:
    """How a run-of-rows kernel is launched for `n_rows` rows of `n`. Tile style: tiles as the row ops'
    (`tile`, at most `max_block`), as many programs as the backend's policy allows (at most
    `max_programs`). Persistent style (ops.mlu.persistent): the programs that fill the target's cores,
    num_warps as its launches take, and tiles within its NRAM by the estimate the MLU launch rules apply:
    `one_tile_bytes` / `streamed_bytes` are the bytes per tile element of all live tiles (loads and
    accumulators) when a row fits in one tile / when it is streamed in chunks."""
    if _persistent.persistent():
        limit = _persistent.tile_elems(one_tile_bytes)
        block = next_pow2(max(n, 1))
        one_tile = block <= limit and (max_block is None or block <= max_block)
        if not one_tile:
            block = _persistent.tile_elems(streamed_bytes, cap=max_block or _persistent.MAX_TILE)
        programs, warps = _persistent.programs(max(n_rows, 1)), _persistent.NUM_WARPS
    else:
        block, one_tile = tile(n)
        if max_block is not None and block > max_block:
            block, one_tile = max_block, False
        warps = row_warps(block)
        programs = backends.active().policy.grid(max(1, min(n_rows, max_programs or n_rows)), warps)
    per_program = cdiv(n_rows, programs)
    return RowRuns(cdiv(n_rows, per_program) if per_program else 0, per_program, block, one_tile, warps)
