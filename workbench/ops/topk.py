"""topk along a dim (torch.topk): the k largest (or smallest) values, sorted, with their int64 indices.

Each element has an order-preserving int32 key (the fp32 value's bits; every NaN ranks above +inf;
negated for the smallest) and one int64 sort key: that key in the high half, the complement of its index
in the low half (equal values: the lower index ranks first). Values are read back from the input at the
winning indices, so they are exact.

Default path, a filter, three passes over row chunks:
1. lane maxima: a row is dealt into LANES lanes (column mod LANES within a tile) and each lane keeps
   its best key; chunks of one row combine theirs with atomic max. At least k elements reach the k-th
   best lane maximum T, so every element of the top k reaches it: T is a safe threshold. For random
   data only about k + k*k / (2 * LANES) elements reach it.
2. collect: every element whose key reaches T goes, as its int64 sort key, into the row's candidate
   buffer (CAP keys; an atomic counter per row when the row is split into chunks).
3. finish: one program per row sorts its candidates and writes the best k. A row with more candidates
   than CAP (many equal values, a periodic row) runs the merge path below over the whole row instead.
Rows that fit one sort tile take the merge path (one sort).
Lane keys are stored halved and offset, (key >> 1) + 2**30, so that a zero-filled buffer holds the
lowest key: one memset prepares lanes and counters. The threshold stays safe (the map is monotone);
fp32 inputs lose one bit of its precision, bf16 and fp16 inputs none.

Merge path (the algorithm "merge", implementation "generic:merge"; the overflow fallback; the MLU
kernel's approach): a program keeps the best k
keys of its columns in registers: each tile whose best key beats the current k-th is sorted and merged
in (max of an ascending and a descending run holds the top k of both). Few long rows are split into
chunks whose top-k lists a second kernel merges.
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

# Filter path sizes (GPU, interpreter). Columns streamed at a time by passes 1 and 2; lanes (at least
# LANES_PER_K * BLOCK_K: more lanes, fewer candidates, a longer sort to find T); candidate buffer
# (at least CAP_PER_K * BLOCK_K keys per row).
FILTER_BLOCK, INTERPRETER_FILTER_BLOCK = 2048, 32
MIN_LANES, INTERPRETER_MIN_LANES = 256, 16
LANES_PER_K, CAP_PER_K = 4, 2
MIN_CAP, INTERPRETER_MIN_CAP = 128, 16
FILTER_WARPS = 8


@triton.jit
def _key32(x, LARGEST: tl.constexpr):
    """An int32 key that orders like x (x as fp32; every NaN above +inf), reversed for the smallest."""
    bits = x.to(tl.int32, bitcast=True)
    key = tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)  # monotonic in the float value
    key = tl.where(x != x, 0x7FFFFFFF, key)
    if not LARGEST:
        key = -1 - key
    return key


@triton.jit
def _pack(key, idx):
    """int64 sort key: the int32 key high, the complement of the index low (the lower index wins)."""
    return (key.to(tl.int64) << 32) | (4294967295 - idx.to(tl.int64))


@triton.jit
def _sort_keys(x, idx, valid, LARGEST: tl.constexpr):
    return tl.where(valid, _pack(_key32(x, LARGEST), idx), -9223372036854775807 - 1)


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
def _write_best(best, x_row, v_row, i_row, k, N: tl.constexpr):
    """Write the first k of `best` (N int64 sort keys, sorted descending): indices, values read from x."""
    j = tl.arange(0, N)
    ok = j < k
    idx = 4294967295 - (best & 4294967295)
    tl.store(i_row + j, idx, mask=ok)
    tl.store(v_row + j, tl.load(x_row + idx, mask=ok), mask=ok)


@triton.jit
def topk_chunk(
    x_row,
    v_row,
    i_row,
    part,
    lo,
    hi,
    k,
    LARGEST: tl.constexpr,
    SINGLE: tl.constexpr,
    BLOCK: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """The best k of columns [lo, hi) of one row: written out (SINGLE), or its BLOCK_K keys stored at
    `part` for the merge. Shared by the generic kernels and the MLU-style variant."""
    cols = tl.arange(0, BLOCK)
    running = tl.full([BLOCK_K], -9223372036854775807 - 1, tl.int64)
    for start in range(lo, hi, BLOCK):
        offs = start + cols
        ok = offs < hi
        x = tl.load(x_row + offs, mask=ok, other=0.0).to(tl.float32)
        running = _merge(running, _sort_keys(x, offs, ok, LARGEST), BLOCK, BLOCK_K)
    if SINGLE:
        _write_best(tl.sort(running, descending=True), x_row, v_row, i_row, k, BLOCK_K)
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
    _write_best(tl.sort(running, descending=True), x_row, v_row, i_row, k, BLOCK_K)


@triton.jit
def _topk_chunk_kernel(
    x_ptr,
    v_ptr,
    i_ptr,
    part_ptr,
    n_cols,
    x_row_stride,
    chunk,
    k,
    LARGEST: tl.constexpr,
    SINGLE: tl.constexpr,
    BLOCK: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1)
    lo = c.to(tl.int64) * chunk
    topk_chunk(
        x_ptr + row * x_row_stride,
        v_ptr + row * k,
        i_ptr + row * k,
        part_ptr + (row * tl.num_programs(1) + c) * BLOCK_K,
        lo,
        tl.minimum(lo + chunk, n_cols),
        k,
        LARGEST,
        SINGLE,
        BLOCK,
        BLOCK_K,
    )


@triton.jit
def _topk_merge_kernel(
    x_ptr, v_ptr, i_ptr, part_ptr, x_row_stride, n_keys, k, BLOCK: tl.constexpr, BLOCK_K: tl.constexpr
):
    row = tl.program_id(0).to(tl.int64)
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


# ---- filter path ----


@triton.jit
def _lane_max(x_row, lo, hi, LARGEST: tl.constexpr, BLOCK: tl.constexpr, LANES: tl.constexpr):
    """Each lane's best halved key, (key >> 1) + 2**30, over columns [lo, hi); 0 for a lane with none."""
    cols = tl.arange(0, BLOCK)
    best = tl.zeros([BLOCK], tl.int32)
    for start in range(lo, hi, BLOCK):
        ok = cols < tl.minimum(hi - start, BLOCK).to(tl.int32)  # 32-bit per-element work
        x = tl.load(x_row + start + cols, mask=ok, other=0.0).to(tl.float32)
        best = tl.maximum(best, tl.where(ok, (_key32(x, LARGEST) >> 1) + 1073741824, 0))
    return tl.max(tl.reshape(best, (BLOCK // LANES, LANES)), 0)


@triton.jit
def _filter_lanes_kernel(
    x_ptr,
    scratch_ptr,
    n_cols,
    x_row_stride,
    chunk,
    LARGEST: tl.constexpr,
    BLOCK: tl.constexpr,
    LANES: tl.constexpr,
):
    """Pass 1 of a split row: this chunk's lane maxima, atomically maxed into the row's lanes."""
    row = tl.program_id(0).to(tl.int64)
    lo = tl.program_id(1).to(tl.int64) * chunk
    lanes = _lane_max(x_ptr + row * x_row_stride, lo, tl.minimum(lo + chunk, n_cols), LARGEST, BLOCK, LANES)
    tl.atomic_max(scratch_ptr + row * (LANES + 1) + tl.arange(0, LANES), lanes)


@triton.jit
def _filter_collect_kernel(
    x_ptr,
    scratch_ptr,
    cand_ptr,
    n_cols,
    x_row_stride,
    chunk,
    k,
    LARGEST: tl.constexpr,
    LOCAL: tl.constexpr,
    BLOCK: tl.constexpr,
    LANES: tl.constexpr,
    CAP: tl.constexpr,
):
    """Pass 2: the row's threshold T (the k-th best lane maximum), then every key of this chunk that
    reaches it into the row's candidate buffer. LOCAL (one chunk per row): pass 1 runs here, and the
    count is stored; else the lanes come from pass 1 and the count is an atomic counter."""
    row = tl.program_id(0).to(tl.int64)
    lo = tl.program_id(1).to(tl.int64) * chunk
    hi = tl.minimum(lo + chunk, n_cols)
    x_row = x_ptr + row * x_row_stride
    scratch = scratch_ptr + row * (LANES + 1)  # LANES lane maxima, then the candidate count
    cand = cand_ptr + row * CAP
    if LOCAL:
        lanes = _lane_max(x_row, lo, hi, LARGEST, BLOCK, LANES)
    else:
        lanes = tl.load(scratch + tl.arange(0, LANES))
    ranked = tl.sort(lanes, descending=True)
    t_half = tl.max(tl.where(tl.arange(0, LANES) == k - 1, ranked, 0), 0)
    threshold = (t_half - 1073741824) * 2  # the lowest key whose halved key reaches t_half
    cols = tl.arange(0, BLOCK)
    count = 0
    for start in range(lo, hi, BLOCK):
        ok = cols < tl.minimum(hi - start, BLOCK).to(tl.int32)
        x = tl.load(x_row + start + cols, mask=ok, other=0.0).to(tl.float32)
        key = _key32(x, LARGEST)
        hit = ok & (key >= threshold)
        n_hit = tl.sum(hit.to(tl.int32), 0)
        if n_hit > 0:
            if LOCAL:
                base = count
            else:
                base = tl.atomic_add(scratch + LANES, n_hit)
            count += n_hit
            pos = base + tl.cumsum(hit.to(tl.int32), 0) - 1
            tl.store(cand + pos, _pack(key, start + cols), mask=hit & (pos < CAP))
    if LOCAL:
        tl.store(scratch + LANES, count)


@triton.jit
def _filter_finish_kernel(
    x_ptr,
    v_ptr,
    i_ptr,
    scratch_ptr,
    cand_ptr,
    n_cols,
    x_row_stride,
    k,
    LARGEST: tl.constexpr,
    LANES: tl.constexpr,
    CAP: tl.constexpr,
    TILE_: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """Pass 3: sort the row's candidates and write its best k; past CAP, the merge path over the row."""
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * x_row_stride
    v_row = v_ptr + row * k
    i_row = i_ptr + row * k
    count = tl.load(scratch_ptr + row * (LANES + 1) + LANES)
    if count <= CAP:
        j = tl.arange(0, CAP)
        keys = tl.load(cand_ptr + row * CAP + j, mask=j < count, other=-9223372036854775807 - 1)
        _write_best(tl.sort(keys, descending=True), x_row, v_row, i_row, k, CAP)
    else:
        topk_chunk(x_row, v_row, i_row, v_row, 0, n_cols, k, LARGEST, True, TILE_, BLOCK_K)


def filter_sizes(n: int, k: int) -> tuple[int, int, int]:
    """(BLOCK, LANES, CAP) of the filter path for rows of n columns and top k."""
    block_k = next_pow2(k)
    if backends.active().interpreted:
        block, lanes, cap = INTERPRETER_FILTER_BLOCK, INTERPRETER_MIN_LANES, INTERPRETER_MIN_CAP
    else:
        block, lanes, cap = FILTER_BLOCK, MIN_LANES, MIN_CAP
    lanes = max(lanes, LANES_PER_K * block_k)
    return max(lanes, min(block, next_pow2(n))), lanes, max(cap, CAP_PER_K * block_k)


def _run_filter(
    rows: torch.Tensor, values: torch.Tensor, indices: torch.Tensor, k: int, largest: bool
) -> torch.Tensor:
    """The filter path; returns each row's candidate count (past CAP the row took the merge path)."""
    n_rows, n = rows.shape
    block, lanes, cap = filter_sizes(n, k)
    chunks, chunk = _split_rows.chunking(n_rows, n, block)
    local = chunks == 1
    # lanes + counter per row: pass 1 combines into zeros; a local pass 2 writes its count itself
    scratch = (torch.empty if local else torch.zeros)(
        n_rows * (lanes + 1), dtype=torch.int32, device=rows.device
    )
    cand = torch.empty(n_rows * cap, dtype=torch.int64, device=rows.device)
    if not local:
        launch(
            _filter_lanes_kernel,
            (n_rows, chunks),
            rows,
            scratch,
            n,
            rows.stride(0),
            chunk,
            LARGEST=bool(largest),
            BLOCK=block,
            LANES=lanes,
            num_warps=FILTER_WARPS,
        )
    launch(
        _filter_collect_kernel,
        (n_rows, chunks),
        rows,
        scratch,
        cand,
        n,
        rows.stride(0),
        chunk,
        k,
        LARGEST=bool(largest),
        LOCAL=local,
        BLOCK=block,
        LANES=lanes,
        CAP=cap,
        num_warps=FILTER_WARPS,
    )
    block_k = next_pow2(k)
    launch(
        _filter_finish_kernel,
        (n_rows,),
        rows,
        values,
        indices,
        scratch,
        cand,
        n,
        rows.stride(0),
        k,
        LARGEST=bool(largest),
        LANES=lanes,
        CAP=cap,
        TILE_=tile(n, block_k),
        BLOCK_K=block_k,
        num_warps=_rows.row_warps(max(cap, tile(n, block_k))),
    )
    return scratch.view(n_rows, lanes + 1)[:, lanes]


def _run_merge(
    rows: torch.Tensor, values: torch.Tensor, indices: torch.Tensor, k: int, largest: bool
) -> None:
    n_rows, n = rows.shape
    block_k = next_pow2(k)
    block = tile(n, block_k)
    # The merge kernel reads every chunk's k best: keep that to a few tiles.
    chunks, chunk = _split_rows.chunking(n_rows, n, block, max_chunks=max(1, MERGE_KEYS // block_k))
    warps = _rows.row_warps(block)
    if chunks == 1:
        launch(
            _topk_chunk_kernel,
            (n_rows, 1),
            rows,
            values,
            indices,
            values,
            n,
            rows.stride(0),
            chunk,
            k,
            LARGEST=bool(largest),
            SINGLE=True,
            BLOCK=block,
            BLOCK_K=block_k,
            num_warps=warps,
        )
    else:
        part = torch.empty(n_rows * chunks * block_k, dtype=torch.int64, device=rows.device)
        launch(
            _topk_chunk_kernel,
            (n_rows, chunks),
            rows,
            values,
            indices,
            part,
            n,
            rows.stride(0),
            chunk,
            k,
            LARGEST=bool(largest),
            SINGLE=False,
            BLOCK=block,
            BLOCK_K=block_k,
            num_warps=warps,
        )
        merge_block = max(block_k, min(1024, next_pow2(chunks * block_k)))
        launch(
            _topk_merge_kernel,
            (n_rows,),
            rows,
            values,
            indices,
            part,
            rows.stride(0),
            chunks * block_k,
            k,
            BLOCK=merge_block,
            BLOCK_K=block_k,
            num_warps=_rows.row_warps(merge_block),
        )


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


def _topk(run, x: torch.Tensor, k: int, dim: int, largest: bool):
    values, indices, rows = prepare(x, k, dim)
    if rows is not None:
        n = rows.shape[1]
        # A row that fits one sort tile (router logits: 8 of 128 experts) takes one sort, not three passes.
        (_run_merge if n <= tile(n, next_pow2(k)) else run)(rows, values, indices, k, largest)
    return finish(values, indices, x, dim)


def topk(x: torch.Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):
    """torch.return_types.topk(values, indices); always sorted (allowed for sorted=False too)."""
    return _topk(_run_filter, x, k, dim, largest)


def topk_merge(x: torch.Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):
    """topk by the merge path for every row (the algorithm "merge")."""
    return _topk(_run_merge, x, k, dim, largest)


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


SPEC = register(
    OpSpec(
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
        aten_impls={
            "aten::topk": lambda impl, self, k, dim=-1, largest=True, sorted=True: impl(
                self, k, dim, largest, sorted
            )
        },
    )
)
SPEC.add_variant("generic", topk_merge, algorithm="merge")
