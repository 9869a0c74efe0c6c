"""Elementwise launchers in the MLU style: as many programs as fill the cores, each walking its blocks
in a grid-stride loop.

Same contract as workbench.ops._elementwise, which validates the arguments, promotes dtypes and lays the
operands out (`prepare_unary` / `prepare_binary`): an op supplies only its math as a jit function taking
and returning fp32, so bf16/fp16 values never reach a transcendental function (some MLU backends reject
them in tl.exp). Offsets are int64 from the first multiplication on.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._elementwise import _offsets, integer_math, prepare_binary, prepare_unary, scale_arg
from .._launch import launch
from . import sizing


@triton.jit
def _unary_kernel(x_ptr, out_ptr, n, s1, s2, s3, xs0, xs1, xs2, xs3,
                  FN: tl.constexpr, CONTIGUOUS: tl.constexpr, BLOCK: tl.constexpr):
    step = tl.num_programs(0).to(tl.int64) * BLOCK
    for start in range(tl.program_id(0).to(tl.int64) * BLOCK, n, step):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < n
        if CONTIGUOUS:
            x_offs = offs
        else:
            x_offs = _offsets(offs, s1, s2, s3, xs0, xs1, xs2, xs3)
        x = tl.load(x_ptr + x_offs, mask=mask).to(tl.float32)
        tl.store(out_ptr + offs, FN(x).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _binary_kernel(a_ptr, b_ptr, out_ptr, n, s1, s2, s3, as0, as1, as2, as3, bs0, bs1, bs2, bs3,
                   b_scalar, b_scale, FN: tl.constexpr, CONTIGUOUS: tl.constexpr, B_SCALAR: tl.constexpr,
                   SCALE_B: tl.constexpr, BLOCK: tl.constexpr, INT: tl.constexpr):
    if INT:  # integer operands: exact int64 math (as the generic launcher)
        ct = tl.int64
    else:
        ct = tl.float32
    if B_SCALAR:  # a Python number passed by value, made a block once per program
        b_block = tl.full([BLOCK], b_scalar, ct)
        if SCALE_B:
            b_block = b_block * b_scale
    step = tl.num_programs(0).to(tl.int64) * BLOCK
    for start in range(tl.program_id(0).to(tl.int64) * BLOCK, n, step):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < n
        if CONTIGUOUS:
            a_offs = offs
            b_offs = offs
        else:
            a_offs = _offsets(offs, s1, s2, s3, as0, as1, as2, as3)
            b_offs = _offsets(offs, s1, s2, s3, bs0, bs1, bs2, bs3)
        a = tl.load(a_ptr + a_offs, mask=mask).to(ct)
        if B_SCALAR:
            b = b_block
        else:
            b = tl.load(b_ptr + b_offs, mask=mask).to(ct)
            if SCALE_B:
                b = b * b_scale
        tl.store(out_ptr + offs, FN(a, b).to(out_ptr.dtype.element_ty), mask=mask)


def _grid(n: int, bytes_per_elem: int) -> tuple[int, int]:
    block = sizing.block_1d(n, bytes_per_elem)
    return sizing.programs(triton.cdiv(n, block)), block


def unary(fn, x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """`fn` (a jit function, fp32 in and out) on every element of `x`, MLU style."""
    out, x, sizes, x_strides, contiguous = prepare_unary(x, name)
    n = out.numel()
    if n == 0:
        return out
    programs, block = _grid(n, x.element_size())  # live tile: the loaded x
    launch(_unary_kernel, (programs,), x, out, n, *sizes, *x_strides, FN=fn, CONTIGUOUS=contiguous,
           BLOCK=block, num_warps=sizing.NUM_WARPS)
    return out


def binary(fn, a: torch.Tensor, b, b_scale=1, names=("input", "other"), integers: bool = False) -> torch.Tensor:
    """`fn(a, b * b_scale)` with torch broadcasting and type promotion, MLU style (`integers` as in the
    generic launcher: int32/int64 results computed exactly in their dtype)."""
    out, a, b_arg, sizes, a_strides, b_strides, contiguous, b_scalar = prepare_binary(a, b, names, integers)
    n = out.numel()
    if n == 0:
        return out
    # live tiles: the loaded a, and the loaded b or the fp32 block a scalar b is made into
    programs, block = _grid(n, a.element_size() + (4 if b_scalar is not None else b_arg.element_size()))
    is_int = integer_math(a, b_arg if b_scalar is None else b_scalar)
    launch(
        _binary_kernel, (programs,),
        a, b_arg, out, n, *sizes, *a_strides, *b_strides,
        (0 if is_int else 0.0) if b_scalar is None else b_scalar, scale_arg(b_scale, is_int), FN=fn,
        CONTIGUOUS=contiguous, B_SCALAR=b_scalar is not None, SCALE_B=b_scale != 1, BLOCK=block, INT=is_int,
        num_warps=sizing.NUM_WARPS,
    )
    return out
