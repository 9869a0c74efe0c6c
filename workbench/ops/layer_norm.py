"""layer_norm over trailing dims: `(x - mean) / sqrt(var + eps) * weight + bias` (F.layer_norm).

Rows packed into 2-D tiles, or streamed when long: one tile per program, or, in the persistent launch
style (ops.mlu.persistent), programs that fill the cores walking the tiles.
"""

import math

import torch
import triton
import triton.language as tl

from . import _rows
from ._common import check_same_device, check_tensor, new_output_as
from ._launch import launch
from ._library import backward_op
from ._norm_cases import norm_cases
from .mlu.persistent import NUM_WARPS, persistent, row_tiles
from .spec import Cost, OpSpec, input_grads, nbytes, register


@triton.jit
def layer_norm_long_row(
    x_row,
    w_ptr,
    b_ptr,
    out_row,
    n_cols,
    eps,
    HAS_WEIGHT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """One row too long for one tile: mean, then variance of centred values (no cancellation), then write.

    Shared by the generic kernel and the MLU-style variant."""
    cols = tl.arange(0, BLOCK)
    total = tl.zeros([BLOCK], tl.float32)
    for start in range(0, n_cols, BLOCK):
        total += tl.load(x_row + start + cols, mask=start + cols < n_cols, other=0.0).to(tl.float32)
    mean = tl.sum(total, 0) / n_cols
    sq = tl.zeros([BLOCK], tl.float32)
    for start in range(0, n_cols, BLOCK):
        mask = start + cols < n_cols
        x = tl.load(x_row + start + cols, mask=mask, other=0.0).to(tl.float32)
        xc = tl.where(mask, x - mean, 0.0)
        sq += xc * xc
    rstd = tl.math.rsqrt(tl.sum(sq, 0) / n_cols + eps)
    for start in range(0, n_cols, BLOCK):
        mask = start + cols < n_cols
        y = (tl.load(x_row + start + cols, mask=mask, other=0.0).to(tl.float32) - mean) * rstd
        if HAS_WEIGHT:
            y = y * tl.load(w_ptr + start + cols, mask=mask, other=0.0).to(tl.float32)
        if HAS_BIAS:
            y = y + tl.load(b_ptr + start + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(out_row + start + cols, y.to(out_row.dtype.element_ty), mask=mask)


@triton.jit
def _layer_norm_kernel(
    x_ptr,
    w_ptr,
    b_ptr,
    out_ptr,
    n_rows,
    n_cols,
    x_row_stride,
    eps,
    HAS_WEIGHT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK: tl.constexpr,
    ONE_TILE: tl.constexpr,
):
    cols = tl.arange(0, BLOCK)
    if ONE_TILE:  # BLOCK_R whole rows per program
        rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
        col_ok = cols < n_cols
        mask = (rows < n_rows)[:, None] & col_ok[None, :]
        x = tl.load(x_ptr + rows[:, None] * x_row_stride + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        mean = tl.sum(x, 1) / n_cols
        xc = tl.where(mask, x - mean[:, None], 0.0)
        y = xc * tl.math.rsqrt(tl.sum(xc * xc, 1) / n_cols + eps)[:, None]
        if HAS_WEIGHT:
            y = y * tl.load(w_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
        if HAS_BIAS:
            y = y + tl.load(b_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
        tl.store(out_ptr + rows[:, None] * n_cols + cols[None, :], y.to(out_ptr.dtype.element_ty), mask=mask)
    else:  # one long row per program
        row = tl.program_id(0).to(tl.int64)
        layer_norm_long_row(
            x_ptr + row * x_row_stride,
            w_ptr,
            b_ptr,
            out_ptr + row * n_cols,
            n_cols,
            eps,
            HAS_WEIGHT,
            HAS_BIAS,
            BLOCK,
        )


@triton.jit
def _layer_norm_persistent_kernel(
    x_ptr,
    w_ptr,
    b_ptr,
    out_ptr,
    n_rows,
    n_cols,
    x_row_stride,
    eps,
    HAS_WEIGHT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK: tl.constexpr,
    ONE_TILE: tl.constexpr,
):
    # The persistent style: programs that fill the cores walk packed row tiles (or long rows).
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    cols = tl.arange(0, BLOCK)
    if ONE_TILE:
        col_ok = cols < n_cols
        if HAS_WEIGHT:  # loaded once per program, reused for every row it handles
            w = tl.load(w_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
        if HAS_BIAS:
            b = tl.load(b_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
        for first in range(pid.to(tl.int64) * BLOCK_R, n_rows, nprog * BLOCK_R):
            rows = first + tl.arange(0, BLOCK_R)
            mask = (rows < n_rows)[:, None] & col_ok[None, :]
            x_ptrs = x_ptr + rows[:, None] * x_row_stride + cols[None, :]
            x = tl.load(x_ptrs, mask=mask, other=0.0).to(tl.float32)
            mean = tl.sum(x, 1) / n_cols
            xc = tl.where(mask, x - mean[:, None], 0.0)
            y = xc * tl.math.rsqrt(tl.sum(xc * xc, 1) / n_cols + eps)[:, None]
            if HAS_WEIGHT:
                y = y * w[None, :]
            if HAS_BIAS:
                y = y + b[None, :]
            out_ptrs = out_ptr + rows[:, None] * n_cols + cols[None, :]
            tl.store(out_ptrs, y.to(out_ptr.dtype.element_ty), mask=mask)
    else:
        for row in range(pid.to(tl.int64), n_rows, nprog):
            layer_norm_long_row(
                x_ptr + row * x_row_stride,
                w_ptr,
                b_ptr,
                out_ptr + row * n_cols,
                n_cols,
                eps,
                HAS_WEIGHT,
                HAS_BIAS,
                BLOCK,
            )


def prepare(
    x: torch.Tensor, normalized_shape, weight: torch.Tensor | None, bias: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate; (output, x as rows of the normalized size, or None when empty). Shared by every
    layer_norm launcher (generic, MLU style)."""
    check_tensor("x", x)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if not shape or len(shape) > x.dim() or x.shape[x.dim() - len(shape) :] != shape:
        raise ValueError(f"normalized_shape: expected trailing dims of x {tuple(x.shape)}, got {shape}")
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None:
            check_tensor(name, p)
            if p.device != x.device:
                check_same_device(x=x, **{name: p})
            if p.shape != shape:
                raise ValueError(f"{name}: expected shape {shape} (normalized_shape), got {tuple(p.shape)}")
    out = new_output_as(x)  # torch keeps x's dtype, even with fp32 params
    if x.numel() == 0:
        return out, None
    if len(shape) > 1:  # the normalized dims as one
        x = x.reshape(*x.shape[: x.dim() - len(shape)], math.prod(shape))
    return out, _rows.as_rows(x)


def layer_norm(
    x: torch.Tensor,
    normalized_shape: list[int],
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    out, rows = prepare(x, normalized_shape, weight, bias)
    if rows is None:
        return out
    n_rows, n = rows.shape
    if persistent():
        params = sum(p.element_size() for p in (weight, bias) if p is not None)
        # live tiles: x, weight and bias rows; streamed: two fp32 accumulators, three x load sites, params
        el = rows.element_size()
        t = row_tiles(n_rows, n, one_tile_bytes=el + params, streamed_bytes=8 + 3 * el + params)
        kernel, warps = _layer_norm_persistent_kernel, NUM_WARPS
        programs, block_r, block, one_tile = t.programs, t.block_r, t.block_c, t.one_tile
    else:
        kernel = _layer_norm_kernel
        programs, block_r, block, one_tile, warps = _rows.packed_launch(n_rows, n)
    launch(
        kernel,
        (programs,),
        rows,
        weight if weight is not None else rows,
        bias if bias is not None else rows,
        out,
        n_rows,
        n,
        rows.stride(0),
        float(eps),
        HAS_WEIGHT=weight is not None,
        HAS_BIAS=bias is not None,
        BLOCK_R=block_r,
        BLOCK=block,
        ONE_TILE=one_tile,
        num_warps=warps,
    )
    return out


# Backward programs each own a run of rows and keep fp32 partial sums of dweight and dbias.
BACKWARD_PROGRAMS = 1024


@triton.jit
def _layer_norm_backward_kernel(
    x_ptr,
    w_ptr,
    dy_ptr,
    dx_ptr,
    dw_ptr,
    db_ptr,
    n_rows,
    n_cols,
    rows_per_program,
    eps,
    HAS_WEIGHT: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * w, xhat = (x - mean) * rstd (statistics
    recomputed); this program's partial dweight (sum of dy * xhat) and dbias (sum of dy) rows, fp32, zeroed
    by the caller. Per row: a pass for the statistics, one for the sums of g, one to write."""
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    first = pid.to(tl.int64) * rows_per_program
    dw_row, db_row = dw_ptr + pid.to(tl.int64) * n_cols, db_ptr + pid.to(tl.int64) * n_cols
    for i in range(tl.minimum(rows_per_program, n_rows - first)):
        offset = (first + i) * n_cols
        acc = tl.zeros([BLOCK], tl.float32)
        for start in range(0, n_cols, BLOCK):
            acc += tl.load(x_ptr + offset + start + cols, mask=start + cols < n_cols, other=0.0).to(
                tl.float32
            )
        mean = tl.sum(acc, 0) / n_cols
        acc = tl.zeros([BLOCK], tl.float32)
        for start in range(0, n_cols, BLOCK):
            mask = start + cols < n_cols
            d = tl.load(x_ptr + offset + start + cols, mask=mask, other=0.0).to(tl.float32) - mean
            acc += tl.where(mask, d * d, 0.0)
        rstd = tl.math.rsqrt(tl.sum(acc, 0) / n_cols + eps)
        g_sum = tl.zeros([BLOCK], tl.float32)
        gx_sum = tl.zeros([BLOCK], tl.float32)
        for start in range(0, n_cols, BLOCK):
            mask = start + cols < n_cols
            xhat = (tl.load(x_ptr + offset + start + cols, mask=mask, other=0.0).to(tl.float32) - mean) * rstd
            g = tl.load(dy_ptr + offset + start + cols, mask=mask, other=0.0).to(tl.float32)
            if HAS_WEIGHT:
                g = g * tl.load(w_ptr + start + cols, mask=mask, other=0.0).to(tl.float32)
            g_sum += g
            gx_sum += tl.where(mask, g * xhat, 0.0)
        g_mean = tl.sum(g_sum, 0) / n_cols
        gx_mean = tl.sum(gx_sum, 0) / n_cols
        for start in range(0, n_cols, BLOCK):
            mask = start + cols < n_cols
            xhat = (tl.load(x_ptr + offset + start + cols, mask=mask, other=0.0).to(tl.float32) - mean) * rstd
            dy = tl.load(dy_ptr + offset + start + cols, mask=mask, other=0.0).to(tl.float32)
            g = dy
            if HAS_WEIGHT:
                g = dy * tl.load(w_ptr + start + cols, mask=mask, other=0.0).to(tl.float32)
            tl.store(
                dx_ptr + offset + start + cols,
                (rstd * (g - g_mean - xhat * gx_mean)).to(dx_ptr.dtype.element_ty),
                mask=mask,
            )
            tl.store(dw_row + start + cols, tl.load(dw_row + start + cols, mask=mask) + dy * xhat, mask=mask)
            tl.store(db_row + start + cols, tl.load(db_row + start + cols, mask=mask) + dy, mask=mask)


def _backward_fake(dy, x, normalized_shape, weight, bias, eps):
    return (
        x.new_empty(x.shape),
        weight.new_empty(weight.shape) if weight is not None else x.new_empty(0),
        bias.new_empty(bias.shape) if bias is not None else x.new_empty(0),
    )


@backward_op("layer_norm_backward", _backward_fake)
def layer_norm_backward(
    dy: torch.Tensor,
    x: torch.Tensor,
    normalized_shape: list[int],
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dweight, dbias) of layer_norm (dweight / dbias empty where the op had none): one launch for dx
    and per-program partial sums, then their reduction over programs."""
    n = math.prod(normalized_shape)
    rows, dy_rows = x.reshape(-1, n).contiguous(), dy.reshape(-1, n).contiguous()
    n_rows = rows.shape[0] if n else 0
    dx = torch.empty_like(rows)
    el, w_el = x.element_size(), weight.element_size() if weight is not None else 0
    # every pass streams the row: the fp32 sums and the passes' loads (x, dy, w; the partial dweight/dbias)
    per_elem = 16 + 3 * (2 * el + w_el) + 8
    runs = _rows.row_runs(n_rows, n, per_elem, per_elem, max_block=4096, max_programs=BACKWARD_PROGRAMS)
    programs = runs.programs if n_rows and n else 0
    partial = torch.zeros((2, programs, n), dtype=torch.float32, device=x.device)
    if programs:
        launch(
            _layer_norm_backward_kernel,
            (programs,),
            rows,
            weight if weight is not None else rows,
            dy_rows,
            dx,
            partial[0],
            partial[1],
            n_rows,
            n,
            runs.per_program,
            float(eps),
            HAS_WEIGHT=weight is not None,
            BLOCK=runs.block,
            num_warps=runs.num_warps,
        )
    # Separate sums and placeholders: a custom operator's outputs may not alias one another.
    dw = partial[0].sum(0).view(weight.shape).to(weight.dtype) if weight is not None else x.new_empty(0)
    db = partial[1].sum(0).view(bias.shape).to(bias.dtype) if bias is not None else x.new_empty(0)
    return dx.view(x.shape), dw, db


def _setup_context(ctx, inputs, output):
    x, ctx.normalized_shape, weight, bias, ctx.eps = inputs
    ctx.save_for_backward(x, weight, bias)


def _backward(ctx, dy):
    x, weight, bias = ctx.saved_tensors
    dx, dw, db = layer_norm_backward(dy, x, list(ctx.normalized_shape), weight, bias, ctx.eps)
    return input_grads(
        ctx, dx, None, dw if weight is not None else None, db if bias is not None else None, None
    )


def _with_shape(cases: dict) -> dict:
    """Norm cases call op(x, weight, bias, eps); layer_norm also takes normalized_shape."""

    def wrap(case):
        def make(dtype, device, gen):
            (x,), kwargs = case.make(dtype, device, gen)
            return (x, (x.shape[-1],)), kwargs

        return type(case)(case.name, make, case.big)

    return {name: (lambda f=f: [wrap(c) for c in f()]) for name, f in cases.items()}


def _cost(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    return Cost(bytes=2 * nbytes(x) + nbytes(weight, bias), flops=7 * x.numel())


def _aten_layer_norm(impl, input, normalized_shape, weight=None, bias=None, eps=1e-5, cudnn_enable=True):
    """aten::layer_norm's arguments to `impl`'s; cudnn_enable has no meaning for our kernel."""
    return impl(input, normalized_shape, weight, bias, eps)


SPEC = register(
    OpSpec(
        name="layer_norm",
        reference=torch.nn.functional.layer_norm,
        impl=layer_norm,
        # CUDA's native layer_norm rejects fp32 params with fp16/bf16 x, so no mixed-dtype case here.
        cases=_with_shape(norm_cases(with_bias=True, eps=1e-5, mixed_params=False)),
        cost=_cost,
        # aten::layer_norm, not aten::native_layer_norm: that one also returns mean and rstd.
        aten=("aten::layer_norm",),
        aten_impls={"aten::layer_norm": _aten_layer_norm},
        backward=_backward,
        setup_context=_setup_context,
    )
)
