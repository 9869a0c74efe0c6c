"""add_rms_norm: the residual add fused with the next RMSNorm, as in every Qwen3 decoder layer.

`residual = x + residual; normed = rms_norm(residual) * weight` -> (normed, residual). The sum is rounded
to the input dtype before it is normalised, exactly what the unfused model computes. A fused op with
no ATen overload.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import _rows
from ._common import check_dtype_match, check_same_device, check_tensor, new_output_as
from ._launch import launch
from .mlu.persistent import persistent
from .rms_norm import launch_persistent, rms_norm_backward, rms_norm_long_row
from .rms_norm import prepare as rms_norm_prepare
from .spec import Case, Cost, OpSpec, input_grads, nbytes, randn, register


@triton.jit
def _add_rms_norm_kernel(
    x_ptr,
    r_ptr,
    w_ptr,
    out_ptr,
    sum_ptr,
    n_cols,
    x_row_stride,
    r_row_stride,
    eps,
    HAS_WEIGHT: tl.constexpr,
    BLOCK: tl.constexpr,
    ONE_TILE: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * x_row_stride
    r_row = r_ptr + row * r_row_stride
    out_row = out_ptr + row * n_cols
    sum_row = sum_ptr + row * n_cols
    cols = tl.arange(0, BLOCK)
    if ONE_TILE:
        mask = cols < n_cols
        h = tl.load(x_row + cols, mask=mask, other=0.0).to(tl.float32) + tl.load(
            r_row + cols, mask=mask, other=0.0
        ).to(tl.float32)
        h = h.to(sum_ptr.dtype.element_ty)
        tl.store(sum_row + cols, h, mask=mask)
        h = h.to(tl.float32)
        y = h * tl.math.rsqrt(tl.sum(h * h, 0) / n_cols + eps)
        if HAS_WEIGHT:
            y = y * tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(out_row + cols, y.to(out_ptr.dtype.element_ty), mask=mask)
    else:
        rms_norm_long_row(x_row, r_row, w_ptr, out_row, sum_row, n_cols, eps, True, HAS_WEIGHT, BLOCK)


def prepare(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor | None):
    """Validate; (output, sum output, x as rows, residual as rows), the rows None when there is nothing
    to compute. x and weight are checked by rms_norm's own `prepare`. Shared by every add_rms_norm
    launcher (generic, MLU style)."""
    check_tensor("x", x)
    check_tensor("residual", residual)
    check_same_device(x=x, residual=residual)
    check_dtype_match("residual", residual, x.dtype, "x")
    if residual.shape != x.shape:
        raise ValueError(f"residual: expected shape {tuple(x.shape)} like x, got {tuple(residual.shape)}")
    out, rows = rms_norm_prepare(x, weight)
    total = new_output_as(x)
    return out, total, rows, (_rows.as_rows(residual) if rows is not None else None)


def add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rms_norm(x + residual) * weight, x + residual), the sum rounded to x's dtype."""
    out, total, rows, res_rows = prepare(x, residual, weight)
    if rows is None:
        return out, total
    if persistent():  # rms_norm's persistent kernel, the residual add fused in
        launch_persistent(rows, res_rows, weight, out, total, eps)
        return out, total
    n_rows, n = rows.shape
    block, one_tile = _rows.tile(n)
    launch(
        _add_rms_norm_kernel,
        (n_rows,),
        rows,
        res_rows,
        weight if weight is not None else rows,
        out,
        total,
        n,
        rows.stride(0),
        res_rows.stride(0),
        float(eps),
        HAS_WEIGHT=weight is not None,
        BLOCK=block,
        ONE_TILE=one_tile,
        num_warps=_rows.row_warps(block),
    )
    return out, total


def _setup_context(ctx, inputs, output):
    x, residual, weight, ctx.eps = inputs
    ctx.save_for_backward(output[1], weight)
    ctx.shapes = (x.shape, residual.shape)


def _backward(ctx, dnormed, dtotal):
    """d total = rms_norm's dx (our backward kernel) + the gradient of the returned sum; x and residual
    both get it (summed back where one was broadcast)."""
    total, weight = ctx.saved_tensors
    if dnormed is None:
        dh, dw = torch.zeros_like(total), (torch.zeros_like(weight) if weight is not None else None)
    else:
        dh, dw = rms_norm_backward(dnormed, total, weight, ctx.eps)
        dw = dw if weight is not None else None
    if dtotal is not None:
        dh = dh + dtotal
    return input_grads(ctx, dh.sum_to_size(ctx.shapes[0]), dh.sum_to_size(ctx.shapes[1]), dw, None)


def _reference(x, residual, weight=None, eps=1e-6):
    total = x + residual
    return torch.nn.functional.rms_norm(total, (x.shape[-1],), weight, eps), total


def _cost(x, residual, weight=None, eps=1e-6):
    return Cost(bytes=4 * nbytes(x) + nbytes(weight), flops=5 * x.numel())


def _case(name, shape, transform=None, affine=True, weight_dtype=None):
    def make(dtype, device, gen):
        x = randn(shape, dtype, device, gen, scale=2.0)
        residual = randn(shape, dtype, device, gen, scale=3.0) + 0.5
        if transform:
            x, residual = transform(x), transform(residual)
        kwargs = {"eps": 1e-6}
        if affine:
            kwargs["weight"] = randn((x.shape[-1],), weight_dtype or dtype, device, gen) + 1.0
        return (x, residual), kwargs

    return Case(name, make)


SPEC = register(
    OpSpec(
        name="add_rms_norm",
        reference=_reference,
        impl=add_rms_norm,
        cases={
            "quick": lambda: [_case("8x64", (8, 64)), _case("5x1000", (5, 1000))],
            "edge": lambda: [
                _case("rank3 2x7x96", (2, 7, 96)),
                _case("rank4 non-contiguous", (3, 4, 5, 48), transform=lambda t: t.transpose(0, 2)),
                _case("no weight", (6, 33), affine=False),
                _case("fp32 weight", (4, 80), weight_dtype=torch.float32),
                _case("long row 2x20000", (2, 20000)),
                _case("zero rows 0x32", (0, 32)),
            ],
            "llm": lambda: [
                _case("decode 1x4096", (1, 4096)),
                _case("decode 64x4096", (64, 4096)),
                _case("prefill 2048x4096", (2048, 4096)),
            ],
        },
        cost=_cost,
        aten=(),
        doc="Fused residual add + rms_norm, returning (normed, new residual); no ATen overload.",
        backward=_backward,
        setup_context=_setup_context,
    )
)
