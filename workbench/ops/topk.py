"""topk along a dim (torch.topk): the k largest (or smallest) values, sorted, with their int64 indices.

Each element becomes one int64 sort key: the fp32 value's bits made order-preserving in the high half,
the complement of its index in the low half (equal values: the lower index ranks first). A program
keeps the best k keys of its columns in registers: each tile whose best key beats the current k-th
is sorted and merged in (max of an ascending and a descending run holds the top k of both). Values
are read back from the input at the winning indices, so they are exact. Few long rows are split into
chunks whose top-k lists a second kernel merges. NaN ranks above +inf, as in torch.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from workbench import backends

from . import _rows, _split_rows
from ._common import check_tensor, new_output
from ._launch import launch
from ._shapes import next_pow2
from .spec import Case, Cost, OpSpec, nbytes, randn, register

MAX_K = 1024  # the running top-k lives in registers
MERGE_KEYS = 4096  # at most this many candidate keys per row go to the merge kernel
# Keys sorted at a time. The interpreter's tl.sort costs ~1.5 ms per element, so it gets small tiles,
# which also let the skip test (a tile with nothing better than the current k-th) save most sorts.
TILE = 256
INTERPRETER_TILE = 64


@triton.jit
def _sort_keys(x, idx, valid, LARGEST: tl.constexpr):
    bits = x.to(tl.int32, bitcast=True)
    key = tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)  # monotonic in the float value
    key = tl.where(x != x, 0x7FFFFFFF, key)  # every NaN ranks above +inf
    if not LARGEST:
        key = -1 - key
    packed = (key.to(tl.int64) << 32) | (4294967295 - idx.to(tl.int64))
    return tl.where(valid, packed, -9223372036854775807 - 1)


@triton.jit
def _merge(running, keys, BLOCK: tl.constexpr, BLOCK_K: tl.constexpr):
    """Top BLOCK_K of `running` (sorted ascending) and the tile `keys`, sorted ascending."""
    if tl.max(keys, 0) > tl.min(running, 0):
        top = tl.sort(keys, descending=True)
        top = tl.reshape(top, (BLOCK // BLOCK_K, BLOCK_K))
        first = tl.arange(0, BLOCK // BLOCK_K)[:, None] == 0
        top = tl.max(tl.where(first, top, -9223372036854775807 - 1), 0)  # the tile's best BLOCK_K, descending
        running = tl.sort(tl.maximum(running, top))
    return running


@triton.jit
def _finish(running, x_row, x_col_stride, v_row, i_row, k, BLOCK_K: tl.constexpr):
    """Write the best k of `running` in descending order: indices, and values read back from x."""
    best = tl.sort(running, descending=True)
    j = tl.arange(0, BLOCK_K)
    ok = j < k
    idx = 4294967295 - (best & 4294967295)
    tl.store(i_row + j, idx, mask=ok)
    tl.store(v_row + j, tl.load(x_row + idx * x_col_stride, mask=ok), mask=ok)


@triton.jit
def topk_chunk(x_row, v_row, i_row, part, lo, hi, k, LARGEST: tl.constexpr, SINGLE: tl.constexpr,
               BLOCK: tl.constexpr, BLOCK_K: tl.constexpr):
    """The best k of columns [lo, hi) of one row: written out (SINGLE), or its BLOCK_K keys stored at
    `part` for the merge. Shared by the generic kernel and the MLU-style variant."""
    cols = tl.arange(0, BLOCK)
    running = tl.full([BLOCK_K], -9223372036854775807 - 1, tl.int64)
    for start in range(lo, hi, BLOCK):
        offs = start + cols
        ok = offs < hi
        x = tl.load(x_row + offs, mask=ok, other=0.0).to(tl.float32)
        running = _merge(running, _sort_keys(x, offs, ok, LARGEST), BLOCK, BLOCK_K)
    if SINGLE:
        _finish(running, x_row, 1, v_row, i_row, k, BLOCK_K)
    else:
        tl.store(part + tl.arange(0, BLOCK_K), running)


@triton.jit
def topk_merge_row(x_row, v_row, i_row, part_row, n_keys, k, BLOCK: tl.constexpr, BLOCK_K: tl.constexpr):
    """Merge one row's chunk keys (n_keys at part_row) into its best k and write them. Shared like
    topk_chunk."""
    offs = tl.arange(0, BLOCK)
    running = tl.full([BLOCK_K], -9223372036854775807 - 1, tl.int64)
    for start in range(0, n_keys, BLOCK):
        ok = start + offs < n_keys
        keys = tl.load(part_row + start + offs, mask=ok, other=-9223372036854775807 - 1)
        running = _merge(running, keys, BLOCK, BLOCK_K)
    _finish(running, x_row, 1, v_row, i_row, k, BLOCK_K)


@triton.jit
def _topk_chunk_kernel(x_ptr, v_ptr, i_ptr, part_ptr, n_cols, x_row_stride, chunk, k,
                       LARGEST: tl.constexpr, SINGLE: tl.constexpr, BLOCK: tl.constexpr, BLOCK_K: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1)
    lo = c.to(tl.int64) * chunk
    topk_chunk(x_ptr + row * x_row_stride, v_ptr + row * k, i_ptr + row * k,
               part_ptr + (row * tl.num_programs(1) + c) * BLOCK_K, lo, tl.minimum(lo + chunk, n_cols), k,
               LARGEST, SINGLE, BLOCK, BLOCK_K)


@triton.jit
def _topk_merge_kernel(x_ptr, v_ptr, i_ptr, part_ptr, x_row_stride, n_keys, k,
                       BLOCK: tl.constexpr, BLOCK_K: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    topk_merge_row(x_ptr + row * x_row_stride, v_ptr + row * k, i_ptr + row * k, part_ptr + row * n_keys,
                   n_keys, k, BLOCK, BLOCK_K)


def prepare(x: torch.Tensor, k: int, dim: int):
    """Validate; (values, indices, x as rows with `dim` last, or None when the output is empty). The
    caller hands the outputs to `finish`. Shared by every topk launcher (generic, MLU style)."""
    check_tensor("x", x)
    ndim = max(x.dim(), 1)
    if not -ndim <= dim < ndim:
        raise ValueError(f"dim: expected a dim in [{-ndim}, {ndim}), got {dim}")
    n = x.shape[dim] if x.dim() else 1
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= n:
        raise ValueError(f"k: expected an int in [0, {n}] (size of dim {dim}), got {k!r}")
    if k > MAX_K:
        raise ValueError(f"k: expected at most {MAX_K} (the kernel keeps the top k in registers), got {k}")
    if n >= 2**31:
        raise ValueError(f"x: expected fewer than 2**31 elements along dim {dim}, got {n}")
    moved = x.movedim(dim, -1) if x.dim() else x.reshape(1)
    out_shape = (*moved.shape[:-1], k)
    values = new_output(out_shape, x.dtype, x.device)
    indices = new_output(out_shape, torch.int64, x.device)
    return values, indices, (_rows.as_rows(moved) if values.numel() > 0 else None)


def finish(values: torch.Tensor, indices: torch.Tensor, x: torch.Tensor, dim: int):
    """Move the top-k dim back where x had it: torch.return_types.topk(values, indices)."""
    if x.dim():
        values, indices = values.movedim(-1, dim), indices.movedim(-1, dim)
    else:
        values, indices = values.reshape(()), indices.reshape(())
    return torch.return_types.topk((values, indices))


def tile(n: int, block_k: int) -> int:
    """Keys sorted at a time: TILE (INTERPRETER_TILE on the interpreter), at least BLOCK_K."""
    return max(block_k, min(INTERPRETER_TILE if backends.active().interpreted else TILE, next_pow2(n)))


def topk(x: torch.Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):
    """torch.return_types.topk(values, indices); always sorted (allowed for sorted=False too)."""
    values, indices, rows = prepare(x, k, dim)
    if rows is not None:
        n_rows, n = rows.shape
        block_k = next_pow2(k)
        block = tile(n, block_k)
        # The merge kernel reads every chunk's k best: keep that to a few tiles.
        chunks, chunk = _split_rows.chunking(n_rows, n, block, max_chunks=max(1, MERGE_KEYS // block_k))
        warps = _rows.row_warps(block)
        if chunks == 1:
            launch(_topk_chunk_kernel, (n_rows, 1), rows, values, indices, values, n, rows.stride(0), chunk, k,
                   LARGEST=bool(largest), SINGLE=True, BLOCK=block, BLOCK_K=block_k, num_warps=warps)
        else:
            part = torch.empty(n_rows * chunks * block_k, dtype=torch.int64, device=x.device)
            launch(_topk_chunk_kernel, (n_rows, chunks), rows, values, indices, part, n, rows.stride(0), chunk, k,
                   LARGEST=bool(largest), SINGLE=False, BLOCK=block, BLOCK_K=block_k, num_warps=warps)
            merge_block = max(block_k, min(1024, next_pow2(chunks * block_k)))
            launch(_topk_merge_kernel, (n_rows,), rows, values, indices, part, rows.stride(0), chunks * block_k, k,
                   BLOCK=merge_block, BLOCK_K=block_k, num_warps=_rows.row_warps(merge_block))
    return finish(values, indices, x, dim)


def _reference(x, k, dim=-1, largest=True, sorted=True):
    return torch.topk(x, k, dim=dim, largest=largest, sorted=sorted)


def _cost(x, k, dim=-1, largest=True, sorted=True):
    n = x.shape[dim] if x.dim() else 1
    out = x.numel() // max(n, 1) * k
    return Cost(bytes=nbytes(x) + out * (x.element_size() + 8), flops=max(1, x.numel()))


def _with_ties_and_specials(x):
    x[:, 3] = x[:, 8]  # duplicated values
    x[0, 11] = float("nan")
    x[1, :] = 2.0  # every value tied
    x[2, 5] = float("inf")
    x[2, 6] = -float("inf")
    x[2, 7] = -0.0  # -0.0 and 0.0 are equal values
    x[2, 8] = 0.0
    return x


def _case(name, shape, k, dim=-1, largest=True, transform=None, scale=1.0, big=False):
    def make(dtype, device, gen):
        x = randn(shape, dtype, device, gen, scale=scale)
        return ((transform(x) if transform else x), k), {"dim": dim, "largest": largest}

    return Case(name, make, big=big)


SPEC = register(OpSpec(
    name="topk",
    reference=_reference,
    impl=topk,
    cases={
        # tiny: the interpreter's sort is slow
        "quick": lambda: [_case("4x50 k=5", (4, 50), 5), _case("2x200 k=4 split rows", (2, 200), 4)],
        "edge": lambda: [
            _case("ties, NaN, inf, all tied row", (3, 40), 7, transform=_with_ties_and_specials),
            _case("smallest k=3", (2, 60), 3, largest=False),
            _case("rank3 dim1", (2, 30, 2), 4, dim=1),
            _case("transposed dim0 k=6", (3, 20), 6, dim=0, transform=lambda x: x.t()),
            _case("k = n", (2, 9), 9),
            _case("k=1", (2, 33), 1),
            _case("k=0", (3, 33), 0),
            _case("zero rows", (0, 30), 2),
            _case("big 2x(2**30+5) k=5", (2, 2**30 + 5), 5, big=True),
        ],
        "llm": lambda: [
            _case("top-50 sampling 1x151936", (1, 151936), 50, scale=3.0),
            _case("top-50 sampling 64x151936", (64, 151936), 50, scale=3.0),
            _case("top-20 2048x151936", (2048, 151936), 20, scale=3.0),
        ],
    },
    cost=_cost,
    aten=("aten::topk",),
    aten_impls={"aten::topk": lambda impl, self, k, dim=-1, largest=True, sorted=True: impl(self, k, dim, largest,
                                                                                         sorted)},
))
