"""Row reductions split into chunks when there are too few rows to fill the device.

Split-KV attention (batch x KV heads rows of 2048 keys), argmax and topk over a vocabulary (1-64 rows
of 151936) run one program per (row, chunk) and then merge the chunks' partial results; with rows
enough, one chunk per row and no merge.
"""

from __future__ import annotations

import functools

from workbench import backends

from ._shapes import cdiv


@functools.lru_cache(maxsize=None)
def target_programs() -> int:
    """Programs that fill the device about twice over."""
    return 2 * max(1, backends.active().properties().cores)


def chunking(n_rows: int, n_cols: int, block: int, max_chunks: int | None = None) -> tuple[int, int]:
    """(chunks per row, columns per chunk: a multiple of `block`), at most `max_chunks` chunks."""
    return _chunking(
        target_programs(), backends.active().policy.max_programs, n_rows, n_cols, block, max_chunks
    )


@functools.lru_cache(maxsize=4096)
def _chunking(
    target: int, max_programs: int, n_rows: int, n_cols: int, block: int, max_chunks: int | None
) -> tuple[int, int]:
    """`chunking` for `target` programs, at most `max_programs`. Cached: a decode step repeats the same
    sizes."""
    wanted = max(1, -(-target // max(1, n_rows)))
    wanted = min(
        wanted, max(1, max_programs // max(1, n_rows)), cdiv(max(n_cols, 1), block), max_chunks or wanted
    )
    chunk = cdiv(cdiv(max(n_cols, 1), wanted), block) * block
    return cdiv(max(n_cols, 1), chunk), chunk
