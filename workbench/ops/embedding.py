"""embedding: gather rows of a [V, H] table at int64/int32 indices (torch.nn.functional.embedding).

An index outside [0, V) raises IndexError as in torch (`_index_check`: a flag set by the kernel, read
after the launch); with the check off it gives a NaN row and adds nothing to the weight's gradient.
padding_idx only matters for the gradient: its row gets none. The backward scatters rows of the output
gradient into an fp32 table with atomic adds (16-bit atomics are not portable, and the Triton interpreter
has none), then casts it to the weight's dtype.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from workbench import backends

from . import _index_check
from ._common import Plans, check_same_device, check_tensor, new_output, new_output_of
from ._launch import Site, launch
from ._library import backward_op
from ._shapes import cdiv, next_pow2
from .mlu.persistent import NUM_WARPS, persistent, programs, row_tiles, tile_elems
from .spec import Case, Cost, OpSpec, Unsupported, input_grads, nbytes, randn, register


@triton.jit
def _embedding_tile(
    idx_ptr,
    w_ptr,
    out_ptr,
    flag_ptr,
    row_tile,
    col_tile,
    n_idx,
    n_rows,
    H,
    w_row_stride,
    w_col_stride,
    OUT_OF_RANGE: tl.constexpr,
    CHECK: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    """One tile: BLOCK_R looked-up rows x BLOCK_H columns (int64 tile indices)."""
    rows = row_tile * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = col_tile * BLOCK_H + tl.arange(0, BLOCK_H)
    row_ok = rows < n_idx
    idx = tl.load(idx_ptr + rows, mask=row_ok, other=0).to(tl.int64)
    in_range = (idx >= 0) & (idx < n_rows)
    if CHECK:  # every bad row's lane stores the same 1: no atomics needed
        tl.store(flag_ptr + tl.zeros_like(rows), 1, mask=row_ok & ~in_range)
    ok = row_ok[:, None] & (cols < H)[None, :]
    vals = tl.load(
        w_ptr + idx[:, None] * w_row_stride + cols[None, :] * w_col_stride,
        mask=ok & in_range[:, None],
        other=OUT_OF_RANGE,
    )
    tl.store(out_ptr + rows[:, None] * H + cols[None, :], vals, mask=ok)


@triton.jit
def _embedding_kernel(
    idx_ptr,
    w_ptr,
    out_ptr,
    flag_ptr,
    n_idx,
    n_rows,
    H,
    w_row_stride,
    w_col_stride,
    OUT_OF_RANGE: tl.constexpr,
    CHECK: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    _embedding_tile(
        idx_ptr,
        w_ptr,
        out_ptr,
        flag_ptr,
        tl.program_id(0).to(tl.int64),
        tl.program_id(1).to(tl.int64),
        n_idx,
        n_rows,
        H,
        w_row_stride,
        w_col_stride,
        OUT_OF_RANGE,
        CHECK,
        BLOCK_R,
        BLOCK_H,
    )


@triton.jit
def _embedding_persistent_kernel(
    idx_ptr,
    w_ptr,
    out_ptr,
    flag_ptr,
    n_idx,
    n_rows,
    H,
    w_row_stride,
    w_col_stride,
    OUT_OF_RANGE: tl.constexpr,
    CHECK: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    # The persistent style (ops.mlu.persistent): programs that fill the cores walk the row x column tiles
    col_tiles = tl.cdiv(H, BLOCK_H)
    tiles = tl.cdiv(n_idx, BLOCK_R) * col_tiles
    for t in range(tl.program_id(0).to(tl.int64), tiles, tl.num_programs(0).to(tl.int64)):
        _embedding_tile(
            idx_ptr,
            w_ptr,
            out_ptr,
            flag_ptr,
            t // col_tiles,
            t % col_tiles,
            n_idx,
            n_rows,
            H,
            w_row_stride,
            w_col_stride,
            OUT_OF_RANGE,
            CHECK,
            BLOCK_R,
            BLOCK_H,
        )


def prepare(
    input: torch.Tensor, weight: torch.Tensor, padding_idx: int | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate; (output, the indices as a contiguous 1-D tensor, or None when there is nothing to do).
    Shared by the generic and MLU launchers."""
    check_tensor("input", input, dtypes=(torch.int64, torch.int32))
    check_tensor("weight", weight)
    check_same_device(input=input, weight=weight)
    if weight.dim() != 2:
        raise ValueError(
            f"weight: expected a 2-D [num_embeddings, dim] table, got shape {tuple(weight.shape)}"
        )
    V, H = weight.shape
    if padding_idx is not None and not -V <= padding_idx < V:
        raise ValueError(f"padding_idx: expected a value in [{-V}, {V}), got {padding_idx}")
    out = new_output((*input.shape, H), weight.dtype, weight.device)
    return out, input.reshape(-1).contiguous() if out.numel() else None


# Geometry of (indices, table) and padding_idx -> (output shape, grid, runtime ints, Site) for
# contiguous indices, read in place: decoding repeats one geometry per step.
_plans = Plans()


def embedding(input: torch.Tensor, weight: torch.Tensor, padding_idx: int | None = None) -> torch.Tensor:
    check = _index_check.checking(input)
    try:  # one flat tuple: cheaper to build and hash than geometry()'s nested ones, once per decode step
        plan_key = (
            input.shape,
            input.stride(),
            input.dtype,
            input.device,
            weight.shape,
            weight.stride(),
            weight.dtype,
            weight.device,
            padding_idx,
            check,
        )
    except AttributeError:  # not tensors: prepare names them
        plan_key = None
    plan = _plans.get(plan_key)
    if plan is not None:  # checked before
        shape, grid, ints, site = plan
        return _gather(site, grid, ints, input, weight, new_output_of(weight, shape), check, "embedding")
    out, idx = prepare(input, weight, padding_idx)
    if idx is None:
        return out
    grid, ints, site = _gather_launch(weight, idx, math.nan, check)
    _gather(site, grid, ints, idx, weight, out, check, "embedding")
    if idx.data_ptr() == input.data_ptr():  # the indices as given, not a contiguous copy
        _plans.put(plan_key, (tuple(out.shape), grid, ints, site))
    return out


def _gather_launch(table: torch.Tensor, idx: torch.Tensor, out_of_range: float, check: bool) -> tuple:
    """(grid, runtime ints, Site) of `_embedding_kernel` over a 2-D table and 1-D indices.

    `out_of_range` is a constexpr, so it keys the launch cache: NaN must be one object (math.nan), since
    a new float("nan") is unequal to the last one and would miss the cache on every call."""
    V, H = table.shape
    n = idx.numel()
    if persistent():
        # live tiles: the looked-up values (the BLOCK_R indices are negligible next to them)
        t = row_tiles(n, H, one_tile_bytes=table.element_size(), streamed_bytes=table.element_size())
        kernel, block_r, block_h, num_warps = _embedding_persistent_kernel, t.block_r, t.block_c, NUM_WARPS
        grid = (programs(cdiv(n, block_r) * cdiv(H, block_h)),)
    else:
        kernel, block_h, num_warps = _embedding_kernel, min(1024, next_pow2(H)), 4
        block_r = max(1, min(next_pow2(n), 4096 * backends.active().policy.block_scale // block_h))
        grid = (cdiv(n, block_r), cdiv(H, block_h))
    site = Site(
        kernel, OUT_OF_RANGE=out_of_range, CHECK=check, BLOCK_R=block_r, BLOCK_H=block_h, num_warps=num_warps
    )
    return grid, (n, V, H, table.stride(0), table.stride(1)), site


def _gather(
    site, grid, ints, idx: torch.Tensor, table: torch.Tensor, out: torch.Tensor, check: bool, op: str
) -> torch.Tensor:
    """Launch the gather; with the check on, raise IndexError naming `op` for an index outside the table."""
    device = idx.device
    site(
        grid,
        idx,
        table,
        out,
        _index_check.flag(device),
        *ints,
        aligned=not (idx.data_ptr() | table.data_ptr()) & 15,
    )
    if check:  # ints[1]: the table's rows
        _index_check.raise_if_set(device, _index_check.out_of_bounds(op, idx, 0, ints[1]), op)
    return out


def gather_rows(
    out: torch.Tensor, table: torch.Tensor, idx: torch.Tensor, out_of_range: float, op: str
) -> torch.Tensor:
    """out[i, :] = table[idx[i], :] for a 2-D table and contiguous 1-D indices. An index outside the
    table raises IndexError naming `op` (with the check off, its row gets `out_of_range`). Also
    index_select's kernel along dim 0 of a 2-D tensor."""
    check = _index_check.checking(idx)
    grid, ints, site = _gather_launch(table, idx, out_of_range, check)
    return _gather(site, grid, ints, idx, table, out, check, op)


@triton.jit
def _embedding_backward_kernel(
    idx_ptr,
    dy_ptr,
    dw_ptr,
    n_idx,
    n_rows,
    H,
    padding_idx,
    HAS_PADDING: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    """dw[idx[i], :] += dy[i, :] in fp32 for a grid-stride run of index blocks (dy contiguous [n_idx, H])."""
    cols = tl.arange(0, BLOCK_H)
    for start in range(tl.program_id(0) * BLOCK_R, n_idx, tl.num_programs(0) * BLOCK_R):
        rows = start + tl.arange(0, BLOCK_R).to(tl.int64)
        row_ok = rows < n_idx
        idx = tl.load(idx_ptr + rows, mask=row_ok, other=0).to(tl.int64)
        take = row_ok & (idx >= 0) & (idx < n_rows)
        if HAS_PADDING:
            take = take & (idx != padding_idx)
        for h in range(0, H, BLOCK_H):
            ok = take[:, None] & (h + cols < H)[None, :]
            dy = tl.load(dy_ptr + rows[:, None] * H + h + cols[None, :], mask=ok, other=0.0).to(tl.float32)
            tl.atomic_add(dw_ptr + idx[:, None] * H + h + cols[None, :], dy, mask=ok)


@backward_op("embedding_backward", lambda dy, input, weight, padding_idx: weight.new_empty(weight.shape))
def embedding_backward(
    dy: torch.Tensor, input: torch.Tensor, weight: torch.Tensor, padding_idx: int | None
) -> torch.Tensor:
    """d loss / d weight of `embedding`: rows of dy summed into the rows they were read from."""
    V, H = weight.shape
    idx = input.reshape(-1).contiguous()
    dw = torch.zeros((V, H), dtype=torch.float32, device=weight.device)
    if idx.numel() and H:
        rows = dy.reshape(-1, H).contiguous()
        block_h = min(256, next_pow2(H))
        if persistent():  # programs that fill the target's cores; a tile of dy (fp32 too) within its NRAM
            block_r = max(1, min(next_pow2(idx.numel()), tile_elems(4 + dy.element_size()) // block_h))
            grid = programs(cdiv(idx.numel(), block_r))
        else:
            block_r = max(1, min(next_pow2(idx.numel()), 2048 // block_h))
            grid = backends.active().policy.grid(cdiv(idx.numel(), block_r), 4)
        padding = (padding_idx % V) if padding_idx is not None else 0
        launch(
            _embedding_backward_kernel,
            (grid,),
            idx,
            rows,
            dw,
            idx.numel(),
            V,
            H,
            padding,
            HAS_PADDING=padding_idx is not None,
            BLOCK_R=block_r,
            BLOCK_H=block_h,
            num_warps=4,
        )
    return dw.to(weight.dtype)


def _setup_context(ctx, inputs, output):
    input, weight, ctx.padding_idx = inputs
    ctx.save_for_backward(input, weight)


def _backward(ctx, dy):
    input, weight = ctx.saved_tensors
    return input_grads(ctx, None, embedding_backward(dy, input, weight, ctx.padding_idx), None)


def _aten_embedding(impl, weight, indices, padding_idx=-1, scale_grad_by_freq=False, sparse=False):
    """aten::embedding(weight, indices, padding_idx=-1 (none), scale_grad_by_freq, sparse); the last two
    change only the gradient, which this op does not implement for them."""
    if scale_grad_by_freq or sparse:
        raise Unsupported("scale_grad_by_freq / sparse gradients are not implemented")
    return impl(indices, weight, padding_idx if padding_idx >= 0 else None)


def _reference(input, weight, padding_idx=None):
    return torch.nn.functional.embedding(input, weight, padding_idx=padding_idx)


def _cost(input, weight, padding_idx=None):
    return Cost(
        bytes=nbytes(input) + 2 * input.numel() * weight.shape[1] * weight.element_size(),
        flops=max(1, input.numel()),
    )


def _case(
    name, idx_shape, V, H, idx_dtype=torch.int64, transform=None, padding_idx=None, big=False, near_end=False
):
    def make(dtype, device, gen):
        w = randn((V, H), dtype, device, gen)
        lo = V - 64 if near_end else 0  # rows whose offsets pass 2**31 elements
        idx = torch.randint(lo, V, idx_shape, device=device, generator=gen).to(idx_dtype)
        kwargs = {"padding_idx": padding_idx} if padding_idx is not None else {}
        return (idx, (transform(w) if transform else w)), kwargs

    return Case(name, make, big=big)


SPEC = register(
    OpSpec(
        name="embedding",
        reference=_reference,
        impl=embedding,
        cases={
            "quick": lambda: [
                _case("2x8 of 512x64", (2, 8), 512, 64),
                _case("100 of 50x300", (100,), 50, 300),
            ],
            "edge": lambda: [
                _case("rank3 indices int32", (2, 3, 4), 40, 16, idx_dtype=torch.int32),
                _case("transposed table", (5, 7), 30, 20, transform=lambda w: w.t().contiguous().t()),
                _case("padding_idx 0", (6,), 10, 8, padding_idx=0),
                _case("0-dim index", (), 10, 8),
                _case("zero indices", (0, 4), 10, 8),
                _case(
                    "big table 524289x4096, rows near the end", (16,), 524289, 4096, big=True, near_end=True
                ),
            ],
            "llm": lambda: [
                _case("prefill 1x2048 of 151936x4096", (1, 2048), 151936, 4096),
                _case("decode 64x1 of 151936x4096", (64, 1), 151936, 4096),
            ],
        },
        cost=_cost,
        aten=("aten::embedding",),
        aten_impls={"aten::embedding": _aten_embedding},
        backward=_backward,
        setup_context=_setup_context,
    )
)
