"""cross_entropy with class-index targets (torch.nn.functional.cross_entropy): one pass per row.

Each row's log-sum-exp is computed online in fp32 by softmax's pass (`row_logsumexp_and_sum`, which
also sums the row for label smoothing; vocabularies up to 151936 never leave fp32), the target logit
is read directly, and a second small kernel reduces the per-row losses (mean over rows whose target
is not ignore_index, or sum). Supports (N, C) / (C,) / (N, C, d1, ...) inputs, ignore_index and
label_smoothing; no class weights. A target outside [0, C) that is not ignore_index raises IndexError
as in torch (`_index_check`; with the check off its loss is NaN). NaN and +inf logits make their row's
loss NaN, as torch's (unless the row's target is ignore_index). One row per program, or, in the
persistent launch style (ops.mlu.persistent), programs that fill the cores walking the rows.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import _index_check, _rows
from ._common import check_same_device, check_tensor, new_output
from ._launch import launch
from ._library import backward_op
from ._shapes import next_pow2
from .mlu.persistent import NUM_WARPS, persistent, programs, tile_elems
from .softmax import row_logsumexp_and_sum
from .spec import Case, Cost, OpSpec, Unsupported, input_grads, nbytes, randn, register

REDUCTIONS = ("mean", "sum", "none")


@triton.jit
def row_loss(x_row, t_ptr, row, n_cols, ignore_index, smoothing, SMOOTH: tl.constexpr, BLOCK: tl.constexpr):
    """The loss of one row (0 where its target is ignore_index, NaN where the target is out of range).

    Shared by the generic kernel and the MLU-style variant."""
    lse, total = row_logsumexp_and_sum(x_row, n_cols, SMOOTH, BLOCK)
    target = tl.load(t_ptr + row).to(tl.int64)
    ignored = target == ignore_index
    in_range = (target >= 0) & (target < n_cols)
    x_t = tl.load(x_row + target, mask=in_range & ~ignored, other=0.0).to(tl.float32)
    loss = lse - x_t
    if SMOOTH:  # (1 - eps) * nll + eps * mean over classes of -log p
        loss = (1.0 - smoothing) * loss + smoothing * (lse - total / n_cols)
    loss = tl.where(in_range | ignored, loss, float("nan"))
    return tl.where(ignored, 0.0, loss)


@triton.jit
def _row_loss_kernel(
    x_ptr,
    t_ptr,
    loss_ptr,
    flag_ptr,
    n_cols,
    x_row_stride,
    ignore_index,
    smoothing,
    SMOOTH: tl.constexpr,
    CHECK: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    loss = row_loss(x_ptr + row * x_row_stride, t_ptr, row, n_cols, ignore_index, smoothing, SMOOTH, BLOCK)
    tl.store(loss_ptr + row, loss.to(loss_ptr.dtype.element_ty))
    if CHECK:  # the target row_loss has just read (a cached scalar load)
        target = tl.load(t_ptr + row)
        if (target != ignore_index) & ((target < 0) | (target >= n_cols)):
            tl.store(flag_ptr, 1)


@triton.jit
def _reduce_kernel(loss_ptr, t_ptr, out_ptr, n_rows, ignore_index, MEAN: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK], tl.float32)
    count = tl.zeros([BLOCK], tl.float32)
    for start in range(0, n_rows, BLOCK):
        mask = start + offs < n_rows
        acc += tl.load(loss_ptr + start + offs, mask=mask, other=0.0)
        t = tl.load(t_ptr + start + offs, mask=mask, other=ignore_index)
        count += tl.where(mask & (t != ignore_index), 1.0, 0.0)
    result = tl.sum(acc, 0)
    if MEAN:
        result = result / tl.sum(count, 0)  # every row ignored: 0 / 0 = NaN, as torch gives
    tl.store(out_ptr, result.to(out_ptr.dtype.element_ty))


def prepare(
    input: torch.Tensor, target: torch.Tensor, ignore_index: int, reduction: str, label_smoothing: float
):
    """Validate; (output, logits as rows, targets as one row, per-row losses). rows is None when there is
    nothing to compute (the output is then final). Shared by every cross_entropy launcher (generic, MLU
    style), which then write the losses and call `finish`."""
    check_tensor("input", input)
    check_tensor("target", target, dtypes=(torch.int64,))
    check_same_device(input=input, target=target)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: expected one of {REDUCTIONS}, got {reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing: expected a value in [0, 1], got {label_smoothing}")
    if input.dim() == 0:
        raise ValueError("input: expected (C,), (N, C) or (N, C, d1, ...), got a 0-dim tensor")
    expected = input.shape[:1] + input.shape[2:] if input.dim() > 1 else torch.Size([])
    if target.shape != expected:
        raise ValueError(
            f"target: expected shape {tuple(expected)} for input {tuple(input.shape)}, "
            f"got {tuple(target.shape)}"
        )
    n_classes = input.shape[1] if input.dim() > 1 else input.shape[0]
    out = new_output(target.shape if reduction == "none" else (), input.dtype, input.device)
    n_rows = target.numel()
    if n_rows == 0 or n_classes == 0:
        if n_rows == 0 and reduction != "none":
            out.fill_(float("nan") if reduction == "mean" else 0.0)
        elif n_rows:  # no classes: torch's log-sum-exp of nothing is -inf; leave it to the native op
            raise ValueError(f"input: expected at least one class, got shape {tuple(input.shape)}")
        return out, None, None, None
    rows = _rows.as_rows(input.movedim(1, -1) if input.dim() > 1 else input)
    targets = target.reshape(-1).contiguous()
    losses = (
        out.view(-1) if reduction == "none" else torch.empty(n_rows, dtype=torch.float32, device=input.device)
    )
    return out, rows, targets, losses


@triton.jit
def _row_loss_persistent_kernel(
    x_ptr,
    t_ptr,
    loss_ptr,
    flag_ptr,
    n_cols,
    x_row_stride,
    ignore_index,
    smoothing,
    n_rows,
    SMOOTH: tl.constexpr,
    CHECK: tl.constexpr,
    BLOCK: tl.constexpr,
):
    # The persistent style (ops.mlu.persistent): programs that fill the cores walk the rows.
    for row in range(tl.program_id(0).to(tl.int64), n_rows, tl.num_programs(0)):
        loss = row_loss(
            x_ptr + row * x_row_stride, t_ptr, row, n_cols, ignore_index, smoothing, SMOOTH, BLOCK
        )
        tl.store(loss_ptr + row, loss.to(loss_ptr.dtype.element_ty))
        if CHECK:
            target = tl.load(t_ptr + row)
            if (target != ignore_index) & ((target < 0) | (target >= n_cols)):
                tl.store(flag_ptr, 1)


def finish(
    out: torch.Tensor, losses: torch.Tensor, targets: torch.Tensor, ignore_index: int, reduction: str
) -> torch.Tensor:
    """Reduce the per-row losses into `out` (one program: a handful of tasks, within the MLU rules too)."""
    if reduction != "none":
        launch(
            _reduce_kernel,
            (1,),
            losses,
            targets,
            out,
            losses.numel(),
            int(ignore_index),
            MEAN=reduction == "mean",
            BLOCK=min(4096, next_pow2(losses.numel())),
            num_warps=4,
        )
    return out


def cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Mean/sum/per-element negative log-likelihood of `target` classes under softmax(input) over dim 1."""
    out, rows, targets, losses = prepare(input, target, ignore_index, reduction, label_smoothing)
    if rows is None:
        return out
    n_rows, n_classes = rows.shape
    if persistent():
        # live tiles: the running max, rescaled sum and plain sum (fp32), and the loaded logits
        block = min(tile_elems(12 + rows.element_size()), next_pow2(n_classes))
        kernel, grid, extra, warps = _row_loss_persistent_kernel, (programs(n_rows),), (n_rows,), NUM_WARPS
    else:
        block = min(4096, next_pow2(n_classes))
        kernel, grid, extra, warps = _row_loss_kernel, (n_rows,), (), _rows.row_warps(block)
    check, flag = _index_check.checking(targets), _index_check.flag(targets.device)
    launch(
        kernel,
        grid,
        rows,
        targets,
        losses,
        flag,
        n_classes,
        rows.stride(0),
        int(ignore_index),
        float(label_smoothing),
        *extra,
        SMOOTH=label_smoothing > 0,
        CHECK=check,
        BLOCK=block,
        num_warps=warps,
    )
    finish(out, losses, targets, ignore_index, reduction)
    if check:
        held = _index_check.held_weakly(targets)

        def message() -> str | None:
            bad = _index_check.first_outside(held(), n_classes, allowed=ignore_index)
            if bad is None:
                return None
            return (
                f"cross_entropy: Target {bad} is out of bounds: expected a class in [0, {n_classes}) or "
                f"ignore_index {ignore_index}"
            )

        _index_check.raise_if_set(targets.device, message, "cross_entropy")
    return out


@triton.jit
def _backward_kernel(
    x_ptr,
    t_ptr,
    g_ptr,
    dx_ptr,
    n_rows,
    n_cols,
    x_row_stride,
    g_stride,
    ignore_index,
    smoothing,
    rows_per_program,
    SMOOTH: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """dlogits of one row = g * (softmax(x) - (1 - eps) * onehot(target) - eps / C), zero for an ignored
    row, NaN for an out-of-range target (its loss is NaN). g: the row's share of the loss gradient.
    Each program takes a run of rows, so that the grid stays within the launch policy."""
    cols = tl.arange(0, BLOCK)
    first = tl.program_id(0).to(tl.int64) * rows_per_program
    for i in range(tl.minimum(rows_per_program, n_rows - first)):
        row = first + i
        x_row = x_ptr + row * x_row_stride
        lse, _ = row_logsumexp_and_sum(x_row, n_cols, False, BLOCK)
        target = tl.load(t_ptr + row).to(tl.int64)
        ignored = target == ignore_index
        in_range = (target >= 0) & (target < n_cols)
        g = tl.load(g_ptr + row * g_stride).to(tl.float32)
        g = tl.where(ignored, 0.0, tl.where(in_range, g, float("nan")))
        for start in range(0, n_cols, BLOCK):
            mask = start + cols < n_cols
            x = tl.load(x_row + start + cols, mask=mask, other=0.0).to(tl.float32)
            d = tl.exp(x - lse) - tl.where(start + cols == target, 1.0 - smoothing, 0.0)
            if SMOOTH:
                d = d - smoothing / n_cols
            tl.store(dx_ptr + row * n_cols + start + cols, (g * d).to(dx_ptr.dtype.element_ty), mask=mask)


@backward_op(
    "cross_entropy_backward",
    lambda grad, input, *_: (
        input.movedim(1, -1).new_empty(input.movedim(1, -1).shape).movedim(-1, 1)
        if input.dim() > 1
        else input.new_empty(input.shape)
    ),
)
def cross_entropy_backward(
    grad: torch.Tensor,
    input: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
) -> torch.Tensor:
    """d loss / d input for the loss of `cross_entropy` (grad: the loss's gradient)."""
    moved = input.movedim(1, -1) if input.dim() > 1 else input
    rows = _rows.as_rows(moved)
    targets = target.reshape(-1).contiguous()
    n_classes = input.shape[1 if input.dim() > 1 else 0]
    n_rows = targets.numel()
    dx = torch.empty((n_rows, n_classes), dtype=input.dtype, device=input.device)
    if dx.numel() == 0:
        return dx.view(moved.shape).movedim(-1, 1) if input.dim() > 1 else dx.view(input.shape)
    if reduction == "none":
        g, g_stride = grad.reshape(-1).float().contiguous(), 1
    else:  # every row's share: the loss gradient, over the count of rows that are not ignored for "mean"
        g = grad.float().reshape(1)
        if reduction == "mean":
            g = g / (targets != ignore_index).sum()
        g_stride = 0
    el = input.element_size()
    # the online log-sum-exp (fp32 max, sum and plain sum), then a pass that loads the row to write dx
    runs = _rows.row_runs(n_rows, n_classes, 12 + 2 * el, 12 + 2 * el, max_block=4096)
    launch(
        _backward_kernel,
        (runs.programs,),
        rows,
        targets,
        g,
        dx,
        n_rows,
        n_classes,
        rows.stride(0),
        g_stride,
        int(ignore_index),
        float(label_smoothing),
        runs.per_program,
        SMOOTH=label_smoothing > 0,
        BLOCK=runs.block,
        num_warps=runs.num_warps,
    )
    return dx.view(moved.shape).movedim(-1, 1) if input.dim() > 1 else dx.view(input.shape)


def _setup_context(ctx, inputs, output):
    input, target, ctx.ignore_index, ctx.reduction, ctx.label_smoothing = inputs
    ctx.save_for_backward(input, target)


def _backward(ctx, grad):
    input, target = ctx.saved_tensors
    dx = cross_entropy_backward(grad, input, target, ctx.ignore_index, ctx.reduction, ctx.label_smoothing)
    return input_grads(ctx, dx, None, None, None, None)


def _aten_cross_entropy(impl, self, target, weight=None, reduction=1, ignore_index=-100, label_smoothing=0.0):
    """aten::cross_entropy_loss(self, target, weight, reduction (0 none, 1 mean, 2 sum), ignore_index,
    label_smoothing); class weights are not implemented."""
    if weight is not None:
        raise Unsupported("class weights are not implemented")
    return impl(self, target, ignore_index, ("none", "mean", "sum")[reduction], label_smoothing)


def _reference(input, target, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    return torch.nn.functional.cross_entropy(
        input, target, ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing
    )


def _cost(input, target, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    return Cost(bytes=nbytes(input, target) + target.numel() * input.element_size(), flops=4 * input.numel())


def _case(
    name,
    shape,
    reduction="mean",
    ignored=0.0,
    smoothing=0.0,
    transform=None,
    ignore_index=-100,
    scale=2.0,
    big=False,
):
    """Logits of `shape` (class dim 1, or 0 for 1-D); a fraction `ignored` of targets set to ignore_index."""

    def make(dtype, device, gen):
        x = randn(shape, dtype, device, gen, scale=scale)
        n_classes = shape[1] if len(shape) > 1 else shape[0]
        t_shape = shape[:1] + shape[2:] if len(shape) > 1 else ()
        t = torch.randint(0, n_classes, t_shape, device=device, generator=gen)
        if ignored:
            t[torch.rand(t_shape, device=device, generator=gen) < ignored] = ignore_index
        kwargs = {"reduction": reduction, "ignore_index": ignore_index}
        if smoothing:
            kwargs["label_smoothing"] = smoothing
        return ((transform(x) if transform else x), t), kwargs

    return Case(name, make, big=big)


SPEC = register(
    OpSpec(
        name="cross_entropy",
        reference=_reference,
        impl=cross_entropy,
        cases={
            "quick": lambda: [
                _case("8x100", (8, 100)),
                _case("5x1000 sum, ignore", (5, 1000), "sum", ignored=0.4),
            ],
            "edge": lambda: [
                _case("none, ignore 0.3", (16, 50), "none", ignored=0.3),
                _case("label smoothing 0.1, ignore", (9, 70), ignored=0.3, smoothing=0.1),
                _case("rank3 (N, C, d) 2x7x5", (2, 7, 5), "none"),
                _case("1-D logits", (33,)),
                _case("transposed logits", (40, 12), transform=lambda x: x.t().contiguous().t()),
                _case("long rows 3x20000", (3, 20000), scale=4.0),
                _case("all ignored: mean is NaN", (4, 10), ignored=1.0),
                _case("ignore_index 3", (12, 6), "sum", ignored=0.3, ignore_index=3),
                _case("zero rows", (0, 10), "sum"),
                _case("big 16385x131072 none", (16385, 131072), "none", big=True),
            ],
            "llm": lambda: [
                _case("prefill 2048x151936 (ignore 5%)", (2048, 151936), ignored=0.05),
                _case("batch 64x151936 none", (64, 151936), "none"),
            ],
        },
        cost=_cost,
        aten=("aten::cross_entropy_loss",),
        aten_impls={"aten::cross_entropy_loss": _aten_cross_entropy},
        backward=_backward,
        setup_context=_setup_context,
    )
)
