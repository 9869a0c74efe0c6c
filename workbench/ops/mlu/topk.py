"""topk, MLU style: programs that fill the cores walk (row, chunk) items in a grid-stride loop; fewer
rows than programs (sampling over a vocabulary at decode) are cut into chunks whose top-k lists a second
grid-stride kernel merges. Reuses topk's validation (`prepare` / `finish`) and its per-chunk and merge
passes (`topk_chunk`, `topk_merge_row`), so keys, ties and NaN order are the generic op's.

The tile stays topk's sort tile (`topk.tile`), far below NRAM: what bounds it is the cost of sorting a
tile, not on-chip memory.
"""

import torch
import triton
import triton.language as tl

from .._launch import launch
from ..topk import MERGE_KEYS, SPEC, finish, prepare, tile, topk_chunk, topk_merge_row
from . import persistent
from .persistent import split_rows


@triton.jit
def _chunk_kernel(
    x_ptr,
    v_ptr,
    i_ptr,
    part_ptr,
    n_items,
    n_cols,
    x_row_stride,
    chunks,
    chunk,
    k,
    LARGEST: tl.constexpr,
    SINGLE: tl.constexpr,
    BLOCK: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    for item in range(tl.program_id(0).to(tl.int64), n_items, tl.num_programs(0)):  # row * chunks + chunk
        row = item // chunks
        lo = (item % chunks) * chunk
        topk_chunk(
            x_ptr + row * x_row_stride,
            v_ptr + row * k,
            i_ptr + row * k,
            part_ptr + item * BLOCK_K,
            lo,
            tl.minimum(lo + chunk, n_cols),
            k,
            LARGEST,
            SINGLE,
            BLOCK,
            BLOCK_K,
        )


@triton.jit
def _merge_kernel(
    x_ptr, v_ptr, i_ptr, part_ptr, n_rows, x_row_stride, n_keys, k, BLOCK: tl.constexpr, BLOCK_K: tl.constexpr
):
    for row in range(tl.program_id(0).to(tl.int64), n_rows, tl.num_programs(0)):
        topk_merge_row(
            x_ptr + row * x_row_stride,
            v_ptr + row * k,
            i_ptr + row * k,
            part_ptr + row * n_keys,
            n_keys,
            k,
            BLOCK,
            BLOCK_K,
        )


def topk(x: torch.Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):
    """torch.return_types.topk(values, indices); always sorted (allowed for sorted=False too)."""
    values, indices, rows = prepare(x, k, dim)
    if rows is not None:
        n_rows, n = rows.shape
        block_k = triton.next_power_of_2(k)
        block = tile(n, block_k)
        # The merge reads every chunk's k best: keep that to a few tiles.
        chunks, chunk = split_rows(n_rows, n, block, max_chunks=max(1, MERGE_KEYS // block_k))
        items = n_rows * chunks
        single = chunks == 1
        part = values if single else torch.empty(items * block_k, dtype=torch.int64, device=x.device)
        launch(
            _chunk_kernel,
            (persistent.programs(items),),
            rows,
            values,
            indices,
            part,
            items,
            n,
            rows.stride(0),
            chunks,
            chunk,
            k,
            LARGEST=bool(largest),
            SINGLE=single,
            BLOCK=block,
            BLOCK_K=block_k,
            num_warps=persistent.NUM_WARPS,
        )
        if not single:
            merge_block = max(block_k, min(1024, triton.next_power_of_2(chunks * block_k)))
            launch(
                _merge_kernel,
                (persistent.programs(n_rows),),
                rows,
                values,
                indices,
                part,
                n_rows,
                rows.stride(0),
                chunks * block_k,
                k,
                BLOCK=merge_block,
                BLOCK_K=block_k,
                num_warps=persistent.NUM_WARPS,
            )
    return finish(values, indices, x, dim)


SPEC.add_variant("mlu", topk)
