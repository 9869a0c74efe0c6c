"""Elementwise launchers shared by unary, binary and ternary ops.

An op supplies only its math as a `@triton.jit` function (e.g. `x * tl.sigmoid(x)`); these launchers
handle broadcasting, non-contiguous and rank-N inputs (strides, up to 4 dims after merging), int64
offsets, math in fp32 and the cast to the output dtype. Contiguous same-shape inputs take a flat path
with no index arithmetic. A Python number (or a 0-dim CPU tensor) operand is passed to the kernel as a
scalar argument: no device tensor is made for it and nothing is loaded.
"""

from __future__ import annotations

from numbers import Number

import torch
import triton
import triton.language as tl

from ._common import as_tensor_operand, cdiv, check_same_device, check_tensor, launch_policy, new_output
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
def _binary_kernel(a_ptr, b_ptr, out_ptr, n, s1, s2, s3, as0, as1, as2, as3, bs0, bs1, bs2, bs3, b_value, b_scale,
                   FN: tl.constexpr, CONTIGUOUS: tl.constexpr, B_SCALAR: tl.constexpr, SCALE_B: tl.constexpr,
                   BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    if CONTIGUOUS:
        a_offs = offs
        b_offs = offs
    else:
        a_offs = _offsets(offs, s1, s2, s3, as0, as1, as2, as3)
        b_offs = _offsets(offs, s1, s2, s3, bs0, bs1, bs2, bs3)
    a = tl.load(a_ptr + a_offs, mask=mask).to(tl.float32)
    if B_SCALAR:
        b = tl.full([BLOCK], b_value, tl.float32)  # already scaled on the host
    else:
        b = tl.load(b_ptr + b_offs, mask=mask).to(tl.float32)
        if SCALE_B:
            b = b * b_scale
    tl.store(out_ptr + offs, FN(a, b).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _ternary_kernel(c_ptr, a_ptr, b_ptr, out_ptr, n, s1, s2, s3, cs0, cs1, cs2, cs3, as0, as1, as2, as3,
                    bs0, bs1, bs2, bs3, a_value, b_value, FN: tl.constexpr, CONTIGUOUS: tl.constexpr,
                    A_SCALAR: tl.constexpr, B_SCALAR: tl.constexpr, BLOCK: tl.constexpr):
    # The first operand keeps its own dtype (a bool condition or mask); the others are fp32.
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    if CONTIGUOUS:
        c_offs = offs
        a_offs = offs
        b_offs = offs
    else:
        c_offs = _offsets(offs, s1, s2, s3, cs0, cs1, cs2, cs3)
        a_offs = _offsets(offs, s1, s2, s3, as0, as1, as2, as3)
        b_offs = _offsets(offs, s1, s2, s3, bs0, bs1, bs2, bs3)
    c = tl.load(c_ptr + c_offs, mask=mask)
    if A_SCALAR:
        a = tl.full([BLOCK], a_value, tl.float32)
    else:
        a = tl.load(a_ptr + a_offs, mask=mask).to(tl.float32)
    if B_SCALAR:
        b = tl.full([BLOCK], b_value, tl.float32)
    else:
        b = tl.load(b_ptr + b_offs, mask=mask).to(tl.float32)
    tl.store(out_ptr + offs, FN(c, a, b).to(out_ptr.dtype.element_ty), mask=mask)


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


def broadcast_shape(*shapes) -> list[int] | None:
    """torch's broadcast of `shapes`, or None when they do not broadcast (much cheaper than
    torch.broadcast_shapes, which goes through symbolic-shape checks: this is on every call's path)."""
    first = shapes[0]
    if all(s == first for s in shapes[1:]):
        return list(first)
    rank = max(len(s) for s in shapes)
    out = [1] * rank
    for shape in shapes:
        for i, size in enumerate(shape, rank - len(shape)):
            if size != 1:
                if out[i] != 1 and out[i] != size:
                    return None
                out[i] = size
    return out


def _broadcast_strides(t: torch.Tensor, shape) -> list[int]:
    """t's strides as if expanded to `shape` (0 along broadcast dims), without making the view."""
    lead = len(shape) - t.dim()
    return [0] * lead + [0 if size == 1 and shape[lead + i] != 1 else st
                         for i, (size, st) in enumerate(zip(t.shape, t.stride()))]


def _layout(shape, operands):
    """(sizes of dims 1..3, strides per operand padded to 4 dims, contiguous flag, operands used).

    `operands` broadcast to `shape`; broadcast dims get stride 0.
    """
    if all(t.is_contiguous() and list(t.shape) == list(shape) for t in operands):  # the common case, fast
        return [1, 1, 1], [[0, 0, 0, 0]] * len(operands), True, operands
    merged = _merge_dims(shape, [_broadcast_strides(t, shape) for t in operands])
    if len(merged) > MAX_DIMS:  # rare: materialise the operands, which then merge to one dim
        operands = [t.expand(shape).contiguous() for t in operands]
        merged = _merge_dims(shape, [t.stride() for t in operands])
    contiguous = len(merged) <= 1 and all(s == 1 for _, strides in merged for s in strides)
    pad = MAX_DIMS - len(merged)
    sizes = [1] * pad + [size for size, _ in merged]
    strides = [[0] * pad + [strides[k] for _, strides in merged] for k in range(len(operands))]
    return sizes[1:], strides, contiguous, operands


def _launch_grid(n: int) -> tuple[int, int]:
    block = BLOCK * launch_policy().block_scale
    return cdiv(n, block), block


def _scalar_operand(name: str, value) -> float | None:
    """A Python number or a 0-dim CPU tensor as a Python float (for a scalar kernel argument); else None.

    Reading a CPU tensor's value does not synchronise a device. Type promotion still uses the original
    operand (torch.result_type), so `bf16_tensor + 2.5` stays bf16 and a 0-dim tensor does not promote.
    """
    if isinstance(value, torch.Tensor):
        if value.dim() != 0 or value.device.type != "cpu":
            return None
        if value.is_complex():
            raise TypeError(f"{name}: expected a real number, got a 0-dim {value.dtype} tensor")
        return float(value.item())
    if isinstance(value, bool) or not isinstance(value, Number) or isinstance(value, complex):
        return None  # the tensor path reports the type error
    return float(value)


def unary(fn, x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """Apply the jit function `fn` (fp32 in, fp32 out) to every element of `x`."""
    check_tensor(name, x)
    out = new_output(x.shape, x.dtype, x.device)
    n = x.numel()
    if n == 0:
        return out
    sizes, strides, contiguous, (x,) = _layout(x.shape, [x])
    programs, block = _launch_grid(n)
    _unary_kernel[(programs,)](x, out, n, *sizes, *strides[0], FN=fn, CONTIGUOUS=contiguous, BLOCK=block)
    return out


def binary(fn, a: torch.Tensor, b, b_scale=1, names=("input", "other")) -> torch.Tensor:
    """`fn(a, b * b_scale)` elementwise with torch broadcasting and type promotion."""
    check_tensor(names[0], a)
    b_value = _scalar_operand(names[1], b)
    if b_value is None:
        b = as_tensor_operand(names[1], b, a)
        check_tensor(names[1], b)
        check_same_device(**{names[0]: a, names[1]: b})
    shape = _broadcast(names, a, b)
    out = new_output(shape, torch.result_type(a, b), a.device)
    n = out.numel()
    if n == 0:
        return out
    programs, block = _launch_grid(n)
    if b_value is not None:
        sizes, strides, contiguous, (a,) = _layout(shape, [a])
        _binary_kernel[(programs,)](
            a, a, out, n, *sizes, *strides[0], *strides[0], b_value * b_scale, 1.0,
            FN=fn, CONTIGUOUS=contiguous, B_SCALAR=True, SCALE_B=False, BLOCK=block,
        )
        return out
    sizes, strides, contiguous, (a, b) = _layout(shape, [a, b])
    _binary_kernel[(programs,)](
        a, b, out, n, *sizes, *strides[0], *strides[1], 0.0, float(b_scale),
        FN=fn, CONTIGUOUS=contiguous, B_SCALAR=False, SCALE_B=b_scale != 1, BLOCK=block,
    )
    return out


def ternary(fn, c: torch.Tensor, a, b, out_dtype: torch.dtype, names=("condition", "input", "other"),
            c_dtypes=(torch.bool,)) -> torch.Tensor:
    """`fn(c, a, b)` elementwise with broadcasting into a new `out_dtype` tensor.

    `c` is loaded in its own dtype (one of `c_dtypes`), `a` and `b` (tensors or numbers) as fp32.
    """
    check_tensor(names[0], c, dtypes=c_dtypes)
    values, tensors = [], []
    for name, v in ((names[1], a), (names[2], b)):
        value = _scalar_operand(name, v)
        if value is None:
            check_tensor(name, v)
            tensors.append((name, v))
        values.append(value)
    check_same_device(**{names[0]: c}, **dict(tensors))
    shapes = [c.shape] + [t.shape for _, t in tensors]
    shape = broadcast_shape(*shapes)
    if shape is None:
        raise ValueError(f"{', '.join(names)}: shapes {[tuple(s) for s in shapes]} do not broadcast")
    out = new_output(shape, out_dtype, c.device)
    n = out.numel()
    if n == 0:
        return out
    sizes, strides, contiguous, operands = _layout(shape, [c] + [t for _, t in tensors])
    # Scalar operands get the condition's strides and pointer: never read (A_SCALAR / B_SCALAR).
    ptrs, rest = [], iter(zip(operands[1:], strides[1:]))
    for value in values:
        ptrs.append((operands[0], strides[0]) if value is not None else next(rest))
    programs, block = _launch_grid(n)
    _ternary_kernel[(programs,)](
        operands[0], ptrs[0][0], ptrs[1][0], out, n, *sizes, *strides[0], *ptrs[0][1], *ptrs[1][1],
        values[0] if values[0] is not None else 0.0, values[1] if values[1] is not None else 0.0,
        FN=fn, CONTIGUOUS=contiguous, A_SCALAR=values[0] is not None, B_SCALAR=values[1] is not None,
        BLOCK=block,
    )
    return out


def _broadcast(names, a: torch.Tensor, b) -> list[int]:
    if not isinstance(b, torch.Tensor):
        return list(a.shape)
    shape = broadcast_shape(a.shape, b.shape)
    if shape is None:
        raise ValueError(
            f"{names[1]}: shape {tuple(b.shape)} does not broadcast with {names[0]} shape {tuple(a.shape)}")
    return shape


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
