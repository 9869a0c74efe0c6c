"""Row tiling for the MLU-style softmax and norms: programs that fill the device walk the rows.

Short rows are packed several to a tile (BLOCK_R rows x BLOCK_C columns), so that a tile is as big
as NRAM allows even for 128-wide qk-norm rows; a row too long for one tile is streamed in BLOCK_C
chunks by one program.
"""

from __future__ import annotations

from dataclasses import dataclass

import triton

from . import sizing


@dataclass(frozen=True)
class RowTiles:
    block_r: int  # rows per tile (1 when rows are streamed)
    block_c: int  # columns per tile
    one_tile: bool  # a whole row fits in the tile
    programs: int


def row_tiles(n_rows: int, n_cols: int, one_tile_bytes: float, streamed_bytes: float) -> RowTiles:
    """Tile shape and grid for `n_rows` rows of `n_cols`.

    one_tile_bytes: bytes per tile element of all live tiles when a row fits in one tile;
    streamed_bytes: the same when rows are streamed in chunks (accumulators and every load site).
    """
    dev = sizing.target()
    limit = sizing.tile_elems(one_tile_bytes, dev=dev)
    block_c = triton.next_power_of_2(max(n_cols, 1))
    if block_c <= limit:
        per_program = triton.next_power_of_2(triton.cdiv(n_rows, sizing.max_programs(dev=dev)))
        block_r = max(1, min(limit // block_c, per_program))
        return RowTiles(block_r, block_c, True, sizing.programs(triton.cdiv(n_rows, block_r), dev=dev))
    return RowTiles(1, sizing.tile_elems(streamed_bytes, dev=dev), False, sizing.programs(n_rows, dev=dev))


def split_rows(n_rows: int, n_cols: int, block: int, max_chunks: int | None = None) -> tuple[int, int]:
    """(chunks per row, columns per chunk: a multiple of `block`) so that fewer rows than the programs
    that fill the target are cut into chunks (argmax, topk and cumsum over a vocabulary at decode);
    at most `max_chunks` chunks."""
    n_cols = max(n_cols, 1)
    wanted = max(1, triton.cdiv(sizing.max_programs(), max(1, n_rows)))
    wanted = min(wanted, triton.cdiv(n_cols, block), max_chunks or wanted)
    chunk = triton.cdiv(triton.cdiv(n_cols, wanted), block) * block
    return triton.cdiv(n_cols, chunk), chunk
