"""argmax along a dim or over all elements (torch.argmax): the first index of the largest value.

NaN counts as larger than everything (torch's rule); ties give the lowest index. One launch: long rows
with few of them (greedy decoding over a vocabulary) are split into chunks whose winners meet in one
atomic slot per row (`_argmax_kernel`).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from workbench import backends

from . import _rows, _scratch, _split_rows
from ._common import Plans, check_tensor, new_output, new_output_of
from ._launch import Site
from ._shapes import next_pow2
from .spec import Case, Cost, OpSpec, nbytes, randn, register, same_arguments

NO_INDEX = 2**63 - 1


@triton.jit
def _winner(best, best_idx):
    """(value, index) of the lanes' winner: a NaN if any (lowest index), else the max at its lowest index."""
    is_nan = best != best
    has_nan = tl.max(is_nan.to(tl.int32), 0) > 0
    top = tl.max(tl.where(is_nan, -float("inf"), best), 0)
    pick = tl.where(has_nan, is_nan, best == top)
    idx = tl.min(tl.where(pick, best_idx, 9223372036854775807), 0)
    return tl.where(has_nan, float("nan"), top), idx


@triton.jit
def _lane_winners(x_row, lo, hi, BLOCK: tl.constexpr, EVEN: tl.constexpr):
    """Each lane's winner among its columns of [lo, hi) (lane j sees lo + j, lo + j + BLOCK, ...), compared
    as floats (-0.0 == 0.0, as torch has it): (values, indices). A lane keeps the first of equal values;
    one whose columns are all -inf keeps its first column. Lanes past `hi` hold -inf at indices above every
    real column, so they lose every tie. Indices take lo's integer type; EVEN: hi - lo is a multiple of
    BLOCK (no bounds mask). Per element, three instructions besides the load: the compare (a NaN is never
    greater), the select of the tile's start (the lane's own offset is added once, at the end) and a
    NaN-propagating max, so a lane that met a NaN ends with NaN; its index is then not its first NaN's:
    where NaN wins, the caller finds that with `_first_nan`."""
    lanes = tl.arange(0, BLOCK)
    best_start = lo + tl.zeros([BLOCK], lo.dtype)
    best = tl.full([BLOCK], -float("inf"), tl.float32)
    for start in range(lo, hi, BLOCK):
        offs = start + lanes
        if EVEN:
            x = tl.load(x_row + offs).to(tl.float32)
        else:
            x = tl.load(x_row + offs, mask=offs < hi, other=-float("inf")).to(tl.float32)
        best_start = tl.where(x > best, start, best_start)
        best = tl.maximum(best, x, propagate_nan=tl.PropagateNan.ALL)
    return best, best_start + lanes


@triton.jit
def _first_nan(x_row, lo, hi, BLOCK: tl.constexpr):
    """The first column of [lo, hi) that holds a NaN (a second pass, made only where NaN won), as int64."""
    first = hi + tl.zeros([BLOCK], tl.int32)  # past every column (in hi's type): no NaN yet
    for start in range(lo, hi, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_row + offs, mask=offs < hi, other=0.0).to(tl.float32)
        first = tl.minimum(first, tl.where(x != x, offs, hi))
    return tl.min(first, 0).to(tl.int64)


@triton.jit
def chunk_winner(x_row, lo, hi, BLOCK: tl.constexpr):
    """(value, index) of the winner among columns [lo, hi) of one row (the MLU-style variant's loop)."""
    best, best_idx = _lane_winners(x_row, lo, hi, BLOCK, False)
    value, idx = _winner(best, best_idx.to(tl.int64))  # int64, as `_winner`'s no-index value
    if value != value:
        idx = _first_nan(x_row, lo, hi, BLOCK)
    return value, idx


@triton.jit
def _ordered(x):
    """An int32 key of each fp32 value that orders as torch's argmax compares: -inf < ... < -0.0 == 0.0 <
    ... < inf < NaN (every NaN the same key)."""
    bits = x.to(tl.int32, bitcast=True)
    key = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # negative floats: reverse their magnitude order
    key = tl.where(x == 0.0, 0, key)  # -0.0 equals 0.0
    return tl.where(x != x, 0x7FFFFFFF, key)


@triton.jit
def _argmax_kernel(
    x_ptr,
    out_ptr,
    val_ptr,
    best_ptr,
    count_ptr,
    n_cols,
    x_row_stride,
    chunk,
    BLOCK: tl.constexpr,
    SPLIT: tl.constexpr,
    INDEX32: tl.constexpr,
    VALUES: tl.constexpr,
    EVEN: tl.constexpr,
):
    """argmax of each row in one launch: program (row, c) finds the winner of columns [c * chunk, ...)
    as (key, index) with keys from `_ordered`. One chunk per row (SPLIT False): it stores the index. Else
    each program folds its winner into best_ptr[row] with one 64-bit atomic max of (key, 2**32 - 1 -
    index): the larger key, then the lower index, wins. The program that counts itself last on
    count_ptr[row] (acquire-release atomics: every other program's max is visible to it) takes the
    result and puts both slots back to their start values, so the buffers stay ready for the next call
    without a launch to reset them. Indices below 2**32 (the host takes care). INDEX32 (rows shorter than
    2**31): columns and the lanes' indices in int32, half the registers of int64 ones. VALUES (torch.max
    over rows): the winner's own element is stored in val_ptr[row] too. EVEN: every chunk's width is a
    multiple of BLOCK (loads without a bounds mask)."""
    row = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1)
    if INDEX32:
        lo = c * chunk
        no_index = 2147483647
    else:
        lo = c.to(tl.int64) * chunk
        no_index = 9223372036854775807
    hi = tl.minimum(lo + chunk, n_cols)
    x_row = x_ptr + row * x_row_stride
    best, best_idx = _lane_winners(x_row, lo, hi, BLOCK, EVEN)
    key = _ordered(best)  # one key per lane: the lanes meet in integer max and min
    top = tl.max(key, 0)
    if top == 2147483647:  # NaN's key: the first NaN wins
        idx = _first_nan(x_row, lo, hi, BLOCK)
    else:
        idx = tl.min(tl.where(key == top, best_idx, no_index), 0).to(tl.int64)
    if SPLIT:
        packed = (top.to(tl.int64) << 32) | (4294967295 - idx)
        tl.atomic_max(best_ptr + row, packed, sem="acq_rel")
        if tl.atomic_add(count_ptr + row, 1, sem="acq_rel") == tl.num_programs(1) - 1:
            final = tl.atomic_xchg(best_ptr + row, -9223372036854775808, sem="acq_rel")
            tl.atomic_xchg(count_ptr + row, 0, sem="acq_rel")
            idx = 4294967295 - (final & 4294967295)
            tl.store(out_ptr + row, idx)
            if VALUES:
                tl.store(val_ptr + row, tl.load(x_row + idx))
    else:
        tl.store(out_ptr + row, idx)
        if VALUES:
            tl.store(val_ptr + row, tl.load(x_row + idx))


def prepare(x: torch.Tensor, dim: int | None, keepdim: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate; (output, x as rows to take the argmax of, or None when the output is empty). Shared by
    every argmax launcher (generic, MLU style)."""
    check_tensor("x", x)
    if dim is None:
        if x.numel() == 0:
            raise ValueError(f"x: expected a non-empty tensor when dim is None, got shape {tuple(x.shape)}")
        out_shape = (1,) * x.dim() if keepdim else ()
        rows = x.reshape(1, -1)
        rows = rows if rows.stride(-1) == 1 else rows.contiguous()
    else:
        ndim = max(x.dim(), 1)
        if not -ndim <= dim < ndim:
            raise ValueError(f"dim: expected a dim in [{-ndim}, {ndim}), got {dim}")
        if x.dim() and x.shape[dim] == 0:
            raise ValueError(f"x: expected dim {dim} to have a non-zero size, got shape {tuple(x.shape)}")
        if x.dim() == 0:
            out_shape = ()
            rows = x.reshape(1, 1)
        else:
            out_shape = list(x.shape)
            if keepdim:
                out_shape[dim] = 1
            else:
                del out_shape[dim]
            rows = _rows.as_rows(x if _rows.is_last_dim(x, dim) else x.movedim(dim, -1))
    out = new_output(out_shape, torch.int64, x.device)
    return out, (rows if out.numel() else None)


# Geometry of x, dim and keepdim -> (output shape, `_Sizing`) where x's rows are x itself: greedy decoding
# repeats one geometry per step.
_plans = Plans()


def _split_slots(device: torch.device, n_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The split launch's slots (`_argmax_kernel`): the best packed (key, index) of each row, at its start
    value, and each row's count of finished programs, at 0 (see `_scratch`)."""
    return _scratch.scratch(
        "argmax",
        device,
        (max(n_rows, 64),),
        lambda sizes: (
            torch.full(sizes, -(2**63), dtype=torch.int64, device=device),
            torch.zeros(sizes, dtype=torch.int32, device=device),
        ),
    )


class _Sizing:
    """The launch over one geometry of rows: sizes, chunking and its Site; `values`: the launch stores
    each row's winning element too (torch.max)."""

    def __init__(self, rows: torch.Tensor, values: bool = False):
        self.n_rows, self.n = rows.shape
        self.row_stride = rows.stride(0)
        # Narrow tiles: the per-element compare-and-select work is what bounds this loop. 8 warps
        # (benchmarks/tune_sweep.py --only argmax, bf16: on an H200, 62 us vs 72 us with 16 at 8192x8192,
        # 234 us vs 243 us at 2048x151936; on an H100 with the three-instruction loop, 8 still the best at
        # 8192x8192, 57.5 us, and 226 us vs 217 us with 16 at 2048x151936).
        block = min(2048 * backends.active().policy.block_scale, next_pow2(self.n))
        warps = 8 if block >= 2048 else _rows.row_warps(block)
        # The split launch packs an index into 32 bits: longer rows (only a flattened tensor past 2**32
        # elements) take one program per row.
        self.chunks, self.chunk = (
            _split_rows.chunking(self.n_rows, self.n, block) if self.n < 2**32 else (1, self.n)
        )
        self.site = Site(
            _argmax_kernel,
            BLOCK=block,
            SPLIT=self.chunks > 1,
            INDEX32=self.n < 2**31,
            VALUES=values,
            EVEN=self.chunk % block == 0 and self.n % block == 0,
            num_warps=warps,
        )

    def launch(self, rows: torch.Tensor, out: torch.Tensor, values: torch.Tensor | None = None) -> None:
        best, count = _split_slots(rows.device, self.n_rows) if self.chunks > 1 else (out, out)
        self.site(
            (self.n_rows, self.chunks),
            rows,
            out,
            out if values is None else values,
            best,
            count,
            self.n,
            self.row_stride,
            self.chunk,
            aligned=not rows.data_ptr() & 15,
        )


def argmax(x: torch.Tensor, dim: int | None = None, keepdim: bool = False) -> torch.Tensor:
    try:  # one flat tuple: cheaper to build and hash than geometry()'s nested one, on every call
        plan_key = (x.shape, x.stride(), x.dtype, x.device, dim, keepdim)
    except AttributeError:  # not a tensor: prepare names it
        plan_key = None
    plan = _plans.get(plan_key)
    if plan is not None:  # checked before
        shape, sizing = plan
        out = new_output_of(x, shape, torch.int64)
        sizing.launch(x, out)
        return out
    out, rows = prepare(x, dim, keepdim)
    if rows is None:
        return out
    sizing = _Sizing(rows)
    sizing.launch(rows, out)
    if rows.data_ptr() == x.data_ptr():
        _plans.put(plan_key, (tuple(out.shape), sizing))
    return out


def max_of_rows(x: torch.Tensor, dim: int, keepdim: bool = False) -> torch.return_types.max:
    """torch.max(x, dim, keepdim) through the argmax launch, which also stores each winner's element:
    one pass with per-lane winners instead of a reduction per tile. For float x that is contiguous with
    `dim` its last dim (the caller checks)."""
    indices, rows = prepare(x, dim, keepdim)
    values = new_output(indices.shape, x.dtype, x.device)
    if rows is not None:
        _Sizing(rows, values=True).launch(rows, indices, values)
    return torch.return_types.max((values, indices))


def _cost(x, dim=None, keepdim=False):
    return Cost(bytes=nbytes(x), flops=x.numel())


def _with_ties_and_specials(x):
    x[:, 5] = x.max() + 1  # the same maximum twice in every row: the first index wins
    x[:, 9] = x[:, 5]
    x[1, 3] = float("nan")  # NaN beats everything
    x[1, 7] = float("nan")
    x[2] = -float("inf")  # all -inf: index 0
    return x


def _case(name, shape, dim=-1, keepdim=False, transform=None, big=False):
    def make(dtype, device, gen):
        x = randn(shape, dtype, device, gen)
        return ((transform(x) if transform else x),), (
            {"dim": dim, "keepdim": keepdim} if dim is not None else {"keepdim": keepdim}
        )

    return Case(name, make, big=big)


SPEC = register(
    OpSpec(
        name="argmax",
        reference=torch.argmax,
        impl=argmax,
        cases={
            "quick": lambda: [_case("64x300", (64, 300)), _case("4x5000 split rows", (4, 5000))],
            "edge": lambda: [
                _case("ties, NaN, all -inf rows", (4, 20), transform=_with_ties_and_specials),
                _case("rank3 dim1 keepdim", (3, 50, 7), dim=1, keepdim=True),
                _case("transposed dim0", (30, 40), dim=0, transform=lambda x: x.t()),
                _case("flattened (dim None)", (7, 90), dim=None),
                _case("dim None keepdim", (3, 4, 5), dim=None, keepdim=True),
                _case("0-dim", (), dim=None),
                _case("zero rows 0x16", (0, 16)),
                _case("big 2x(2**30+7) dim None", (2, 2**30 + 7), dim=None, big=True),
            ],
            "llm": lambda: [
                _case("greedy decode 1x151936", (1, 151936)),
                _case("greedy decode 64x151936", (64, 151936)),
                _case("prefill 2048x151936", (2048, 151936)),
            ],
        },
        cost=_cost,
        aten=("aten::argmax",),
        aten_impls={"aten::argmax": same_arguments},
        dtypes=(torch.float32, torch.float16, torch.bfloat16),
    )
)
