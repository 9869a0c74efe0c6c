"""argmax, MLU style: programs that fill the cores walk (row, chunk) items in a grid-stride loop, fp32
compares, blocks sized from NRAM. Fewer rows than programs (greedy decoding over a vocabulary) are cut
into chunks whose winners a second grid-stride kernel merges. Reuses argmax's validation (`prepare`)
and jit helpers (`chunk_winner`, `_winner`): NaN wins, ties give the lowest index."""

import torch
import triton
import triton.language as tl

from .._launch import launch
from ..argmax import SPEC, _winner, chunk_winner, prepare
from . import persistent
from .persistent import split_rows


@triton.jit
def _argmax_kernel(
    x_ptr,
    out_ptr,
    part_v_ptr,
    part_i_ptr,
    n_items,
    n_cols,
    x_row_stride,
    chunks,
    chunk,
    SINGLE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    # item = row * chunks + chunk
    for item in range(tl.program_id(0).to(tl.int64), n_items, tl.num_programs(0)):
        row = item // chunks
        lo = (item % chunks) * chunk
        value, idx = chunk_winner(x_ptr + row * x_row_stride, lo, tl.minimum(lo + chunk, n_cols), BLOCK)
        if SINGLE:
            tl.store(out_ptr + row, idx)
        else:
            tl.store(part_v_ptr + item, value)
            tl.store(part_i_ptr + item, idx)


@triton.jit
def _merge_kernel(part_v_ptr, part_i_ptr, out_ptr, n_rows, chunks, BLOCK_C: tl.constexpr):
    c = tl.arange(0, BLOCK_C)
    ok = c < chunks
    for row in range(tl.program_id(0).to(tl.int64), n_rows, tl.num_programs(0)):
        v = tl.load(part_v_ptr + row * chunks + c, mask=ok, other=-float("inf"))
        i = tl.load(part_i_ptr + row * chunks + c, mask=ok, other=9223372036854775807)
        _, idx = _winner(v, i)
        tl.store(out_ptr + row, idx)


def argmax(x: torch.Tensor, dim: int | None = None, keepdim: bool = False) -> torch.Tensor:
    out, rows = prepare(x, dim, keepdim)
    if rows is None:
        return out
    n_rows, n = rows.shape
    # live tiles: the loaded x, the lanes' best value (fp32) and index (int64)
    block = min(persistent.tile_elems(12 + rows.element_size()), triton.next_power_of_2(n))
    chunks, chunk = split_rows(n_rows, n, block)
    items = n_rows * chunks
    if chunks == 1:
        launch(
            _argmax_kernel,
            (persistent.programs(items),),
            rows,
            out,
            out,
            out,
            items,
            n,
            rows.stride(0),
            1,
            chunk,
            SINGLE=True,
            BLOCK=block,
            num_warps=persistent.NUM_WARPS,
        )
        return out
    part_v = torch.empty(items, dtype=torch.float32, device=x.device)
    part_i = torch.empty(items, dtype=torch.int64, device=x.device)
    launch(
        _argmax_kernel,
        (persistent.programs(items),),
        rows,
        out,
        part_v,
        part_i,
        items,
        n,
        rows.stride(0),
        chunks,
        chunk,
        SINGLE=False,
        BLOCK=block,
        num_warps=persistent.NUM_WARPS,
    )
    launch(
        _merge_kernel,
        (persistent.programs(n_rows),),
        part_v,
        part_i,
        out,
        n_rows,
        chunks,
        BLOCK_C=triton.next_power_of_2(chunks),
        num_warps=persistent.NUM_WARPS,
    )
    return out


SPEC.add_variant("mlu", argmax)
