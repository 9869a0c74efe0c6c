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
from ._norm_cases import norm_cases
from .mlu.persistent import NUM_WARPS, persistent, row_tiles
from .spec import Cost, OpSpec, nbytes, register


@triton.jit
def layer_norm_long_row(x_row, w_ptr, b_ptr, out_row, n_cols, eps,
                        HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK: tl.constexpr):
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
def _layer_norm_kernel(x_ptr, w_ptr, b_ptr, out_ptr, n_rows, n_cols, x_row_stride, eps,
                       HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr,
                       BLOCK_R: tl.constexpr, BLOCK: tl.constexpr, ONE_TILE: tl.constexpr):
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
        layer_norm_long_row(x_ptr + row * x_row_stride, w_ptr, b_ptr, out_ptr + row * n_cols, n_cols, eps,
                            HAS_WEIGHT, HAS_BIAS, BLOCK)


@triton.jit
def _layer_norm_persistent_kernel(x_ptr, w_ptr, b_ptr, out_ptr, n_rows, n_cols, x_row_stride, eps,
                                  HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_R: tl.constexpr,
                                  BLOCK: tl.constexpr, ONE_TILE: tl.constexpr):
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
            layer_norm_long_row(x_ptr + row * x_row_stride, w_ptr, b_ptr, out_ptr + row * n_cols, n_cols, eps,
                                HAS_WEIGHT, HAS_BIAS, BLOCK)


def prepare(x: torch.Tensor, normalized_shape, weight: torch.Tensor | None,
            bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate; (output, x as rows of the normalized size, or None when empty). Shared by every
    layer_norm launcher (generic, MLU style)."""
    check_tensor("x", x)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if not shape or len(shape) > x.dim() or x.shape[x.dim() - len(shape):] != shape:
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


def layer_norm(x: torch.Tensor, normalized_shape, weight: torch.Tensor | None = None,
               bias: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
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
        kernel, (programs,),
        rows, weight if weight is not None else rows, bias if bias is not None else rows, out, n_rows, n,
        rows.stride(0), float(eps), HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None,
        BLOCK_R=block_r, BLOCK=block, ONE_TILE=one_tile, num_warps=warps,
    )
    return out


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


SPEC = register(OpSpec(
    name="layer_norm",
    reference=torch.nn.functional.layer_norm,
    impl=layer_norm,
    # CUDA's native layer_norm rejects fp32 params with fp16/bf16 x, so no mixed-dtype case here.
    cases=_with_shape(norm_cases(with_bias=True, eps=1e-5, mixed_params=False)),
    cost=_cost,
    # aten::layer_norm, not aten::native_layer_norm: that one also returns mean and rstd.
    aten=("aten::layer_norm",),
    aten_impls={"aten::layer_norm": lambda impl, input, normalized_shape, weight=None, bias=None, eps=1e-5,
                cudnn_enable=True: impl(input, normalized_shape, weight, bias, eps)},
))
