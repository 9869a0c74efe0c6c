"""Elementwise launchers in the MLU style: as many programs as fill the cores, each walking its blocks
in a grid-stride loop.

Same contract as workbench.ops._elementwise, which validates the arguments, promotes dtypes and lays the
operands out (`prepare_unary` / `prepare_binary` / `prepare_ternary`) and holds the per-tile work
(`_unary_tile`, ...) that its one-tile-per-program kernels run once and these kernels run in a loop: an
op supplies only its math as a jit function taking and returning fp32, so bf16/fp16 values never reach
a transcendental function (some MLU backends reject them in tl.exp). Offsets are int64 from the first
multiplication on. Integer operands take the tiles' exact int64 path (INT), as in the generic launchers.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._elementwise import (
    INT_DTYPES,
    _binary_tile,
    _ternary_tile,
    _unary_tile,
    integer_math,
    prepare_binary,
    prepare_ternary,
    prepare_unary,
    scale_arg,
    ternary_args,
)
from .._launch import launch
from ..spec import FLOAT_DTYPES
from . import sizing


@triton.jit
def _unary_kernel(x_ptr, out_ptr, n, s1, s2, s3, xs0, xs1, xs2, xs3,
                  FN: tl.constexpr, CONTIGUOUS: tl.constexpr, BLOCK: tl.constexpr, INT: tl.constexpr):
    step = tl.num_programs(0).to(tl.int64) * BLOCK
    for start in range(tl.program_id(0).to(tl.int64) * BLOCK, n, step):
        _unary_tile(x_ptr, out_ptr, start + tl.arange(0, BLOCK), n, s1, s2, s3, xs0, xs1, xs2, xs3, FN, CONTIGUOUS,
                    INT)


@triton.jit
def _binary_kernel(a_ptr, b_ptr, out_ptr, n, s1, s2, s3, as0, as1, as2, as3, bs0, bs1, bs2, bs3,
                   b_scalar, b_scale, FN: tl.constexpr, CONTIGUOUS: tl.constexpr, B_SCALAR: tl.constexpr,
                   SCALE_B: tl.constexpr, BLOCK: tl.constexpr, INT: tl.constexpr):
    step = tl.num_programs(0).to(tl.int64) * BLOCK
    for start in range(tl.program_id(0).to(tl.int64) * BLOCK, n, step):
        _binary_tile(a_ptr, b_ptr, out_ptr, start + tl.arange(0, BLOCK), n, s1, s2, s3, as0, as1, as2, as3,
                     bs0, bs1, bs2, bs3, b_scalar, b_scale, FN, CONTIGUOUS, B_SCALAR, SCALE_B, BLOCK, INT)


@triton.jit
def _ternary_kernel(c_ptr, a_ptr, b_ptr, out_ptr, n, s1, s2, s3, cs0, cs1, cs2, cs3, as0, as1, as2, as3,
                    bs0, bs1, bs2, bs3, a_scalar, b_scalar, FN: tl.constexpr, CONTIGUOUS: tl.constexpr,
                    A_SCALAR: tl.constexpr, B_SCALAR: tl.constexpr, BLOCK: tl.constexpr, INT: tl.constexpr):
    step = tl.num_programs(0).to(tl.int64) * BLOCK
    for start in range(tl.program_id(0).to(tl.int64) * BLOCK, n, step):
        _ternary_tile(c_ptr, a_ptr, b_ptr, out_ptr, start + tl.arange(0, BLOCK), n, s1, s2, s3, cs0, cs1, cs2,
                      cs3, as0, as1, as2, as3, bs0, bs1, bs2, bs3, a_scalar, b_scalar, FN, CONTIGUOUS, A_SCALAR,
                      B_SCALAR, BLOCK, INT)


def _grid(n: int, bytes_per_elem: int) -> tuple[int, int]:
    block = sizing.block_1d(n, bytes_per_elem)
    return sizing.programs(triton.cdiv(n, block)), block


def unary(fn, x: torch.Tensor, name: str = "x", dtypes=FLOAT_DTYPES) -> torch.Tensor:
    """`fn` (a jit function, fp32 in and out; for a bool / integer `x`, where `dtypes` allows one, in x's
    own dtype) on every element of `x`, MLU style."""
    out, x, sizes, x_strides, contiguous = prepare_unary(x, name, dtypes)
    n = out.numel()
    if n == 0:
        return out
    programs, block = _grid(n, x.element_size())  # live tile: the loaded x
    launch(_unary_kernel, (programs,), x, out, n, *sizes, *x_strides, FN=fn, CONTIGUOUS=contiguous,
           BLOCK=block, INT=not x.is_floating_point(), num_warps=sizing.NUM_WARPS)
    return out


def binary(fn, a: torch.Tensor, b, b_scale=1, names=("input", "other"), integers: bool = False,
           out_dtype: torch.dtype | None = None, dtypes: tuple[torch.dtype, ...] | None = None) -> torch.Tensor:
    """`fn(a, b * b_scale)` with torch broadcasting and type promotion, MLU style (`integers`, `out_dtype`,
    `dtypes` as in the generic launcher: integer results computed exactly in int64)."""
    out, a, b_arg, sizes, a_strides, b_strides, contiguous, b_scalar = prepare_binary(a, b, names, integers,
                                                                                      out_dtype, dtypes)
    n = out.numel()
    if n == 0:
        return out
    is_int = integer_math(a, b_arg if b_scalar is None else b_scalar)
    # live tiles: the loaded a, and the loaded b or the block a scalar b is made into (fp32, or int64)
    programs, block = _grid(n, a.element_size() + ((8 if is_int else 4) if b_scalar is not None
                                                   else b_arg.element_size()))
    launch(
        _binary_kernel, (programs,),
        a, b_arg, out, n, *sizes, *a_strides, *b_strides,
        (0 if is_int else 0.0) if b_scalar is None else b_scalar, scale_arg(b_scale, is_int), FN=fn,
        CONTIGUOUS=contiguous, B_SCALAR=b_scalar is not None, SCALE_B=b_scale != 1, BLOCK=block, INT=is_int,
        num_warps=sizing.NUM_WARPS,
    )
    return out


def ternary(fn, c: torch.Tensor, a, b, out_dtype: torch.dtype, names=("condition", "input", "other"),
            c_dtypes=(torch.bool,), integers: bool = False) -> torch.Tensor:
    """`fn(c, a, b)` with broadcasting into a new `out_dtype` tensor, MLU style (see prepare_ternary)."""
    out, args, sizes, strides, contiguous, values = prepare_ternary(c, a, b, out_dtype, names, c_dtypes, integers)
    n = out.numel()
    if n == 0:
        return out
    is_int = out_dtype in INT_DTYPES
    # live tiles: the loaded c, and for a and b the loaded tile or the block a number is made into
    programs, block = _grid(n, args[0].element_size() + sum((8 if is_int else 4) if v is not None
                                                             else t.element_size()
                                                             for v, t in zip(values, args[1:])))
    launch(_ternary_kernel, (programs,), *args, out, *ternary_args(n, sizes, strides, values, is_int),
           FN=fn, CONTIGUOUS=contiguous, A_SCALAR=values[0] is not None, B_SCALAR=values[1] is not None,
           BLOCK=block, INT=is_int, num_warps=sizing.NUM_WARPS)
    return out
