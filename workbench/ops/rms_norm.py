"""rms_norm over the last dim: `x / sqrt(mean(x**2) + eps) * weight` (torch.nn.functional.rms_norm)."""

import torch
import triton
import triton.language as tl

from workbench import backends

from . import _rows
from ._common import check_same_device, check_tensor, new_output_as
from ._launch import launch
from ._library import backward_op
from ._norm_cases import norm_cases
from ._shapes import cdiv
from .spec import Cost, OpSpec, Unsupported, input_grads, nbytes, register


@triton.jit
def rms_norm_long_row(x_row, r_row, w_ptr, out_row, sum_row, n_cols, eps,
                      HAS_RESIDUAL: tl.constexpr, HAS_WEIGHT: tl.constexpr, BLOCK: tl.constexpr):
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
                sum_row.dtype.element_ty)
            tl.store(sum_row + start + cols, h, mask=mask)
            h = h.to(tl.float32)
        acc += h * h
    rstd = tl.math.rsqrt(tl.sum(acc, 0) / n_cols + eps)
    for start in range(0, n_cols, BLOCK):
        mask = start + cols < n_cols
        h = tl.load(x_row + start + cols, mask=mask, other=0.0).to(tl.float32)
        if HAS_RESIDUAL:
            h = (h + tl.load(r_row + start + cols, mask=mask, other=0.0).to(tl.float32)).to(
                sum_row.dtype.element_ty).to(tl.float32)
        y = h * rstd
        if HAS_WEIGHT:
            y = y * tl.load(w_ptr + start + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(out_row + start + cols, y.to(out_row.dtype.element_ty), mask=mask)


@triton.jit
def _rms_norm_kernel(x_ptr, w_ptr, out_ptr, n_rows, n_cols, x_row_stride, eps,
                     HAS_WEIGHT: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK: tl.constexpr,
                     ONE_TILE: tl.constexpr):
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


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1e-6) -> torch.Tensor:
    out, rows = prepare(x, weight)
    if rows is None:
        return out
    n_rows, n = rows.shape
    programs, block_r, block, one_tile, warps = _rows.packed_launch(n_rows, n)
    launch(_rms_norm_kernel, (programs,), rows, weight if weight is not None else rows, out,
           n_rows, n, rows.stride(0), float(eps), HAS_WEIGHT=weight is not None, BLOCK_R=block_r, BLOCK=block,
           ONE_TILE=one_tile, num_warps=warps)
    return out


# Backward programs each own a run of rows and keep one fp32 partial sum of dweight; more programs would
# only grow the (programs x n) partial buffer that the final reduction reads.
BACKWARD_PROGRAMS = 1024


@triton.jit
def _rms_norm_backward_kernel(x_ptr, w_ptr, dy_ptr, dx_ptr, dw_ptr, n_rows, n_cols, rows_per_program, eps,
                              HAS_WEIGHT: tl.constexpr, BLOCK: tl.constexpr, ONE_TILE: tl.constexpr):
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
def rms_norm_backward(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor | None,
                      eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(dx, dweight) of rms_norm over the last dim (dweight empty without a weight): one launch for dx and
    per-program partial sums of dweight, then their reduction over programs."""
    n = x.shape[-1]
    rows, dy_rows = x.reshape(-1, n).contiguous(), dy.reshape(-1, n).contiguous()
    n_rows = rows.shape[0]
    dx = torch.empty_like(rows)
    if n_rows == 0 or n == 0:
        return dx.view(x.shape), (torch.zeros_like(weight) if weight is not None else x.new_empty(0))
    block, one_tile = _rows.tile(n)
    warps = _rows.row_warps(block)
    programs = backends.active().policy.grid(min(n_rows, BACKWARD_PROGRAMS), warps)
    per_program = cdiv(n_rows, programs)
    programs = cdiv(n_rows, per_program)
    partial = torch.zeros((programs, n), dtype=torch.float32, device=x.device) if weight is not None else rows
    launch(_rms_norm_backward_kernel, (programs,), rows, weight if weight is not None else rows, dy_rows, dx,
           partial, n_rows, n, per_program, float(eps), HAS_WEIGHT=weight is not None, BLOCK=block,
           ONE_TILE=one_tile, num_warps=warps)
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
        raise Unsupported(f"normalized_shape {list(normalized_shape)} is not the last dim of input "
                          f"{tuple(input.shape)}")
    if eps is None:
        eps = torch.finfo(input.dtype).eps  # torch's default
    return impl(input, weight, eps)


def _reference(x, weight=None, eps=1e-6):
    return torch.nn.functional.rms_norm(x, (x.shape[-1],), weight, eps)


def _cost(x, weight=None, eps=1e-6):
    return Cost(bytes=2 * nbytes(x) + nbytes(weight), flops=4 * x.numel())


SPEC = register(OpSpec(
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
))
