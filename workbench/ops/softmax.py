"""softmax along any dim (torch.softmax); the last dim is the fast path, others are moved there."""

import torch
import triton
import triton.language as tl

from . import _common, _rows, _split_rows
from ._common import Plans, check_tensor, new_output_as
from ._launch import Site, aligned, launch
from ._library import backward_op
from ._shapes import next_pow2
from .spec import Case, Cost, OpSpec, Unsupported, input_grads, nbytes, randn, register


@triton.jit
def row_logsumexp_and_sum(x_row, n_cols, WITH_SUM: tl.constexpr, BLOCK: tl.constexpr):
    """(log(sum(exp(x))), sum(x) when WITH_SUM else 0) of one row in one online pass: a running max and
    a sum rescaled to it, per lane (cross_entropy's label smoothing needs the plain sum too).

    Lanes that saw only -inf keep a zero sum; a row of only -inf gives -inf - -inf = NaN later, as torch does.
    A NaN stays in its lane's max (`propagate_nan`: the default maximum drops it) and makes the sum NaN;
    a +inf makes it inf - inf = NaN: torch's log-sum-exp of either row is NaN too.
    """
    cols = tl.arange(0, BLOCK)
    m = tl.full([BLOCK], -float("inf"), tl.float32)
    s = tl.zeros([BLOCK], tl.float32)
    if WITH_SUM:
        total = tl.zeros([BLOCK], tl.float32)
    else:  # not an accumulator the NRAM estimate should count for softmax
        total = tl.zeros([1], tl.float32)
    for start in range(0, n_cols, BLOCK):
        mask = start + cols < n_cols
        x = tl.load(x_row + start + cols, mask=mask, other=-float("inf")).to(tl.float32)
        m_new = tl.maximum(m, x, propagate_nan=tl.PropagateNan.ALL)
        s = tl.where(m_new == -float("inf"), 0.0, s * tl.exp(m - m_new) + tl.exp(x - m_new))
        m = m_new
        if WITH_SUM:
            total += tl.where(mask, x, 0.0)
    row_max = tl.max(m, 0)
    return row_max + tl.log(tl.sum(s * tl.exp(m - row_max), 0)), tl.sum(total, 0)


@triton.jit
def row_logsumexp(x_row, n_cols, BLOCK: tl.constexpr):
    """log(sum(exp(x))) of one row in one online pass (see row_logsumexp_and_sum)."""
    lse, _ = row_logsumexp_and_sum(x_row, n_cols, False, BLOCK)
    return lse


@triton.jit
def write_row(x_row, out_row, lo, hi, lse, LOG: tl.constexpr, BLOCK: tl.constexpr):
    """out = exp(x - lse) (LOG: x - lse) for the columns [lo, hi) of one row; lo a multiple of BLOCK."""
    cols = tl.arange(0, BLOCK)
    for start in range(lo, hi, BLOCK):
        mask = start + cols < hi
        x = tl.load(x_row + start + cols, mask=mask, other=-float("inf")).to(tl.float32)
        if LOG:
            y = x - lse
        else:
            y = tl.exp(x - lse)
        tl.store(out_row + start + cols, y.to(out_row.dtype.element_ty), mask=mask)


@triton.jit
def _softmax_kernel(
    x_ptr,
    out_ptr,
    n_cols,
    x_row_stride,
    out_row_stride,
    LOG: tl.constexpr,
    BLOCK: tl.constexpr,
    ONE_TILE: tl.constexpr,
):
    """softmax (LOG=False) or log_softmax (LOG=True) of one row per program."""
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * x_row_stride
    out_row = out_ptr + row * out_row_stride
    cols = tl.arange(0, BLOCK)
    if ONE_TILE:  # the row stays in registers: one read
        mask = cols < n_cols
        x = tl.load(x_row + cols, mask=mask, other=-float("inf")).to(tl.float32)
        shifted = x - tl.max(x, 0)
        e = tl.exp(shifted)
        if LOG:
            y = shifted - tl.log(tl.sum(e, 0))
        else:
            y = e / tl.sum(e, 0)
        tl.store(out_row + cols, y.to(out_ptr.dtype.element_ty), mask=mask)
    else:  # long rows: an online pass for the log-sum-exp, then a second read to write
        write_row(x_row, out_row, 0, n_cols, row_logsumexp(x_row, n_cols, BLOCK), LOG, BLOCK)


@triton.jit
def _chunk_stats_kernel(x_ptr, stats_ptr, n_cols, x_row_stride, chunk, BLOCK: tl.constexpr):
    """Long rows split over programs, pass 1: per (row, chunk) the chunk's max and sum of exp(x - max)."""
    row = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1)
    x_row = x_ptr + row * x_row_stride
    cols = tl.arange(0, BLOCK)
    m = tl.full([BLOCK], -float("inf"), tl.float32)
    s = tl.zeros([BLOCK], tl.float32)
    for start in range(c * chunk, tl.minimum(c * chunk + chunk, n_cols), BLOCK):
        x = tl.load(x_row + start + cols, mask=start + cols < n_cols, other=-float("inf")).to(tl.float32)
        m_new = tl.maximum(m, x, propagate_nan=tl.PropagateNan.ALL)
        s = tl.where(m_new == -float("inf"), 0.0, s * tl.exp(m - m_new) + tl.exp(x - m_new))
        m = m_new
    chunk_max = tl.max(m, 0)
    chunk_sum = tl.sum(tl.where(m == -float("inf"), 0.0, s * tl.exp(m - chunk_max)), 0)  # NaN lanes stay NaN
    stats = stats_ptr + (row * tl.num_programs(1) + c) * 2
    tl.store(stats, chunk_max)
    tl.store(stats + 1, chunk_sum)


@triton.jit
def _chunk_write_kernel(
    x_ptr,
    stats_ptr,
    out_ptr,
    n_cols,
    x_row_stride,
    out_row_stride,
    chunk,
    LOG: tl.constexpr,
    BLOCK: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    """Pass 2: the row's log-sum-exp from its chunks' (max, sum), then this program's chunk written."""
    row = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1)
    splits = tl.num_programs(1)
    k = tl.arange(0, BLOCK_S)
    stats = stats_ptr + row * splits * 2 + 2 * k
    chunk_max = tl.load(stats, mask=k < splits, other=-float("inf"))
    chunk_sum = tl.load(stats + 1, mask=k < splits, other=0.0)
    row_max = tl.max(chunk_max, 0)
    total = tl.sum(tl.where(chunk_max == -float("inf"), 0.0, chunk_sum * tl.exp(chunk_max - row_max)), 0)
    write_row(
        x_ptr + row * x_row_stride,
        out_ptr + row * out_row_stride,
        c * chunk,
        tl.minimum(c * chunk + chunk, n_cols),
        row_max + tl.log(total),
        LOG,
        BLOCK,
    )


def prepare(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate; (output with `dim` moved last, x as rows along `dim` or None when empty).
    The caller hands the output to `finish`. Shared by every softmax launcher (generic, MLU style)."""
    check_tensor("x", x)
    if not -max(x.dim(), 1) <= dim < max(x.dim(), 1):
        raise ValueError(f"dim: expected a dim in [{-max(x.dim(), 1)}, {max(x.dim(), 1)}), got {dim}")
    moved = x if _rows.is_last_dim(x, dim) else x.movedim(dim, -1)
    out = new_output_as(moved)
    return out, (_rows.as_rows(moved) if x.numel() else None)


def finish(out: torch.Tensor, x: torch.Tensor, dim: int) -> torch.Tensor:
    """Move the softmax dim back where x had it."""
    return out if _rows.is_last_dim(x, dim) else out.movedim(-1, dim)


# Geometry of x, dim and log -> (grid, runtime ints, Site) of the one-pass launch over x's last dim,
# where x's rows are x itself: attention and sampling repeat one geometry per step.
_plans = Plans()


def softmax_rows(x: torch.Tensor, dim: int, log: bool) -> torch.Tensor:
    """softmax or log_softmax of `x` along `dim` (the generic launcher both ops use)."""
    try:  # one flat tuple: cheaper to build and hash than geometry()'s nested one, on every call
        plan_key = (x.shape, x.stride(), x.dtype, x.device, dim, log)
    except AttributeError:  # not a tensor: prepare names it
        plan_key = None
    plan = _plans.get(plan_key)
    if plan is not None:  # checked before: x is contiguous
        grid, ints, site = plan
        out = torch.empty_like(x)
        if _common._poison:
            _common._poisoned(out)
        site(grid, x, out, *ints, aligned=not x.data_ptr() & 15)
        return out
    out, rows = prepare(x, dim)
    if rows is not None:
        n_rows, n = rows.shape
        block, one_tile = _rows.tile(n)
        splits, chunk = (1, n) if one_tile else _split_rows.chunking(n_rows, n, block)
        if splits == 1:
            grid, ints = (n_rows,), (n, rows.stride(0), n)
            site = Site(
                _softmax_kernel, LOG=log, BLOCK=block, ONE_TILE=one_tile, num_warps=_rows.row_warps(block)
            )
            site(grid, rows, out, *ints, aligned=aligned(rows))
            if rows.data_ptr() == x.data_ptr() and x.is_contiguous() and _rows.is_last_dim(x, dim):
                _plans.put(plan_key, (grid, ints, site))
        else:  # too few long rows to fill the device: each row split over `splits` programs, two passes
            # in half-width tiles (tune_sweep.py on an H200, 64x151936 bf16: 25.5 us vs 28.1 us at 8192)
            block //= 2
            stats = torch.empty((n_rows, splits, 2), dtype=torch.float32, device=x.device)
            warps = 16
            launch(
                _chunk_stats_kernel,
                (n_rows, splits),
                rows,
                stats,
                n,
                rows.stride(0),
                chunk,
                BLOCK=block,
                num_warps=warps,
            )
            launch(
                _chunk_write_kernel,
                (n_rows, splits),
                rows,
                stats,
                out,
                n,
                rows.stride(0),
                n,
                chunk,
                LOG=log,
                BLOCK=block,
                BLOCK_S=next_pow2(splits),
                num_warps=warps,
            )
    return finish(out, x, dim)


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return softmax_rows(x, dim, log=False)


@triton.jit
def _backward_kernel(
    y_ptr, dy_ptr, dx_ptr, n_rows, n_cols, rows_per_program, LOG: tl.constexpr, BLOCK: tl.constexpr
):
    """From the saved output y: softmax dx = y * (dy - sum(dy * y)); log_softmax dx = dy - exp(y) * sum(dy).
    Contiguous rows; each program takes a run of rows, a pass for the sum and a pass to write."""
    cols = tl.arange(0, BLOCK)
    first = tl.program_id(0).to(tl.int64) * rows_per_program
    for i in range(tl.minimum(rows_per_program, n_rows - first)):
        base = (first + i) * n_cols
        acc = tl.zeros([BLOCK], tl.float32)
        for start in range(0, n_cols, BLOCK):
            mask = start + cols < n_cols
            dy = tl.load(dy_ptr + base + start + cols, mask=mask, other=0.0).to(tl.float32)
            if LOG:
                acc += dy
            else:
                acc += dy * tl.load(y_ptr + base + start + cols, mask=mask, other=0.0).to(tl.float32)
        total = tl.sum(acc, 0)
        for start in range(0, n_cols, BLOCK):
            mask = start + cols < n_cols
            y = tl.load(y_ptr + base + start + cols, mask=mask, other=0.0).to(tl.float32)
            dy = tl.load(dy_ptr + base + start + cols, mask=mask, other=0.0).to(tl.float32)
            dx = dy - tl.exp(y) * total if LOG else y * (dy - total)
            tl.store(dx_ptr + base + start + cols, dx.to(dx_ptr.dtype.element_ty), mask=mask)


def _backward_fake(dy, y, dim, log):
    if _rows.is_last_dim(y, dim):
        return y.new_empty(y.shape)
    moved = y.movedim(dim, -1)
    return moved.new_empty(moved.shape).movedim(-1, dim)


@backward_op("softmax_backward", _backward_fake)
def softmax_backward(dy: torch.Tensor, y: torch.Tensor, dim: int, log: bool) -> torch.Tensor:
    """d loss / d x of softmax (log=False) or log_softmax (log=True) along `dim`, from its output y."""
    if y.numel() == 0:
        return torch.empty_like(y)
    last = _rows.is_last_dim(y, dim)
    y_rows = (y if last else y.movedim(dim, -1)).contiguous()
    dy_rows = (dy if last else dy.movedim(dim, -1)).contiguous()
    dx = torch.empty_like(y_rows)
    n = y_rows.shape[-1] if y.dim() else 1
    n_rows = y_rows.numel() // n
    el = y.element_size()
    # two passes over the row: an fp32 sum and the loads of y and dy in each
    runs = _rows.row_runs(n_rows, n, 4 + 4 * el, 4 + 4 * el, max_block=8192)
    launch(
        _backward_kernel,
        (runs.programs,),
        y_rows,
        dy_rows,
        dx,
        n_rows,
        n,
        runs.per_program,
        LOG=log,
        BLOCK=runs.block,
        num_warps=runs.num_warps,
    )
    return dx if last else dx.movedim(-1, dim)


def setup_context(ctx, inputs, output):
    """Shared by softmax and log_softmax: the backward needs only the output."""
    ctx.save_for_backward(output)
    ctx.dim = inputs[1]


def backward(log: bool):
    def run(ctx, dy):
        (y,) = ctx.saved_tensors
        return input_grads(ctx, softmax_backward(dy, y, ctx.dim, log), None)

    return run


def aten_adapter(impl, self, dim, half_to_float):
    """aten::_softmax / aten::_log_softmax(self, dim, half_to_float): the kernel keeps the input dtype."""
    if half_to_float:
        raise Unsupported("half_to_float=True (fp16 in, fp32 out) is not implemented")
    return impl(self, dim)


def _cost(x, dim=-1):
    return Cost(bytes=2 * nbytes(x), flops=5 * x.numel())


def _masked(x):
    x[:, 30:] = -float("inf")  # an attention mask
    x[3] = -float("inf")  # a row with nothing to attend to: torch gives NaN
    return x


def _masked_long(x):
    x[0] = -float("inf")  # torch gives NaN
    x[1, 20000:] = -float("inf")  # a whole chunk of a row split over programs sees only -inf
    return x


def _case(name, shape, dim=-1, transform=None, big=False, scale=1.0):
    def make(dtype, device, gen):
        x = randn(shape, dtype, device, gen, scale=scale)
        return ((transform(x) if transform else x),), {"dim": dim}

    return Case(name, make, big=big)


def _cases():
    return {
        "quick": lambda: [_case("64x300", (64, 300)), _case("8x1000 dim0", (8, 1000), dim=0)],
        "edge": lambda: [
            _case("rank3 4x5x33 dim1", (4, 5, 33), dim=1),
            _case("rank4 2x3x4x70 dim-1", (2, 3, 4, 70)),
            _case("transposed 40x30", (30, 40), transform=lambda x: x.t()),
            _case("long row 3x40000", (3, 40000), scale=4.0),
            _case("long rows -inf: one row, one chunk 2x40000", (2, 40000), transform=_masked_long),
            _case("masked rows (-inf), one fully masked", (5, 40), transform=_masked),
            _case("single column 7x1", (7, 1)),
            _case("zero-size 0x16", (0, 16)),
            _case("big 262146x8193", (262146, 8193), big=True),
        ],
        "llm": lambda: [
            _case("attn decode 32x2048", (32, 2048)),
            _case("attn prefill 32x2048x2048", (32, 2048, 2048)),
            _case("vocab 64x151936", (64, 151936)),
        ],
    }


SPEC = register(
    OpSpec(
        name="softmax",
        reference=lambda x, dim=-1: torch.softmax(x, dim),  # the custom op leaves out a default dim
        impl=softmax,
        cases=_cases(),
        cost=_cost,
        aten=("aten::_softmax",),
        aten_impls={"aten::_softmax": aten_adapter},
        backward=backward(log=False),
        setup_context=setup_context,
    )
)
