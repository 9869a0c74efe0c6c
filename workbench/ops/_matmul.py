"""The matmul kernels behind mm, bmm, addmm and linear: `alpha * (a @ b) + beta * bias`, batched.

fp32 accumulation, strided operands (a transposed weight is just strides), an optional bias broadcast
over rows or given per element, and a batch along grid axis 1 (stride 0 broadcasts an operand).
Two kernels share the grouped tile order: on Hopper and later, 16-bit operands with unit-stride rows and
16-byte aligned strides go to a TMA-descriptor kernel (tiles copied by the tensor memory accelerator, one
or several tiles per program); everything else (other devices, fp32, odd strides, a broadcast batch,
M below TMA_MIN_M) goes to the pointer kernel. Both are tuned on (M, N, K, layout) on GPUs
(`_tuning.Tuner`: the choice persists in the results store's tuning cache, so only a shape's first call
on a device pays). $WORKBENCH_AUTOTUNE=0 takes the first configuration that fits instead (see `_tuning`).

Split-K (config SPLIT_K > 1 of either kernel, offered only where the output has too few tiles to fill the
device: a decode GEMV, a narrow projection): K is cut into SPLIT_K slices, one program per (tile, slice);
each stores its fp32 partial in a workspace and counts its arrival on the tile's counter, and the last to
arrive sums the partials in slice order (deterministic whatever the arrival order), applies the epilogue
and resets the counter. One launch, no atomics on the output; the tuner keeps it only where it wins.

In the persistent launch style (ops.mlu.persistent) a third kernel runs instead: programs that fill the
cores walk every matrix's output tiles, with a tile from a small table pruned by on-chip memory.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from workbench import backends

from . import _scratch
from ._common import check_dtype_match, check_same_device, check_tensor
from ._launch import Site, autotune, launch
from ._shapes import cdiv
from ._tuning import Tuner
from .mlu.persistent import NRAM_FILL, NUM_WARPS, persistent
from .mlu.persistent import policy as persistent_policy
from .mlu.persistent import programs as persistent_programs
from .mlu.persistent import target as persistent_target

MAX_BATCH = 65535  # grid axis 1 limit on CUDA


@triton.jit
def grouped_tile(tile, grid_m, grid_n, GROUP_M: tl.constexpr):
    """(row block, column block) of output tile number `tile` in grouped order: GROUP_M row-blocks share
    the same B columns while they are in cache. Shared by the generic and MLU-style kernels."""
    width = GROUP_M * grid_n
    group_id = tile // width
    group_size = min(grid_m - group_id * GROUP_M, GROUP_M)
    return group_id * GROUP_M + (tile % width) % group_size, (tile % width) // group_size


@triton.jit
def tile_product(
    a_ptr,
    b_ptr,
    i,
    pid_m,
    pid_n,
    M,
    N,
    k_start,
    k_len,
    stride_ab,
    stride_am,
    stride_ak,
    stride_bb,
    stride_bk,
    stride_bn,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    UPCAST: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
):
    """fp32 (BLOCK_M, BLOCK_N) tile of a[i] @ b[i] over columns k_start .. k_start + k_len of K."""
    rm = pid_m.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + i * stride_ab + rm[:, None] * stride_am + (k_start + rk[None, :]) * stride_ak
    b_ptrs = b_ptr + i * stride_bb + (k_start + rk[:, None]) * stride_bk + rn[None, :] * stride_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, tl.cdiv(k_len, BLOCK_K)):  # k_len <= 0: no iteration, the tile is 0
        k_left = k_len - k * BLOCK_K
        a = tl.load(a_ptrs, mask=(rm[:, None] < M) & (rk[None, :] < k_left), other=0.0)
        b = tl.load(b_ptrs, mask=(rk[:, None] < k_left) & (rn[None, :] < N), other=0.0)
        if UPCAST:  # the backend cannot dot these operands directly (e.g. bf16 in the interpreter)
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk
    return acc


@triton.jit
def tile_epilogue(
    acc,
    c_ptr,
    bias_ptr,
    i,
    pid_m,
    pid_n,
    M,
    N,
    stride_cb,
    stride_cm,
    stride_biasm,
    stride_biasn,
    alpha,
    beta,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SCALED: tl.constexpr,
):
    """c[i]'s tile = alpha * acc + beta * bias, cast to c's dtype and stored (clipped to M x N)."""
    rm = pid_m.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    inside = (rm[:, None] < M) & (rn[None, :] < N)
    if SCALED:
        acc = acc * alpha
    if HAS_BIAS:  # the epilogue of addmm / linear
        bias = tl.load(
            bias_ptr + rm[:, None] * stride_biasm + rn[None, :] * stride_biasn, mask=inside, other=0.0
        )
        bias = bias.to(tl.float32)
        if SCALED:
            bias = bias * beta
        acc = acc + bias
    tl.store(
        c_ptr + i * stride_cb + rm[:, None] * stride_cm + rn[None, :],
        acc.to(c_ptr.dtype.element_ty),
        mask=inside,
    )


@triton.jit
def matmul_tile(
    a_ptr,
    b_ptr,
    c_ptr,
    bias_ptr,
    i,
    pid_m,
    pid_n,
    M,
    N,
    K,
    stride_ab,
    stride_am,
    stride_ak,
    stride_bb,
    stride_bk,
    stride_bn,
    stride_cb,
    stride_cm,
    stride_biasm,
    stride_biasn,
    alpha,
    beta,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SCALED: tl.constexpr,
    UPCAST: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
):
    """One output tile of c[i] = alpha * a[i] @ b[i] + beta * bias: the K loop in fp32 and the epilogue.
    Shared by the generic and MLU-style kernels."""
    acc = tile_product(
        a_ptr,
        b_ptr,
        i,
        pid_m,
        pid_n,
        M,
        N,
        0,
        K,
        stride_ab,
        stride_am,
        stride_ak,
        stride_bb,
        stride_bk,
        stride_bn,
        BLOCK_M,
        BLOCK_N,
        BLOCK_K,
        UPCAST,
        INPUT_PRECISION,
    )
    tile_epilogue(
        acc,
        c_ptr,
        bias_ptr,
        i,
        pid_m,
        pid_n,
        M,
        N,
        stride_cb,
        stride_cm,
        stride_biasm,
        stride_biasn,
        alpha,
        beta,
        BLOCK_M,
        BLOCK_N,
        HAS_BIAS,
        SCALED,
    )


@triton.jit
def split_k_slice(split, K, SPLIT_K: tl.constexpr, BLOCK_K: tl.constexpr):
    """(first column, number of columns) of K slice `split`: whole BLOCK_K steps, the last slice shorter."""
    per = tl.cdiv(tl.cdiv(K, SPLIT_K), BLOCK_K) * BLOCK_K
    start = split * per
    return start, tl.minimum(per, K - start)


@triton.jit
def split_k_sum(
    acc, part_ptr, count_ptr, slot, split, SPLIT_K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr
):
    """Deterministic split-K reduction of output tile `slot`: store this slice's fp32 partial, count the
    arrival; the program that arrives last sums every partial in slice order and resets the counter for
    the next launch. Returns (whether this program is the last, the sum; meaningful for the last only)."""
    offs = tl.arange(0, BLOCK_M)[:, None] * BLOCK_N + tl.arange(0, BLOCK_N)[None, :]
    base = part_ptr + slot.to(tl.int64) * (SPLIT_K * BLOCK_M * BLOCK_N)
    tl.store(base + split * (BLOCK_M * BLOCK_N) + offs, acc)
    tl.debug_barrier()  # every thread's partial is written before the arrival is counted
    arrived = tl.atomic_add(count_ptr + slot, 1, sem="acq_rel")  # release ours, acquire the others'
    last = arrived == SPLIT_K - 1
    total = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if last:
        for s in tl.static_range(SPLIT_K):  # slice order, not arrival order: the same sum every run
            total += tl.load(base + s * (BLOCK_M * BLOCK_N) + offs, cache_modifier=".cg")
        tl.atomic_xchg(count_ptr + slot, 0)
    return last, total


@triton.jit
def _matmul_kernel(
    a_ptr,
    b_ptr,
    c_ptr,
    bias_ptr,
    part_ptr,
    count_ptr,
    M,
    N,
    K,
    stride_ab,
    stride_am,
    stride_ak,
    stride_bb,
    stride_bk,
    stride_bn,
    stride_cb,
    stride_cm,
    stride_biasm,
    stride_biasn,
    alpha,
    beta,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    SPLIT_K: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SCALED: tl.constexpr,
    UPCAST: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
):
    # One output tile (and, split, one K slice of it) per program along axis 0, the batch along axis 1.
    grid_m, grid_n = tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N)
    i = tl.program_id(1).to(tl.int64)
    if SPLIT_K == 1:
        pid_m, pid_n = grouped_tile(tl.program_id(0), grid_m, grid_n, GROUP_M)
        matmul_tile(
            a_ptr,
            b_ptr,
            c_ptr,
            bias_ptr,
            i,
            pid_m,
            pid_n,
            M,
            N,
            K,
            stride_ab,
            stride_am,
            stride_ak,
            stride_bb,
            stride_bk,
            stride_bn,
            stride_cb,
            stride_cm,
            stride_biasm,
            stride_biasn,
            alpha,
            beta,
            BLOCK_M,
            BLOCK_N,
            BLOCK_K,
            HAS_BIAS,
            SCALED,
            UPCAST,
            INPUT_PRECISION,
        )
    else:
        tile = tl.program_id(0) // SPLIT_K
        split = tl.program_id(0) % SPLIT_K
        pid_m, pid_n = grouped_tile(tile, grid_m, grid_n, GROUP_M)
        k_start, k_len = split_k_slice(split, K, SPLIT_K, BLOCK_K)
        acc = tile_product(
            a_ptr,
            b_ptr,
            i,
            pid_m,
            pid_n,
            M,
            N,
            k_start,
            k_len,
            stride_ab,
            stride_am,
            stride_ak,
            stride_bb,
            stride_bk,
            stride_bn,
            BLOCK_M,
            BLOCK_N,
            BLOCK_K,
            UPCAST,
            INPUT_PRECISION,
        )
        last, total = split_k_sum(
            acc, part_ptr, count_ptr, i * (grid_m * grid_n) + tile, split, SPLIT_K, BLOCK_M, BLOCK_N
        )
        if last:
            tile_epilogue(
                total,
                c_ptr,
                bias_ptr,
                i,
                pid_m,
                pid_n,
                M,
                N,
                stride_cb,
                stride_cm,
                stride_biasm,
                stride_biasn,
                alpha,
                beta,
                BLOCK_M,
                BLOCK_N,
                HAS_BIAS,
                SCALED,
            )


@triton.jit
def _desc_tile(desc, i, row, col, ROWS: tl.constexpr, COLS: tl.constexpr, BATCHED: tl.constexpr):
    """The (ROWS, COLS) tile at (row, col) of matrix i of a 3-D descriptor (BATCHED) or of a 2-D one."""
    if BATCHED:
        tile = desc.load([i, row, col]).reshape(ROWS, COLS)
    else:
        tile = desc.load([row, col])
    return tile


@triton.jit
def _tma_product(
    a_desc,
    b_desc,
    i,
    off_m,
    off_n,
    k_start,
    k_end,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    B_BY_ROWS: tl.constexpr,
    BATCHED: tl.constexpr,
    UPCAST: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
):
    """fp32 (BLOCK_M, BLOCK_N) tile at (off_m, off_n) of a[i] @ b[i] over K columns k_start .. k_end (whole
    BLOCK_K steps: the descriptors read past K as zeros)."""
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(k_start, k_end, BLOCK_K):
        a = _desc_tile(a_desc, i, off_m, k, BLOCK_M, BLOCK_K, BATCHED)
        if B_BY_ROWS:
            b = _desc_tile(b_desc, i, off_n, k, BLOCK_N, BLOCK_K, BATCHED).T
        else:
            b = _desc_tile(b_desc, i, k, off_n, BLOCK_K, BLOCK_N, BATCHED)
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)
    return acc


@triton.jit
def _tma_epilogue(
    acc,
    c_desc,
    bias_ptr,
    i,
    off_m,
    off_n,
    M,
    N,
    stride_biasm,
    stride_biasn,
    alpha,
    beta,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BATCHED: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SCALED: tl.constexpr,
):
    """c[i]'s tile at (off_m, off_n) = alpha * acc + beta * bias, stored through the descriptor (clipped)."""
    if SCALED:
        acc = acc * alpha
    if HAS_BIAS:
        rm = off_m + tl.arange(0, BLOCK_M)
        rn = off_n + tl.arange(0, BLOCK_N)
        bias = tl.load(
            bias_ptr + rm[:, None] * stride_biasm + rn[None, :] * stride_biasn,
            mask=(rm[:, None] < M) & (rn[None, :] < N),
            other=0.0,
        ).to(tl.float32)
        if SCALED:
            bias = bias * beta
        acc = acc + bias
    out = acc.to(c_desc.dtype)
    if BATCHED:
        c_desc.store([i, off_m, off_n], out.reshape(1, BLOCK_M, BLOCK_N))
    else:
        c_desc.store([off_m, off_n], out)


@triton.jit
def _matmul_tma_kernel(
    a_desc,
    b_desc,
    c_desc,
    bias_ptr,
    part_ptr,
    count_ptr,
    M,
    N,
    K,
    batch,
    stride_biasm,
    stride_biasn,
    alpha,
    beta,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    PROGRAMS: tl.constexpr,
    SPLIT_K: tl.constexpr,
    B_BY_ROWS: tl.constexpr,
    BATCHED: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SCALED: tl.constexpr,
    UPCAST: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
):
    """c[i] = alpha * a[i] @ b[i] + beta * bias through tensor-memory (TMA) descriptors, Hopper and later.

    The copy engine moves whole tiles into shared memory (out-of-range parts read as zero, stores are
    clipped), so the K loop has no masks or address arithmetic. B_BY_ROWS: b is given as its (N, K)
    transpose with K contiguous (a linear's weight, attention's k), loaded as (BLOCK_N, BLOCK_K) tiles and
    transposed in registers. PROGRAMS > 0: that many persistent programs walk the tiles of every matrix (a
    batch of short-K products, attention scores, is a long run of store-bound tiles: the loads of the next
    tile overlap the store of this one); 0: one tile each, the batch along grid axis 1 (and with SPLIT_K > 1
    one K slice of a tile each, one matrix only, see the module docstring).
    """
    grid_m = tl.cdiv(M, BLOCK_M)
    grid_n = tl.cdiv(N, BLOCK_N)
    tiles = grid_m * grid_n
    if SPLIT_K == 1:
        if PROGRAMS > 0:
            start, stop, step = tl.program_id(0), batch * tiles, PROGRAMS
        else:
            first = tl.program_id(1) * tiles  # this program's matrix, grid axis 1
            start, stop, step = first + tl.program_id(0), first + tiles, tiles
        for t in tl.range(start, stop, step, flatten=PROGRAMS > 0):
            i = t // tiles
            pid_m, pid_n = grouped_tile(t % tiles, grid_m, grid_n, GROUP_M)
            off_m = pid_m * BLOCK_M
            off_n = pid_n * BLOCK_N
            acc = _tma_product(
                a_desc,
                b_desc,
                i,
                off_m,
                off_n,
                0,
                K,
                BLOCK_M,
                BLOCK_N,
                BLOCK_K,
                B_BY_ROWS,
                BATCHED,
                UPCAST,
                INPUT_PRECISION,
            )
            _tma_epilogue(
                acc,
                c_desc,
                bias_ptr,
                i,
                off_m,
                off_n,
                M,
                N,
                stride_biasm,
                stride_biasn,
                alpha,
                beta,
                BLOCK_M,
                BLOCK_N,
                BATCHED,
                HAS_BIAS,
                SCALED,
            )
    else:
        i = 0
        tile = tl.program_id(0) // SPLIT_K
        split = tl.program_id(0) % SPLIT_K
        pid_m, pid_n = grouped_tile(tile, grid_m, grid_n, GROUP_M)
        off_m = pid_m * BLOCK_M
        off_n = pid_n * BLOCK_N
        k_start, k_len = split_k_slice(split, K, SPLIT_K, BLOCK_K)
        acc = _tma_product(
            a_desc,
            b_desc,
            i,
            off_m,
            off_n,
            k_start,
            k_start + k_len,
            BLOCK_M,
            BLOCK_N,
            BLOCK_K,
            B_BY_ROWS,
            BATCHED,
            UPCAST,
            INPUT_PRECISION,
        )
        last, total = split_k_sum(acc, part_ptr, count_ptr, tile, split, SPLIT_K, BLOCK_M, BLOCK_N)
        if last:
            _tma_epilogue(
                total,
                c_desc,
                bias_ptr,
                i,
                off_m,
                off_n,
                M,
                N,
                stride_biasm,
                stride_biasn,
                alpha,
                beta,
                BLOCK_M,
                BLOCK_N,
                BATCHED,
                HAS_BIAS,
                SCALED,
            )


def _configs(interpreted: bool):
    if interpreted:  # timing candidates there would time numpy; big tiles run fastest there
        return [triton.Config({"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32, "GROUP_M": 8, "SPLIT_K": 1})]
    shapes = [
        (128, 256, 64, 3, 8),
        (256, 128, 64, 3, 8),
        (128, 256, 64, 4, 8),
        (128, 128, 64, 4, 8),
        (128, 128, 64, 4, 4),
        (128, 128, 32, 4, 4),
        (64, 256, 32, 4, 4),
        (128, 64, 32, 4, 4),
        (64, 128, 64, 4, 4),
        (64, 64, 64, 4, 4),
        (32, 128, 64, 4, 4),
        # small M (decode): narrow N tiles and deep K so that enough programs stream the weight
        (16, 128, 128, 4, 4),
        (16, 64, 256, 3, 4),
        (16, 32, 256, 4, 4),
        (16, 64, 128, 5, 4),
        (16, 32, 512, 3, 4),
        (16, 16, 512, 4, 4),
    ]
    # small M and few output tiles (M=1 or a decode batch times a narrow N): K slices give the device
    # enough programs; offered only where `_split_fits`
    split = [
        (16, 64, 128, 4, 4, 4),
        (16, 32, 128, 4, 4, 4),
        (16, 64, 256, 3, 4, 2),
        (16, 32, 256, 3, 4, 4),
        (16, 128, 128, 4, 4, 8),
        (32, 64, 128, 4, 4, 4),
    ]
    return [
        triton.Config(
            {"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k, "GROUP_M": 8, "SPLIT_K": splits},
            num_stages=s,
            num_warps=w,
        )
        for m, n, k, s, w, splits in [(*shape, 1) for shape in shapes] + split
    ]


def _prune(configs, named_args, **_):
    """Tile heights that fit M: decode-sized M (1-16 rows) never times 128-row tiles, and a large M
    skips the thin ones. Halves the autotuning time of a new shape too. Split-K configs where they fit."""
    m = named_args["M"]
    limit = (lambda bm: bm <= 32) if m <= 16 else (lambda bm: bm <= 64) if m <= 64 else (lambda bm: bm >= 64)
    whole = [c for c in configs if c.kwargs.get("SPLIT_K", 1) == 1]
    fits = [c for c in whole if limit(c.kwargs["BLOCK_M"])] or whole
    fits += [
        c
        for c in configs
        if c.kwargs.get("SPLIT_K", 1) > 1 and limit(c.kwargs["BLOCK_M"]) and _split_fits(c.kwargs, named_args)
    ]
    return fits


SPLIT_K_PROGRAMS = 2  # split configs keep (tiles x slices) within this many programs per core


def _split_fits(config: dict, named_args: dict) -> bool:
    """Whether a split-K config suits the problem: one matrix (stride_cb 0) whose output has fewer tiles
    than the device has cores, slices of at least two K steps, at most SPLIT_K_PROGRAMS programs per core
    (which also bounds the workspace: `_split_workspace`)."""
    m, n, k = named_args["M"], named_args.get("N"), named_args.get("K")
    if n is None or k is None or named_args.get("stride_cb") != 0:
        return False
    cores = backends.active().properties().cores
    tiles = cdiv(m, config["BLOCK_M"]) * cdiv(n, config["BLOCK_N"])
    splits = config["SPLIT_K"]
    return (
        tiles < cores and tiles * splits <= SPLIT_K_PROGRAMS * cores and k >= 2 * splits * config["BLOCK_K"]
    )


# device -> the split-K workspace's (partials, counters) sizes: worked out once (reading the device's
# properties costs microseconds), since this runs at every split launch
_split_sizes: dict[torch.device, tuple[int, int]] = {}


def _split_workspace(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(fp32 partials, int32 arrival counters at 0) for split-K launches (see `_scratch`). Sized for the
    largest split config `_split_fits` lets through: SPLIT_K_PROGRAMS programs per core, each one tile of
    partials, and a counter per core (split launches have fewer tiles than cores)."""
    sizes = _split_sizes.get(device)
    if sizes is None:
        cores = backends.active().properties().cores
        configs = [*_autotuned.configs, *_tma_autotuned.configs]
        tile = max(
            [c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"] for c in configs if c.kwargs.get("SPLIT_K", 1) > 1],
            default=1,
        )
        sizes = _split_sizes[device] = (SPLIT_K_PROGRAMS * cores * tile, cores)
    return _scratch.scratch(
        "split_k",
        device,
        sizes,
        lambda sizes: (
            torch.empty(sizes[0], dtype=torch.float32, device=device),
            torch.zeros(sizes[1], dtype=torch.int32, device=device),
        ),
    )


# The layout is part of the key: a linear's weight (B transposed: stride_bk == 1) wants other tiles than a
# row-major B of the same M, N, K; without it, whichever layout was tuned first served both.
# stride_cb (0 for one matrix, see `matmul`) tells split-K problems (one matrix) from batched ones.
_autotuned = Tuner(
    _matmul_kernel,
    _configs(backends.active().interpreted),
    key=["M", "N", "K", "stride_ak", "stride_bk", "stride_cb", "HAS_BIAS"],
    prune=_prune,
)
# (M, N, K, dtype, layout, constexprs) -> the winning config's kwargs:
# later calls skip the autotuner entirely.
_tuned: dict = {}
# The pointer kernel's later launches by the same key: (programs along grid axis 0, launch keywords: the
# constexprs and the config), worked out once.
_pointer_launches: dict = {}

# The TMA kernel serves 16-bit operands from this many rows of A up; smaller M keeps the pointer kernel,
# whose thin tiles stream a weight faster at decode sizes.
TMA_MIN_M = 64
_TMA_DTYPES = (torch.float16, torch.bfloat16)


def _tma_configs() -> dict[str, list]:
    """Configs by the problems they are timed on: (BLOCK_M, BLOCK_N, BLOCK_K, stages, warps), each with one
    tile per program and with one persistent program per SM."""
    sms = backends.active().properties().cores if backends.active().capabilities.tma else 1
    # Each fits a Hopper block's 227 KiB of shared memory (benchmarks/hopper_build.py: 128x256x64 in four
    # stages asked for 262176 B, so it failed at launch wherever it was tried)
    tiles = {
        "large": [
            (128, 256, 64, 3, 8),
            (256, 128, 64, 3, 8),
            (128, 128, 64, 4, 8),
            (128, 128, 64, 4, 4),
            (128, 64, 64, 4, 4),
            (64, 128, 64, 4, 4),
            (64, 128, 128, 4, 4),
            (128, 64, 128, 4, 4),
            (128, 128, 128, 3, 8),
        ],
        # K <= 256 (attention scores): the store dominates; few stages (one K step: one) leave room for
        # two programs per SM; persistent, two or three stages let the next tile's loads run under this
        # tile's store (the whole K in one step: BLOCK_K 128)
        "short_k": [
            (128, 128, 64, 2, 4),
            (64, 128, 64, 2, 4),
            (128, 256, 64, 2, 8),
            (128, 128, 128, 1, 4),
            (128, 256, 128, 1, 8),
            (128, 128, 128, 2, 4),
            (128, 128, 128, 2, 8),
            (64, 256, 128, 2, 8),
            (128, 64, 128, 3, 4),
        ],
        # M <= 64 (a decode batch): narrow, deep tiles so that enough programs stream the weight
        "small_m": [
            (64, 64, 128, 4, 4),
            (64, 32, 128, 4, 4),
            (64, 32, 256, 3, 4),
            (64, 32, 256, 4, 4),
            (64, 64, 256, 3, 4),
        ],
    }
    # M <= 64 and few output tiles (a decode batch times a narrow N): K slices, one program per (tile,
    # slice), where `_split_fits`: (BLOCK_M, BLOCK_N, BLOCK_K, stages, warps, SPLIT_K)
    split = [(64, 32, 128, 4, 4, 2), (64, 32, 128, 4, 4, 4), (64, 64, 128, 4, 4, 4), (64, 32, 256, 3, 4, 2)]

    def config(m, n, k, stages, warps, programs, splits=1):
        return triton.Config(
            {"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k, "GROUP_M": 8, "PROGRAMS": programs, "SPLIT_K": splits},
            num_stages=stages,
            num_warps=warps,
            pre_hook=_set_block_shapes,
        )

    groups = {
        group: [config(*shape, programs) for shape in shapes for programs in (0, sms)]
        for group, shapes in tiles.items()
    }
    groups["small_m_split"] = [
        config(m, n, k, stages, warps, 0, splits) for m, n, k, stages, warps, splits in split
    ]
    return groups


def _block_shapes(bm: int, bn: int, bk: int, batched: bool, b_by_rows: bool) -> tuple[list, list, list]:
    """Tiles of the a, b and c descriptors (a leading 1 for the batch dim when batched)."""
    lead = [1] if batched else []
    return lead + [bm, bk], lead + ([bn, bk] if b_by_rows else [bk, bn]), lead + [bm, bn]


def _set_block_shapes(nargs):
    """Autotuner hook: size the descriptors' tiles for the config being run."""
    shapes = _block_shapes(
        nargs["BLOCK_M"], nargs["BLOCK_N"], nargs["BLOCK_K"], nargs["BATCHED"], nargs["B_BY_ROWS"]
    )
    for name, shape in zip(("a_desc", "b_desc", "c_desc"), shapes):
        nargs[name].block_shape = shape


def _tma_layout(a, b, c, M, K, batch, a_strides, b_strides, c_strides) -> bool | None:
    """None when the TMA kernel cannot take these operands, else whether B is read by rows (K contiguous).

    TMA needs Hopper or later, unit stride along each tile's last dim, 16-byte aligned bases and strides,
    and (batched) a real stride between matrices, not a broadcast.
    """
    if not backends.active().capabilities.tma or a.dtype not in _TMA_DTYPES or M < TMA_MIN_M or K == 0:
        return None
    if a_strides[2] != 1:
        return None
    if b_strides[2] == 1:
        b_by_rows, b_row = False, b_strides[1]
    elif b_strides[1] == 1:
        b_by_rows, b_row = True, b_strides[2]
    else:
        return None
    strides = [a_strides[1], b_row, c_strides[1]]
    if batch > 1:
        strides += [a_strides[0], b_strides[0], c_strides[0]]
    size = a.element_size()
    if any(s == 0 or (s * size) % 16 for s in strides) or any(t.data_ptr() % 16 for t in (a, b, c)):
        return None
    return b_by_rows


def _tma_descriptors(a, b, c, M, N, K, batch, a_strides, b_strides, c_strides, b_by_rows, config=None):
    """Host descriptors of a, b and c (3-D when batched); tiles from `config`, else placeholders that the
    autotuner's hook sizes."""
    tiles = (config["BLOCK_M"], config["BLOCK_N"], config["BLOCK_K"]) if config else (16, 16, 16)
    blocks = _block_shapes(*tiles, batch > 1, b_by_rows)
    b_shape, b_row = ([N, K], b_strides[2]) if b_by_rows else ([K, N], b_strides[1])
    parts = [
        (a, [M, K], a_strides[1], a_strides[0]),
        (b, b_shape, b_row, b_strides[0]),
        (c, [M, N], c_strides[1], c_strides[0]),
    ]
    if batch == 1:
        return [
            TensorDescriptor(t, shape, [row, 1], block) for (t, shape, row, _), block in zip(parts, blocks)
        ]
    return [
        TensorDescriptor(t, [batch] + shape, [between, row, 1], block)
        for (t, shape, row, between), block in zip(parts, blocks)
    ]


def tma_candidates(named_args: dict, groups: dict[str, list]) -> list:
    """The configs of `groups` (`_tma_configs()`) that fit the problem, in order."""
    if named_args["M"] <= 64:
        one_matrix = {**named_args, "stride_cb": 0 if not named_args["BATCHED"] else None}
        return groups["small_m"] + [c for c in groups["small_m_split"] if _split_fits(c.kwargs, one_matrix)]
    return groups["large"] + (groups["short_k"] if named_args["K"] <= 256 else [])


def _prune_tma(configs, named_args, **_):
    """The config groups that fit the problem; only the first config on the interpreter."""
    fits = tma_candidates(named_args, _TMA_CONFIGS)
    return fits[:1] if backends.active().interpreted else fits


_TMA_CONFIGS = _tma_configs()
_tma_autotuned = Tuner(
    _matmul_tma_kernel,
    sum(_TMA_CONFIGS.values(), []),
    key=["M", "N", "K", "B_BY_ROWS", "BATCHED", "HAS_BIAS"],
    prune=_prune_tma,
)


# The persistent style (ops.mlu.persistent): programs that fill the cores walk the output tiles of every
# matrix in grouped order. Tuning table, in order of preference: (BLOCK_M, BLOCK_N, BLOCK_K). A config is
# used when its tiles fit NRAM (see `nram_bytes`) and BLOCK_M / BLOCK_N do not exceed what M / N need
# (small-M decode GEMMs take the 16-row tiles with a deep K). Not tuned on an MLU: no MLU was available.
PERSISTENT_CONFIGS = [
    (128, 128, 64),
    (64, 128, 64),
    (128, 64, 64),
    (64, 64, 64),
    (32, 128, 64),
    (16, 128, 128),
    (16, 64, 128),
    (16, 32, 64),
]
PERSISTENT_GROUP_M = 8


@triton.jit
def _matmul_persistent_kernel(
    a_ptr,
    b_ptr,
    c_ptr,
    bias_ptr,
    M,
    N,
    K,
    batch,
    stride_ab,
    stride_am,
    stride_ak,
    stride_bb,
    stride_bk,
    stride_bn,
    stride_cb,
    stride_cm,
    stride_biasm,
    stride_biasn,
    alpha,
    beta,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SCALED: tl.constexpr,
    UPCAST: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
):
    # c[i] = alpha * a[i] @ b[i] + beta * bias, as workbench.ops._matmul's kernel; the batch is part of
    # the tile index, so one grid-stride loop covers every matrix (no grid axis for it).
    grid_m = tl.cdiv(M, BLOCK_M)
    grid_n = tl.cdiv(N, BLOCK_N)
    per_matrix = grid_m * grid_n
    for t in range(tl.program_id(0).to(tl.int64), batch * per_matrix, tl.num_programs(0).to(tl.int64)):
        pid_m, pid_n = grouped_tile(t % per_matrix, grid_m, grid_n, GROUP_M)
        matmul_tile(
            a_ptr,
            b_ptr,
            c_ptr,
            bias_ptr,
            t // per_matrix,
            pid_m,
            pid_n,
            M,
            N,
            K,
            stride_ab,
            stride_am,
            stride_ak,
            stride_bb,
            stride_bk,
            stride_bn,
            stride_cb,
            stride_cm,
            stride_biasm,
            stride_biasn,
            alpha,
            beta,
            BLOCK_M,
            BLOCK_N,
            BLOCK_K,
            HAS_BIAS,
            SCALED,
            UPCAST,
            INPUT_PRECISION,
        )


def nram_bytes(config: tuple[int, int, int], element_size: int, has_bias: bool = True) -> int:
    """NRAM estimate of one program: the A and B tiles it loads, the fp32 accumulator and the bias tile
    of the epilogue (pick_config counts it always: one table serves every matmul)."""
    bm, bn, bk = config
    return (bm * bk + bk * bn) * element_size + bm * bn * (4 + element_size * has_bias)


def pick_config(M: int, N: int, element_size: int) -> tuple[int, int, int]:
    """The first config of the table that fits NRAM and is not wider than the problem needs."""
    budget = persistent_policy().onchip_bytes * NRAM_FILL
    fitting = [c for c in PERSISTENT_CONFIGS if nram_bytes(c, element_size) <= budget]
    if not fitting:
        raise ValueError(
            f"no mm config fits {budget:.0f} bytes of NRAM; smallest needs "
            f"{min(nram_bytes(c, element_size) for c in PERSISTENT_CONFIGS)}"
        )
    need_m, need_n = triton.next_power_of_2(M), triton.next_power_of_2(N)
    for bm, bn, bk in fitting:
        if bm <= max(16, need_m) and bn <= max(32, need_n):
            return bm, bn, bk
    return fitting[-1]


def _tf32() -> bool:
    """Whether fp32 dots may round their inputs to tf32: the user allows it (torch's float32 matmul
    precision, which every backend's torch module follows), the backend's device has it, and, for
    persistent launches, so does the device they are sized for (the launch rules judge that one)."""
    return (
        torch.get_float32_matmul_precision() != "highest"
        and backends.active().capabilities.tf32
        and (not persistent() or persistent_target().tf32)
    )


def check_operands(names: tuple[str, ...], *tensors: torch.Tensor) -> None:
    """Float tensors on the backend's device, one device, one dtype (the first's)."""
    for name, t in zip(names, tensors):
        check_tensor(name, t)
    first = tensors[0]
    for t in tensors[1:]:
        if t.device != first.device:
            check_same_device(**dict(zip(names, tensors)))  # raises, naming the tensor
    for name, t in zip(names[1:], tensors[1:]):
        check_dtype_match(name, t, first.dtype, names[0])


def matmul(
    a: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    M: int,
    N: int,
    K: int,
    batch: int,
    a_strides: tuple[int, int, int],
    b_strides: tuple[int, int, int],
    c_strides: tuple[int, int],
    bias: torch.Tensor | None = None,
    bias_strides: tuple[int, int] = (0, 0),
    alpha: float = 1.0,
    beta: float = 1.0,
) -> torch.Tensor:
    """c[i] = alpha * a[i] @ b[i] + beta * bias for i < batch; strides are (batch, row, col); c is written.

    The caller has validated the operands and allocated `c` (row stride c_strides[1], unit column stride).
    """
    if M == 0 or N == 0 or batch == 0:
        return c
    if batch > MAX_BATCH and not persistent():
        raise ValueError(f"batch: expected at most {MAX_BATCH} matrices, got {batch}")
    has_bias, meta = _meta(a, bias, alpha, beta)
    if persistent():
        bm, bn, bk = pick_config(M, N, a.element_size())
        launch(
            _matmul_persistent_kernel,
            (persistent_programs(batch * cdiv(M, bm) * cdiv(N, bn)),),
            a,
            b,
            c,
            bias if has_bias else c,
            M,
            N,
            K,
            batch,
            *a_strides,
            *b_strides,
            *c_strides,
            *bias_strides,
            float(alpha),
            float(beta),
            BLOCK_M=bm,
            BLOCK_N=bn,
            BLOCK_K=bk,
            GROUP_M=PERSISTENT_GROUP_M,
            **meta,
            num_warps=NUM_WARPS,
        )
        return c

    def grid(config):
        return (cdiv(M, config["BLOCK_M"]) * cdiv(N, config["BLOCK_N"]) * config.get("SPLIT_K", 1), batch)

    if batch == 1:  # a single matrix: no batch strides (stride_cb 0 is what offers split-K configs)
        a_strides, b_strides, c_strides = (0, *a_strides[1:]), (0, *b_strides[1:]), (0, c_strides[1])
    b_by_rows = _tma_layout(a, b, c, M, K, batch, a_strides, b_strides, c_strides)
    if b_by_rows is not None:
        _matmul_tma(
            a,
            b,
            c,
            M,
            N,
            K,
            batch,
            a_strides,
            b_strides,
            c_strides,
            b_by_rows,
            bias if has_bias else c,
            bias_strides,
            alpha,
            beta,
            meta,
        )
        return c
    args = (
        a,
        b,
        c,
        bias if has_bias else c,
        *_split_workspace(c.device),
        M,
        N,
        K,
        *a_strides,
        *b_strides,
        *c_strides,
        *bias_strides,
        float(alpha),
        float(beta),
    )
    key = (M, N, K, a.dtype, a_strides[2] == 1, b_strides[1] == 1, batch == 1, *meta.values())
    tuned = _pointer_launches.get(key)
    if tuned is None:  # first call of this shape: autotune, then remember the winner
        config = _tuned[key] = autotune(_autotuned, grid, *args, **meta)
        _pointer_launches[key] = (grid(config)[0], {**meta, **config})
    else:
        programs, kwargs = tuned
        launch(_matmul_kernel, (programs, batch), *args, **kwargs)
    return c


def _meta(a: torch.Tensor, bias: torch.Tensor | None, alpha: float, beta: float) -> tuple[bool, dict]:
    """(whether the bias is read, the constexprs every matmul kernel takes)."""
    has_bias = bias is not None and beta != 0  # torch ignores the bias (even NaN) when beta is 0
    upcast = a.dtype == torch.bfloat16 and not backends.active().capabilities.bf16_dot
    precision = "tf32" if a.dtype is torch.float32 and _tf32() else "ieee"
    return has_bias, {
        "HAS_BIAS": has_bias,
        "SCALED": alpha != 1 or (has_bias and beta != 1),
        "UPCAST": upcast,
        "INPUT_PRECISION": precision,
    }


def pointer_site(
    a: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    M: int,
    N: int,
    K: int,
    batch: int,
    a_strides: tuple[int, int, int],
    b_strides: tuple[int, int, int],
    c_strides: tuple[int, int],
    bias: torch.Tensor | None = None,
    bias_strides: tuple[int, int] = (0, 0),
    alpha: float = 1.0,
    beta: float = 1.0,
) -> tuple | None:
    """The pointer kernel's tuned launch of a problem `matmul` has run there: (grid, Site, runtime args after
    the four pointers a, b, c, bias-or-c and the split-K workspace: sizes, strides, scalars; the workspace
    to pass, or None for a split launch), or None (nothing to launch, the TMA kernel's problem, or not
    tuned yet). For a plan whose geometry fixes every size and stride (linear's): its Site then skips the
    launch cache's key. A split launch takes `_split_workspace` at every launch (held in no plan: see
    `_scratch`); any other launch never reads the workspace, so the one it holds serves for good."""
    if M == 0 or N == 0 or batch == 0 or _tma_layout(a, b, c, M, K, batch, a_strides, b_strides, c_strides):
        return None
    _, meta = _meta(a, bias, alpha, beta)
    tuned = _pointer_launches.get(
        (M, N, K, a.dtype, a_strides[2] == 1, b_strides[1] == 1, batch == 1, *meta.values())
    )
    if tuned is None:
        return None
    programs, kwargs = tuned
    if batch == 1:
        a_strides, b_strides, c_strides = (0, *a_strides[1:]), (0, *b_strides[1:]), (0, c_strides[1])
    return (
        (programs, batch),
        Site(_matmul_kernel, **kwargs),
        (M, N, K, *a_strides, *b_strides, *c_strides, *bias_strides, float(alpha), float(beta)),
        None if kwargs["SPLIT_K"] > 1 else _split_workspace(c.device),
    )


def _matmul_tma(
    a, b, c, M, N, K, batch, a_strides, b_strides, c_strides, b_by_rows, bias, bias_strides, alpha, beta, meta
):
    """matmul through `_matmul_tma_kernel`, autotuned on a shape's first call like the pointer kernel."""
    meta = dict(meta, B_BY_ROWS=b_by_rows, BATCHED=batch > 1)

    def grid(config):
        tiles = cdiv(M, config["BLOCK_M"]) * cdiv(N, config["BLOCK_N"])
        if config["PROGRAMS"]:  # persistent: the programs walk every matrix's tiles
            return (min(batch * tiles, config["PROGRAMS"]), 1)
        return (tiles * config["SPLIT_K"], batch)

    key = ("tma", M, N, K, batch, a.dtype, b_by_rows, *meta.values())
    config = _tuned.get(key)
    descriptors = _tma_descriptors(
        a, b, c, M, N, K, batch, a_strides, b_strides, c_strides, b_by_rows, config
    )
    args = (
        *descriptors,
        bias,
        *_split_workspace(c.device),
        M,
        N,
        K,
        batch,
        *bias_strides,
        float(alpha),
        float(beta),
    )
    if config is None:
        _tuned[key] = autotune(_tma_autotuned, grid, *args, **meta)
    else:
        launch(_matmul_tma_kernel, grid(config), *args, **meta, **config)


# Qwen3-8B linear layers as (K, N): MLP up/gate, MLP down, q/o projection, k/v projection, lm_head.
LINEAR_KN = [(4096, 12288), (12288, 4096), (4096, 4096), (4096, 1024), (4096, 151936)]
