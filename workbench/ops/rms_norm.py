"""rms_norm over the last dim: `x / sqrt(mean(x**2) + eps) * weight` (torch.nn.functional.rms_norm).

Rows packed into 2-D tiles, or streamed when long: one tile per program, or, in the persistent launch
style (ops.mlu.persistent), programs that fill the cores walking the tiles (a kernel add_rms_norm shares).
"""

import torch
import triton
import triton.language as tl

from . import _rows
from ._common import Plans, check_same_device, check_tensor, geometry, new_output_as
from ._launch import Site, aligned, launch
from ._library import backward_op
from ._norm_cases import norm_cases
from .mlu.persistent import NUM_WARPS, persistent, row_tiles
from .spec import Cost, OpSpec, Unsupported, input_grads, nbytes, register


@triton.jit
def rms_norm_long_row(
    x_row,
    r_row,
    w_ptr,
    out_row,
    sum_row,
    n_cols,
    eps,
    HAS_RESIDUAL: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """One row too long for one tile: sum of squares, then a second read to write.

    HAS_RESIDUAL (add_rms_norm): the row is x + residual, rounded to the sum's dtype and written to
    sum_row in the first pass; the second pass recomputes the sum rather than reading back what other
    threads stored. Shared by the generic kernels and the MLU-style variants of rms_norm and add_rms_norm.
    """
    cols = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK], tl.float32)
    for start in range(0, n_cols, BLOCK):
        mask = start + cols < n_cols
        h = tl.load(x_row + start + cols, mask=mask, other=0.0).to(tl.float32)
        if HAS_RESIDUAL:
            h = (h + tl.load(r_row + start + cols, mask=mask, other=0.0).to(tl.float32)).to(
                sum_row.dtype.element_ty
            )
            tl.store(sum_row + start + cols, h, mask=mask)
            h = h.to(tl.float32)
        acc += h * h
    rstd = tl.math.rsqrt(tl.sum(acc, 0) / n_cols + eps)
    for start in range(0, n_cols, BLOCK):
        mask = start + cols < n_cols
        h = tl.load(x_row + start + cols, mask=mask, other=0.0).to(tl.float32)
        if HAS_RESIDUAL:
            h = (
                (h + tl.load(r_row + start + cols, mask=mask, other=0.0).to(tl.float32))
                .to(sum_row.dtype.element_ty)
                .to(tl.float32)
            )
        y = h * rstd
        if HAS_WEIGHT:
            y = y * tl.load(w_ptr + start + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(out_row + start + cols, y.to(out_row.dtype.element_ty), mask=mask)


@triton.jit
def _rms_norm_kernel(
    x_ptr,
    w_ptr,
    out_ptr,
    n_rows,
    n_cols,
    x_row_stride,
    eps,
    HAS_WEIGHT: tl.constexpr,
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
        y = x * tl.math.rsqrt(tl.sum(x * x, 1) / n_cols + eps)[:, None]
        if HAS_WEIGHT:
            y = y * tl.load(w_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
        tl.store(out_ptr + rows[:, None] * n_cols + cols[None, :], y.to(out_ptr.dtype.element_ty), mask=mask)
    else:  # one long row per program
        row = tl.program_id(0).to(tl.int64)
        x_row = x_ptr + row * x_row_stride
        out_row = out_ptr + row * n_cols
        rms_norm_long_row(x_row, x_row, w_ptr, out_row, out_row, n_cols, eps, False, HAS_WEIGHT, BLOCK)


@triton.jit
def _rms_norm_persistent_kernel(
    x_ptr,
    r_ptr,
    w_ptr,
    out_ptr,
    sum_ptr,
    n_rows,
    n_cols,
    x_row_stride,
    r_row_stride,
    eps,
    HAS_RESIDUAL: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_C: tl.constexpr,
    ONE_TILE: tl.constexpr,
):
    # The persistent style (ops.mlu.persistent): programs that fill the cores walk packed row tiles (or
    # long rows). HAS_RESIDUAL (add_rms_norm): the row is x + residual, rounded to x's dtype and written
    # to sum_ptr before it is normalised.
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    cols = tl.arange(0, BLOCK_C)
    if ONE_TILE:
        col_ok = cols < n_cols
        if HAS_WEIGHT:  # loaded once per program, reused for every row it handles
            w = tl.load(w_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
        for first in range(pid.to(tl.int64) * BLOCK_R, n_rows, nprog * BLOCK_R):
            rows = first + tl.arange(0, BLOCK_R)
            mask = (rows < n_rows)[:, None] & col_ok[None, :]
            x_ptrs = x_ptr + rows[:, None] * x_row_stride + cols[None, :]
            x = tl.load(x_ptrs, mask=mask, other=0.0).to(tl.float32)
            out_offs = rows[:, None] * n_cols + cols[None, :]
            if HAS_RESIDUAL:
                r = tl.load(r_ptr + rows[:, None] * r_row_stride + cols[None, :], mask=mask, other=0.0)
                h = (x + r.to(tl.float32)).to(sum_ptr.dtype.element_ty)
                tl.store(sum_ptr + out_offs, h, mask=mask)
                x = h.to(tl.float32)
            y = x * tl.math.rsqrt(tl.sum(x * x, 1) / n_cols + eps)[:, None]
            if HAS_WEIGHT:
                y = y * w[None, :]
            tl.store(out_ptr + out_offs, y.to(out_ptr.dtype.element_ty), mask=mask)
    else:
        for row in range(pid.to(tl.int64), n_rows, nprog):
            rms_norm_long_row(
                x_ptr + row * x_row_stride,
                r_ptr + row * r_row_stride,
                w_ptr,
                out_ptr + row * n_cols,
                sum_ptr + row * n_cols,
                n_cols,
                eps,
                HAS_RESIDUAL,
                HAS_WEIGHT,
                BLOCK_C,
            )


def launch_persistent(
    rows: torch.Tensor,
    res_rows: torch.Tensor | None,
    weight: torch.Tensor | None,
    out: torch.Tensor,
    total: torch.Tensor | None,
    eps: float,
) -> None:
    """rms_norm of `rows` (plus `res_rows`, the sum written to `total`, when given) into `out`, in the
    persistent style (rms_norm and add_rms_norm)."""
    n_rows, n = rows.shape
    el, w_el = rows.element_size(), weight.element_size() if weight is not None else 0
    r_el = el if res_rows is not None else 0
    # live tiles: x, the residual and the weight row; streamed: the fp32 accumulator, two load sites of
    # x and of the residual, and the weight
    t = row_tiles(n_rows, n, one_tile_bytes=el + r_el + w_el, streamed_bytes=4 + 2 * (el + r_el) + w_el)
    launch(
        _rms_norm_persistent_kernel,
        (t.programs,),
        rows,
        res_rows if res_rows is not None else rows,
        weight if weight is not None else rows,
        out,
        total if total is not None else out,
        n_rows,
        n,
        rows.stride(0),
        res_rows.stride(0) if res_rows is not None else 0,
        float(eps),
        HAS_RESIDUAL=res_rows is not None,
        HAS_WEIGHT=weight is not None,
        BLOCK_R=t.block_r,
        BLOCK_C=t.block_c,
        ONE_TILE=t.one_tile,
        num_warps=NUM_WARPS,
    )


def check_norm_param(name: str, p, x: torch.Tensor) -> None:
    if p is None:
        return
    check_tensor(name, p)
    if p.device != x.device:
        check_same_device(x=x, **{name: p})
    if p.shape != x.shape[-1:]:
        raise ValueError(f"{name}: expected shape {tuple(x.shape[-1:])} (x's last dim), got {tuple(p.shape)}")


def prepare(x: torch.Tensor, weight: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate; (output, x as rows or None when there is nothing to compute). Shared by every
    rms_norm launcher (generic, MLU style)."""
    check_tensor("x", x)
    if x.dim() == 0:
        raise ValueError("x: expected at least 1 dim, got a 0-dim tensor")
    check_norm_param("weight", weight, x)
    out = new_output_as(x)  # torch keeps x's dtype, even with fp32 weights
    return out, (_rows.as_rows(x) if x.numel() else None)


# Geometry of (x, weight) -> (grid, runtime ints, Site) where x's rows are x itself: every layer of a
# decode step normalises the same shape.
_plans = Plans()


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1e-6) -> torch.Tensor:
    plan_key = geometry(x) if weight is None else geometry(x, weight)
    plan = _plans.get(plan_key)
    if plan is not None:  # checked before
        grid, ints, site = plan
        out = new_output_as(x)
        w = x if weight is None else weight
        site(grid, x, w, out, *ints, float(eps), aligned=aligned(x, w))
        return out
    out, rows = prepare(x, weight)
    if rows is None:
        return out
    if persistent():
        launch_persistent(rows, None, weight, out, None, eps)
        return out
    n_rows, n = rows.shape
    programs, block_r, block, one_tile, warps = _rows.packed_launch(n_rows, n)
    grid, ints = (programs,), (n_rows, n, rows.stride(0))
    site = Site(
        _rms_norm_kernel,
        HAS_WEIGHT=weight is not None,
        BLOCK_R=block_r,
        BLOCK=block,
        ONE_TILE=one_tile,
        num_warps=warps,
    )
    w = rows if weight is None else weight
    site(grid, rows, w, out, *ints, float(eps), aligned=aligned(rows, w))
    if rows.data_ptr() == x.data_ptr() and x.is_contiguous():  # the output is allocated like x
        _plans.put(plan_key, (grid, ints, site))
    return out


# Backward programs each own a run of rows and keep one fp32 partial sum of dweight; more programs would
# only grow the (programs x n) partial buffer that the final reduction reads.
BACKWARD_PROGRAMS = 1024


@triton.jit
def _rms_norm_backward_kernel(
    x_ptr,
    w_ptr,
    dy_ptr,
    dx_ptr,
    dw_ptr,
    n_rows,
    n_cols,
    rows_per_program,
    eps,
    HAS_WEIGHT: tl.constexpr,
    BLOCK: tl.constexpr,
    ONE_TILE: tl.constexpr,
):
    """dx = rstd * (g - xhat * mean(g * xhat)) with g = dy * w, xhat = x * rstd (rstd recomputed); this
    program's partial dweight = sum over its rows of dy * xhat, in fp32 (zeroed by the caller). Rows are
    contiguous; a row longer than one tile takes a pass for its two sums and a pass to write."""
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    first = pid.to(tl.int64) * rows_per_program
    dw_row = dw_ptr + pid.to(tl.int64) * n_cols
    if ONE_TILE:
        col_ok = cols < n_cols
        if HAS_WEIGHT:
            w = tl.load(w_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
        dw = tl.zeros([BLOCK], tl.float32)
    for i in range(tl.minimum(rows_per_program, n_rows - first)):
        offset = (first + i) * n_cols
        x_row, dy_row, dx_row = x_ptr + offset, dy_ptr + offset, dx_ptr + offset
        if ONE_TILE:
            x = tl.load(x_row + cols, mask=col_ok, other=0.0).to(tl.float32)
            dy = tl.load(dy_row + cols, mask=col_ok, other=0.0).to(tl.float32)
            rstd = tl.math.rsqrt(tl.sum(x * x, 0) / n_cols + eps)
            g = dy * w if HAS_WEIGHT else dy
            dx = rstd * (g - x * rstd * (tl.sum(g * x, 0) * rstd / n_cols))
            tl.store(dx_row + cols, dx.to(dx_ptr.dtype.element_ty), mask=col_ok)
            if HAS_WEIGHT:
                dw += dy * x * rstd
        else:
            sq = tl.zeros([BLOCK], tl.float32)
            gx = tl.zeros([BLOCK], tl.float32)
            for start in range(0, n_cols, BLOCK):
                mask = start + cols < n_cols
                x = tl.load(x_row + start + cols, mask=mask, other=0.0).to(tl.float32)
                g = tl.load(dy_row + start + cols, mask=mask, other=0.0).to(tl.float32)
                if HAS_WEIGHT:
                    g = g * tl.load(w_ptr + start + cols, mask=mask, other=0.0).to(tl.float32)
                sq += x * x
                gx += g * x
            rstd = tl.math.rsqrt(tl.sum(sq, 0) / n_cols + eps)
            c = tl.sum(gx, 0) * rstd * rstd / n_cols
            for start in range(0, n_cols, BLOCK):
                mask = start + cols < n_cols
                x = tl.load(x_row + start + cols, mask=mask, other=0.0).to(tl.float32)
                dy = tl.load(dy_row + start + cols, mask=mask, other=0.0).to(tl.float32)
                g = dy
                if HAS_WEIGHT:
                    g = dy * tl.load(w_ptr + start + cols, mask=mask, other=0.0).to(tl.float32)
                    part = tl.load(dw_row + start + cols, mask=mask, other=0.0)
                    tl.store(dw_row + start + cols, part + dy * x * rstd, mask=mask)
                tl.store(dx_row + start + cols, (rstd * (g - x * c)).to(dx_ptr.dtype.element_ty), mask=mask)
    if ONE_TILE and HAS_WEIGHT:
        tl.store(dw_row + cols, dw, mask=col_ok)


def _backward_fake(dy, x, weight, eps):
    return x.new_empty(x.shape), (weight.new_empty(weight.shape) if weight is not None else x.new_empty(0))


@backward_op("rms_norm_backward", _backward_fake)
def rms_norm_backward(
    dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor | None, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(dx, dweight) of rms_norm over the last dim (dweight empty without a weight): one launch for dx and
    per-program partial sums of dweight, then their reduction over programs."""
    n = x.shape[-1]
    rows, dy_rows = x.reshape(-1, n).contiguous(), dy.reshape(-1, n).contiguous()
    n_rows = rows.shape[0]
    dx = torch.empty_like(rows)
    if n_rows == 0 or n == 0:
        return dx.view(x.shape), (torch.zeros_like(weight) if weight is not None else x.new_empty(0))
    el, w_el = x.element_size(), weight.element_size() if weight is not None else 0
    # live tiles: x, dy and w loaded, the fp32 dweight sum; streamed: two fp32 sums, then both passes' loads
    runs = _rows.row_runs(
        n_rows,
        n,
        one_tile_bytes=2 * el + w_el + 4,
        streamed_bytes=16 + 4 * el + 2 * w_el,
        max_programs=BACKWARD_PROGRAMS,
    )
    partial = (
        torch.zeros((runs.programs, n), dtype=torch.float32, device=x.device) if weight is not None else rows
    )
    launch(
        _rms_norm_backward_kernel,
        (runs.programs,),
        rows,
        weight if weight is not None else rows,
        dy_rows,
        dx,
        partial,
        n_rows,
        n,
        runs.per_program,
        float(eps),
        HAS_WEIGHT=weight is not None,
        BLOCK=runs.block,
        ONE_TILE=runs.one_tile,
        num_warps=runs.num_warps,
    )
    dw = partial.sum(0).to(weight.dtype) if weight is not None else x.new_empty(0)
    return dx.view(x.shape), dw


def _setup_context(ctx, inputs, output):
    x, weight, eps = inputs
    ctx.save_for_backward(x, weight)
    ctx.eps = eps


def _backward(ctx, dy):
    x, weight = ctx.saved_tensors
    dx, dw = rms_norm_backward(dy, x, weight, ctx.eps)
    return input_grads(ctx, dx, dw if weight is not None else None, None)


def _aten_rms_norm(impl, input, normalized_shape, weight=None, eps=None):
    """aten::rms_norm(input, normalized_shape, weight=None, eps=None) over the last dim only."""
    if list(normalized_shape) != list(input.shape[-1:]):
        raise Unsupported(
            f"normalized_shape {list(normalized_shape)} is not the last dim of input {tuple(input.shape)}"
        )
    if eps is None:
        eps = torch.finfo(input.dtype).eps  # torch's default
    return impl(input, weight, eps)


def _reference(x, weight=None, eps=1e-6):
    return torch.nn.functional.rms_norm(x, (x.shape[-1],), weight, eps)


def _cost(x, weight=None, eps=1e-6):
    return Cost(bytes=2 * nbytes(x) + nbytes(weight), flops=4 * x.numel())


SPEC = register(
    OpSpec(
        name="rms_norm",
        reference=_reference,
        impl=rms_norm,
        cases=norm_cases(with_bias=False, eps=1e-6, mixed_params=True),
        cost=_cost,
        # Not aten::_fused_rms_norm: it also returns rstd, which this kernel does not compute.
        aten=("aten::rms_norm",),
        aten_impls={"aten::rms_norm": _aten_rms_norm},
        backward=_backward,
        setup_context=_setup_context,
    )
)
