"""Elementwise launchers in the MLU style: as many programs as the cores hold, grid-stride
loop over big blocks.

Same contract as workbench.ops._elementwise (which validates the arguments and computes the layout):
an op supplies only its math as a jit function taking and returning fp32, so bf16/fp16 inputs never
reach a transcendental function (some MLU backends reject them in tl.exp). Offsets are int64 from the
first multiplication on.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._elementwise import _offsets, prepare_binary, prepare_unary
from . import _launch


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
def _binary_kernel(a_ptr, b_ptr, out_ptr, n, s1, s2, s3, as0, as1, as2, as3, bs0, bs1, bs2, bs3, b_scale,
                   FN: tl.constexpr, CONTIGUOUS: tl.constexpr, SCALE_B: tl.constexpr, BLOCK: tl.constexpr):
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
        a = tl.load(a_ptr + a_offs, mask=mask).to(tl.float32)
        b = tl.load(b_ptr + b_offs, mask=mask).to(tl.float32)
        if SCALE_B:
            b = b * b_scale
        tl.store(out_ptr + offs, FN(a, b).to(out_ptr.dtype.element_ty), mask=mask)


def _grid(n: int, bytes_per_elem: int) -> tuple[int, int]:
    block = _launch.block_1d(n, bytes_per_elem)
    return _launch.programs(triton.cdiv(n, block)), block


def unary(fn, x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """`fn` (a jit function, fp32 in and out) on every element of `x`, MLU style."""
    p = prepare_unary(x, name)
    if p.n == 0:
        return p.out
    programs, block = _grid(p.n, x.element_size())  # live tile: the loaded x
    _unary_kernel[(programs,)](p.operands[0], p.out, p.n, *p.sizes, *p.strides[0], FN=fn,
                               CONTIGUOUS=p.contiguous, BLOCK=block, num_warps=_launch.NUM_WARPS)
    return p.out


def binary(fn, a: torch.Tensor, b, b_scale=1, names=("input", "other")) -> torch.Tensor:
    """`fn(a, b * b_scale)` with torch broadcasting and type promotion, MLU style."""
    p = prepare_binary(a, b, names)
    if p.n == 0:
        return p.out
    a, b = p.operands
    programs, block = _grid(p.n, a.element_size() + b.element_size())  # live tiles: loaded a and b
    _binary_kernel[(programs,)](
        a, b, p.out, p.n, *p.sizes, *p.strides[0], *p.strides[1], float(b_scale),
        FN=fn, CONTIGUOUS=p.contiguous, SCALE_B=b_scale != 1, BLOCK=block, num_warps=_launch.NUM_WARPS,
    )
    return p.out
