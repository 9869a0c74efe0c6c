"""Elementwise launchers shared by unary and binary ops.

An op supplies only its math as a `@triton.jit` function (e.g. `x * tl.sigmoid(x)`); these launchers
handle broadcasting, non-contiguous and rank-N inputs (strides, up to 4 dims after merging), int64
offsets, math in fp32 and the cast to the output dtype. Contiguous same-shape inputs take a flat path
with no index arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from workbench import backends

from ._common import as_tensor_operand, check_same_device, check_tensor, new_output
from .spec import Case, Cost, nbytes, randn

MAX_DIMS = 4
BLOCK = 1024  # elements per program on a GPU; the launch policy scales it


@triton.jit
def _offsets(offs, s1, s2, s3, st0, st1, st2, st3):
    i3 = offs % s3
    rest = offs // s3
    i2 = rest % s2
    rest = rest // s2
    i1 = rest % s1
    i0 = rest // s1
    return i0 * st0 + i1 * st1 + i2 * st2 + i3 * st3


@triton.jit
def _unary_kernel(x_ptr, out_ptr, n, s1, s2, s3, xs0, xs1, xs2, xs3,
                  FN: tl.constexpr, CONTIGUOUS: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
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
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
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


def _merge_dims(shape, strides_per_operand):
    """Drop size-1 dims and merge neighbours that are contiguous for every operand."""
    merged: list[tuple[int, list[int]]] = []
    for i, size in enumerate(shape):
        if size == 1:
            continue
        strides = [s[i] for s in strides_per_operand]
        if merged:
            prev_size, prev_strides = merged[-1]
            if all(p == s * size for p, s in zip(prev_strides, strides)):
                merged[-1] = (prev_size * size, strides)
                continue
        merged.append((size, strides))
    return merged


def _layout(shape, operands):
    """(sizes of dims 1..3, strides per operand padded to 4 dims, contiguous flag, operands used)."""
    merged = _merge_dims(shape, [t.stride() for t in operands])
    if len(merged) > MAX_DIMS:  # rare: materialise the operands, which then merge to one dim
        operands = [t.contiguous() for t in operands]
        merged = _merge_dims(shape, [t.stride() for t in operands])
    contiguous = len(merged) <= 1 and all(s == 1 for _, strides in merged for s in strides)
    pad = MAX_DIMS - len(merged)
    sizes = [1] * pad + [size for size, _ in merged]
    strides = [[0] * pad + [strides[k] for _, strides in merged] for k in range(len(operands))]
    return sizes[1:], strides, contiguous, operands


def _launch_grid(n: int) -> tuple[int, int]:
    block = BLOCK * backends.active().policy.block_scale
    return triton.cdiv(n, block), block


@dataclass
class Prepared:
    """A validated elementwise call: the output and, unless it is empty, the layout to launch with."""

    out: torch.Tensor
    operands: list[torch.Tensor]  # expanded to the output shape, possibly made contiguous
    sizes: list[int]  # sizes of merged dims 1..3 (dim 0 is implied by n)
    strides: list[list[int]]  # per operand, 4 merged dims
    contiguous: bool

    @property
    def n(self) -> int:
        return self.out.numel()


def prepare_unary(x: torch.Tensor, name: str = "x") -> Prepared:
    """Validate `x` and allocate the output; shared by every unary launcher (generic, mlu)."""
    check_tensor(name, x)
    out = new_output(x.shape, x.dtype, x.device)
    sizes, strides, contiguous, operands = _layout(x.shape, [x]) if x.numel() else ([], [], True, [x])
    return Prepared(out, operands, sizes, strides, contiguous)


def prepare_binary(a: torch.Tensor, b, names=("input", "other")) -> Prepared:
    """Validate, broadcast and type-promote two operands; shared by every binary launcher."""
    check_tensor(names[0], a)
    b = as_tensor_operand(names[1], b, a)
    check_tensor(names[1], b)
    if b.dim() > 0:
        check_same_device(**{names[0]: a, names[1]: b})
    try:
        shape = torch.broadcast_shapes(a.shape, b.shape)
    except RuntimeError:
        raise ValueError(
            f"{names[1]}: shape {tuple(b.shape)} does not broadcast with {names[0]} shape {tuple(a.shape)}"
        ) from None
    out = new_output(shape, torch.result_type(a, b), a.device)
    if out.numel() == 0:
        return Prepared(out, [a, b], [], [], True)
    sizes, strides, contiguous, operands = _layout(shape, [a.expand(shape), b.expand(shape)])
    return Prepared(out, operands, sizes, strides, contiguous)


def unary(fn, x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """Apply the jit function `fn` (fp32 in, fp32 out) to every element of `x`."""
    p = prepare_unary(x, name)
    if p.n == 0:
        return p.out
    programs, block = _launch_grid(p.n)
    _unary_kernel[(programs,)](p.operands[0], p.out, p.n, *p.sizes, *p.strides[0], FN=fn,
                               CONTIGUOUS=p.contiguous, BLOCK=block)
    return p.out


def binary(fn, a: torch.Tensor, b, b_scale=1, names=("input", "other")) -> torch.Tensor:
    """`fn(a, b * b_scale)` elementwise with torch broadcasting and type promotion."""
    p = prepare_binary(a, b, names)
    if p.n == 0:
        return p.out
    programs, block = _launch_grid(p.n)
    _binary_kernel[(programs,)](
        *p.operands, p.out, p.n, *p.sizes, *p.strides[0], *p.strides[1], float(b_scale),
        FN=fn, CONTIGUOUS=p.contiguous, SCALE_B=b_scale != 1, BLOCK=block,
    )
    return p.out


def unary_cost(x: torch.Tensor, *_, **__):
    return Cost(bytes=2 * nbytes(x), flops=x.numel())


def binary_cost(a: torch.Tensor, b, *_, **__):
    shape = torch.broadcast_shapes(a.shape, b.shape) if isinstance(b, torch.Tensor) else a.shape
    out_bytes = torch.empty(0, dtype=torch.result_type(a, b)).element_size() * torch.Size(shape).numel()
    return Cost(bytes=nbytes(a, b) + out_bytes, flops=torch.Size(shape).numel())


# ---- shared case sets ------------------------------------------------------------------------------

BIG = 2**31 + 1031  # past the int32 range, not a multiple of any block


def _t(shape, transform=None):
    """A case maker for one tensor of `shape`, optionally transformed into a strided view."""

    def make(dtype, device, gen):
        x = randn(shape, dtype, device, gen)
        return transform(x) if transform else x

    return make


def _with_special_values(x):
    x[::7] = float("inf")
    x[1::7] = -float("inf")
    x[2::11] = float("nan")
    return x


def unary_cases(**kwargs) -> dict:
    """quick / edge / llm cases for a one-input elementwise op; kwargs go to every call."""

    def case(name, shape, transform=None, big=False):
        make = _t(shape, transform)
        return Case(name, lambda d, dev, g: ((make(d, dev, g),), dict(kwargs)), big=big)

    return {
        "quick": lambda: [case("1000", (1000,)), case("64x300", (64, 300))],
        "edge": lambda: [
            case("rank4 2x3x5x7", (2, 3, 5, 7)),
            case("transposed 33x65", (65, 33), lambda x: x.t()),
            case("strided 4x2x50[::2]", (4, 2, 100), lambda x: x[..., ::2]),
            case("rank5 non-mergeable", (2, 3, 4, 5, 6), lambda x: x.permute(4, 2, 0, 3, 1)),
            case("one element", (1,)),
            case("inf, -inf and nan", (64,), _with_special_values),
            case("zero-size 0x16", (0, 16)),
            case(f"big {BIG}", (BIG,), big=True),
        ],
        "llm": lambda: [
            case("decode 1x4096", (1, 4096)),
            case("decode 64x4096", (64, 4096)),
            case("prefill 2048x4096", (2048, 4096)),
            case("prefill 2048x12288", (2048, 12288)),
        ],
    }


def binary_cases(**kwargs) -> dict:
    """quick / edge / llm cases for a two-input elementwise op with broadcasting."""

    def case(name, a_shape, b_shape, a_tf=None, b_tf=None, big=False, b_dtype=None):
        make_a, make_b = _t(a_shape, a_tf), _t(b_shape, b_tf)

        def make(d, dev, g):
            b = make_b(b_dtype or d, dev, g) if b_shape is not None else 1.75
            return (make_a(d, dev, g), b), dict(kwargs)

        return Case(name, make, big=big)

    return {
        "quick": lambda: [case("1000", (1000,), (1000,)), case("64x300 + row", (64, 300), (300,))],
        "edge": lambda: [
            case("rank4 broadcast 2x1x5x7,3x1x7", (2, 1, 5, 7), (3, 1, 7)),
            case("transposed 33x65", (65, 33), (65, 33), a_tf=lambda x: x.t(), b_tf=lambda x: x.t()),
            case("column broadcast 40x30,40x1", (40, 30), (40, 1)),
            case("strided rank5", (2, 3, 4, 5, 6), (2, 3, 4, 5, 6), a_tf=lambda x: x.permute(4, 2, 0, 3, 1),
                 b_tf=lambda x: x.permute(4, 2, 0, 3, 1)),
            case("python scalar", (37, 11), None),
            case("0-dim tensor", (37, 11), ()),
            case("promote with fp32", (19, 23), (19, 23), b_dtype=torch.float32),
            case("zero-size 0x16", (0, 16), (16,)),
            case(f"big {BIG}", (BIG,), (BIG,), big=True),
        ],
        "llm": lambda: [
            case("decode 1x4096", (1, 4096), (1, 4096)),
            case("decode 64x4096", (64, 4096), (64, 4096)),
            case("prefill 2048x4096", (2048, 4096), (2048, 4096)),
            case("prefill 2048x12288", (2048, 12288), (2048, 12288)),
        ],
    }
