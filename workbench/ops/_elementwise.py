"""Elementwise launchers shared by unary, binary and ternary ops.

An op supplies only its math as a `@triton.jit` function (e.g. `x * tl.sigmoid(x)`); these launchers
handle broadcasting, non-contiguous and rank-N inputs (strides, up to 4 dims after merging), int64
offsets, math in fp32 and the cast to the output dtype. Contiguous same-shape inputs take a flat path
with no index arithmetic. Python numbers are passed to kernels by value, never as device tensors.

Integer operands (int64 / int32 bookkeeping: positions, lengths, masks turned into counts) are computed
in int64, never through fp32, so results are exact, wrapping on overflow as torch does; the INT
constexpr picks that path, so the float kernels are unchanged. Only ops whose math is exact in
integers ask for it (`integers=True`: add, sub, mul, the comparisons, masked_fill, where).

Both launch styles (ops.mlu.persistent) are here: one tile per program, or persistent programs that
fill the cores and walk their tiles in a grid-stride loop; the per-tile work (`_unary_tile`, ...) is
the same jit code in both.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from workbench import backends

from . import _common
from ._common import (
    Plans,
    as_tensor_operand,
    check_same_device,
    check_tensor,
    is_on_device,
    new_output_as,
    new_output_of,
)
from ._launch import Site, aligned, launch
from ._shapes import broadcast, broadcast_strides, cdiv
from .mlu.persistent import NUM_WARPS, grid_1d, persistent
from .spec import FLOAT_DTYPES, Case, Cost, nbytes, randn

MAX_DIMS = 4
# Elements per program: 1024 on a GPU, scaled up by the launch policy (the backend is fixed per process).
BLOCK = 1024 * backends.active().policy.block_scale
_FLAT = ([1, 1, 1], [[0] * MAX_DIMS, [0] * MAX_DIMS], True)  # sizes, strides, contiguous for flat launches
# Integer dtypes the binary and ternary launchers compute exactly when an op allows integers.
INT_DTYPES = (torch.int32, torch.int64)
FLOAT_OR_INT_DTYPES = FLOAT_DTYPES + INT_DTYPES
# The fast paths' launches of the flat kernels by (math, operand kind, dtype, size): a decode step repeats
# a few sizes, and a Site skips the launch cache's key. The Sites hold the math functions, so their ids
# in the keys stay theirs.
_flat_sites = Plans()
# One-tensor ops in other layouts by (math, x's geometry, allowed dtypes) -> (grid, runtime args after the
# pointers, Site).
_unary_plans = Plans()
# Two-tensor binary ops in other layouts by (math, geometry, alpha, dtype rules) -> (output shape and
# dtype, grid, runtime args after the pointers, Site): a decode step repeats its broadcasts every layer.
_binary_plans = Plans()
# `broadcast` of shapes (torch.Size, hashable), cached: a decode step repeats a few shapes.
cached_broadcast = functools.lru_cache(maxsize=4096)(broadcast)


@triton.jit
def _coords(offs, s1, s2, s3):
    """Row-major coordinates (i0, i1, i2, i3) of flat indices `offs` in a (s0, s1, s2, s3) shape."""
    i3 = offs % s3
    rest = offs // s3
    i2 = rest % s2
    rest = rest // s2
    return rest // s1, rest % s1, i2, i3


@triton.jit
def _offsets(offs, s1, s2, s3, st0, st1, st2, st3, CONTIGUOUS: tl.constexpr):
    """Memory offsets of flat indices `offs` in a (s0, s1, s2, s3) shape with strides st0..st3: the flat
    indices themselves when the launch is CONTIGUOUS (every operand laid out like the output)."""
    if CONTIGUOUS:
        return offs
    else:
        i0, i1, i2, i3 = _coords(offs, s1, s2, s3)
        return i0 * st0 + i1 * st1 + i2 * st2 + i3 * st3


# One tile of each launcher: the tile-style kernels run one per program, the persistent ones loop over
# theirs. `offs` are int64 flat indices into the output. INT picks
# the exact integer path (see the module docstring); the float path is the same code without it.


@triton.jit
def _unary_tile(
    x_ptr,
    out_ptr,
    offs,
    n,
    s1,
    s2,
    s3,
    xs0,
    xs1,
    xs2,
    xs3,
    FN: tl.constexpr,
    CONTIGUOUS: tl.constexpr,
    INT: tl.constexpr,
):
    mask = offs < n
    x_offs = _offsets(offs, s1, s2, s3, xs0, xs1, xs2, xs3, CONTIGUOUS)
    if INT:  # a bool / integer input: FN works on it in its own dtype (bitwise ops)
        x = tl.load(x_ptr + x_offs, mask=mask)
    else:
        x = tl.load(x_ptr + x_offs, mask=mask).to(tl.float32)
    tl.store(out_ptr + offs, FN(x).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _binary_tile(
    a_ptr,
    b_ptr,
    out_ptr,
    offs,
    n,
    s1,
    s2,
    s3,
    as0,
    as1,
    as2,
    as3,
    bs0,
    bs1,
    bs2,
    bs3,
    b_scalar,
    b_scale,
    FN: tl.constexpr,
    CONTIGUOUS: tl.constexpr,
    B_SCALAR: tl.constexpr,
    SCALE_B: tl.constexpr,
    BLOCK: tl.constexpr,
    INT: tl.constexpr,
):
    mask = offs < n
    a_offs = _offsets(offs, s1, s2, s3, as0, as1, as2, as3, CONTIGUOUS)
    b_offs = _offsets(offs, s1, s2, s3, bs0, bs1, bs2, bs3, CONTIGUOUS)
    if INT:  # integer operands: exact int64 math (an int32 result wraps as torch's int32 math does)
        ct = tl.int64
    else:
        ct = tl.float32
    a = tl.load(a_ptr + a_offs, mask=mask).to(ct)
    if B_SCALAR:  # a Python number, passed by value; a block, since the interpreter passes a bare float
        b = tl.full([BLOCK], b_scalar, ct)
    else:
        b = tl.load(b_ptr + b_offs, mask=mask).to(ct)
    if SCALE_B:
        b = b * b_scale
    tl.store(out_ptr + offs, FN(a, b).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _ternary_tile(
    c_ptr,
    a_ptr,
    b_ptr,
    out_ptr,
    offs,
    n,
    s1,
    s2,
    s3,
    cs0,
    cs1,
    cs2,
    cs3,
    as0,
    as1,
    as2,
    as3,
    bs0,
    bs1,
    bs2,
    bs3,
    a_scalar,
    b_scalar,
    FN: tl.constexpr,
    CONTIGUOUS: tl.constexpr,
    A_SCALAR: tl.constexpr,
    B_SCALAR: tl.constexpr,
    BLOCK: tl.constexpr,
    INT: tl.constexpr,
):
    # The first operand keeps its own dtype (a bool condition or mask); the others are fp32, or the
    # integer result's dtype (INT).
    mask = offs < n
    c_offs = _offsets(offs, s1, s2, s3, cs0, cs1, cs2, cs3, CONTIGUOUS)
    a_offs = _offsets(offs, s1, s2, s3, as0, as1, as2, as3, CONTIGUOUS)
    b_offs = _offsets(offs, s1, s2, s3, bs0, bs1, bs2, bs3, CONTIGUOUS)
    c = tl.load(c_ptr + c_offs, mask=mask)
    if INT:
        ct = tl.int64
    else:
        ct = tl.float32
    if A_SCALAR:  # a block, not the bare scalar: the interpreter passes scalars as Python floats
        a = tl.full([BLOCK], a_scalar, ct)
    else:
        a = tl.load(a_ptr + a_offs, mask=mask).to(ct)
    if B_SCALAR:
        b = tl.full([BLOCK], b_scalar, ct)
    else:
        b = tl.load(b_ptr + b_offs, mask=mask).to(ct)
    tl.store(out_ptr + offs, FN(c, a, b).to(out_ptr.dtype.element_ty), mask=mask)


# Two kernels per launcher: strided operands pass sizes and strides; contiguous ones (the common case)
# take a flat kernel without them, which leaves fewer arguments to key and pass on every launch.


@triton.jit
def _unary_kernel(
    x_ptr,
    out_ptr,
    n,
    s1,
    s2,
    s3,
    xs0,
    xs1,
    xs2,
    xs3,
    FN: tl.constexpr,
    BLOCK: tl.constexpr,
    INT: tl.constexpr,
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    _unary_tile(x_ptr, out_ptr, offs, n, s1, s2, s3, xs0, xs1, xs2, xs3, FN, False, INT)


@triton.jit
def _unary_flat_kernel(x_ptr, out_ptr, n, FN: tl.constexpr, BLOCK: tl.constexpr, INT: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    _unary_tile(x_ptr, out_ptr, offs, n, 1, 1, 1, 0, 0, 0, 0, FN, True, INT)


@triton.jit
def _binary_kernel(
    a_ptr,
    b_ptr,
    out_ptr,
    n,
    s1,
    s2,
    s3,
    as0,
    as1,
    as2,
    as3,
    bs0,
    bs1,
    bs2,
    bs3,
    b_scalar,
    b_scale,
    FN: tl.constexpr,
    B_SCALAR: tl.constexpr,
    SCALE_B: tl.constexpr,
    BLOCK: tl.constexpr,
    INT: tl.constexpr,
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    _binary_tile(
        a_ptr,
        b_ptr,
        out_ptr,
        offs,
        n,
        s1,
        s2,
        s3,
        as0,
        as1,
        as2,
        as3,
        bs0,
        bs1,
        bs2,
        bs3,
        b_scalar,
        b_scale,
        FN,
        False,
        B_SCALAR,
        SCALE_B,
        BLOCK,
        INT,
    )


@triton.jit
def _binary_flat_kernel(
    a_ptr,
    b_ptr,
    out_ptr,
    n,
    b_scalar,
    b_scale,
    FN: tl.constexpr,
    B_SCALAR: tl.constexpr,
    SCALE_B: tl.constexpr,
    BLOCK: tl.constexpr,
    INT: tl.constexpr,
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    _binary_tile(
        a_ptr,
        b_ptr,
        out_ptr,
        offs,
        n,
        1,
        1,
        1,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        b_scalar,
        b_scale,
        FN,
        True,
        B_SCALAR,
        SCALE_B,
        BLOCK,
        INT,
    )


@triton.jit
def _ternary_kernel(
    c_ptr,
    a_ptr,
    b_ptr,
    out_ptr,
    n,
    s1,
    s2,
    s3,
    cs0,
    cs1,
    cs2,
    cs3,
    as0,
    as1,
    as2,
    as3,
    bs0,
    bs1,
    bs2,
    bs3,
    a_scalar,
    b_scalar,
    FN: tl.constexpr,
    A_SCALAR: tl.constexpr,
    B_SCALAR: tl.constexpr,
    BLOCK: tl.constexpr,
    INT: tl.constexpr,
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    _ternary_tile(
        c_ptr,
        a_ptr,
        b_ptr,
        out_ptr,
        offs,
        n,
        s1,
        s2,
        s3,
        cs0,
        cs1,
        cs2,
        cs3,
        as0,
        as1,
        as2,
        as3,
        bs0,
        bs1,
        bs2,
        bs3,
        a_scalar,
        b_scalar,
        FN,
        False,
        A_SCALAR,
        B_SCALAR,
        BLOCK,
        INT,
    )


@triton.jit
def _ternary_flat_kernel(
    c_ptr,
    a_ptr,
    b_ptr,
    out_ptr,
    n,
    a_scalar,
    b_scalar,
    FN: tl.constexpr,
    A_SCALAR: tl.constexpr,
    B_SCALAR: tl.constexpr,
    BLOCK: tl.constexpr,
    INT: tl.constexpr,
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    _ternary_tile(
        c_ptr,
        a_ptr,
        b_ptr,
        out_ptr,
        offs,
        n,
        1,
        1,
        1,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        a_scalar,
        b_scalar,
        FN,
        True,
        A_SCALAR,
        B_SCALAR,
        BLOCK,
        INT,
    )


# The persistent style (ops.mlu.persistent): as many programs as fill the cores, each walking its tiles
# in a grid-stride loop; the same per-tile work. CONTIGUOUS picks the flat indexing in one kernel.


@triton.jit
def _unary_persistent_kernel(
    x_ptr,
    out_ptr,
    n,
    s1,
    s2,
    s3,
    xs0,
    xs1,
    xs2,
    xs3,
    FN: tl.constexpr,
    CONTIGUOUS: tl.constexpr,
    BLOCK: tl.constexpr,
    INT: tl.constexpr,
):
    step = tl.num_programs(0).to(tl.int64) * BLOCK
    for start in range(tl.program_id(0).to(tl.int64) * BLOCK, n, step):
        _unary_tile(
            x_ptr,
            out_ptr,
            start + tl.arange(0, BLOCK),
            n,
            s1,
            s2,
            s3,
            xs0,
            xs1,
            xs2,
            xs3,
            FN,
            CONTIGUOUS,
            INT,
        )


@triton.jit
def _binary_persistent_kernel(
    a_ptr,
    b_ptr,
    out_ptr,
    n,
    s1,
    s2,
    s3,
    as0,
    as1,
    as2,
    as3,
    bs0,
    bs1,
    bs2,
    bs3,
    b_scalar,
    b_scale,
    FN: tl.constexpr,
    CONTIGUOUS: tl.constexpr,
    B_SCALAR: tl.constexpr,
    SCALE_B: tl.constexpr,
    BLOCK: tl.constexpr,
    INT: tl.constexpr,
):
    step = tl.num_programs(0).to(tl.int64) * BLOCK
    for start in range(tl.program_id(0).to(tl.int64) * BLOCK, n, step):
        _binary_tile(
            a_ptr,
            b_ptr,
            out_ptr,
            start + tl.arange(0, BLOCK),
            n,
            s1,
            s2,
            s3,
            as0,
            as1,
            as2,
            as3,
            bs0,
            bs1,
            bs2,
            bs3,
            b_scalar,
            b_scale,
            FN,
            CONTIGUOUS,
            B_SCALAR,
            SCALE_B,
            BLOCK,
            INT,
        )


@triton.jit
def _ternary_persistent_kernel(
    c_ptr,
    a_ptr,
    b_ptr,
    out_ptr,
    n,
    s1,
    s2,
    s3,
    cs0,
    cs1,
    cs2,
    cs3,
    as0,
    as1,
    as2,
    as3,
    bs0,
    bs1,
    bs2,
    bs3,
    a_scalar,
    b_scalar,
    FN: tl.constexpr,
    CONTIGUOUS: tl.constexpr,
    A_SCALAR: tl.constexpr,
    B_SCALAR: tl.constexpr,
    BLOCK: tl.constexpr,
    INT: tl.constexpr,
):
    step = tl.num_programs(0).to(tl.int64) * BLOCK
    for start in range(tl.program_id(0).to(tl.int64) * BLOCK, n, step):
        _ternary_tile(
            c_ptr,
            a_ptr,
            b_ptr,
            out_ptr,
            start + tl.arange(0, BLOCK),
            n,
            s1,
            s2,
            s3,
            cs0,
            cs1,
            cs2,
            cs3,
            as0,
            as1,
            as2,
            as3,
            bs0,
            bs1,
            bs2,
            bs3,
            a_scalar,
            b_scalar,
            FN,
            CONTIGUOUS,
            A_SCALAR,
            B_SCALAR,
            BLOCK,
            INT,
        )


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


@functools.lru_cache(maxsize=4096)
def _merged_layout(shape, geometry):
    """(sizes of dims 1..3, strides per operand padded to 4 dims, contiguous flag) of operands of
    `geometry` ((shape, strides) each) broadcast to `shape`, or None when more than MAX_DIMS dims remain.
    Cached: a decode step repeats a few geometries, and working one out costs ~10 µs of Python."""
    return padded_layout(
        _merge_dims(shape, [broadcast_strides(s, st, shape) for s, st in geometry]), len(geometry)
    )


def padded_layout(merged: list[tuple[int, list[int]]], operands: int):
    """(sizes of dims 1..3, strides per operand padded to 4 dims, contiguous flag) of `merged` dims
    (`_merge_dims`) of `operands` operands, or None when more than MAX_DIMS dims remain."""
    if len(merged) > MAX_DIMS:
        return None
    contiguous = len(merged) <= 1 and all(s == 1 for _, strides in merged for s in strides)
    pad = MAX_DIMS - len(merged)
    sizes = (1,) * pad + tuple(size for size, _ in merged)
    strides = tuple((0,) * pad + tuple(strides[k] for _, strides in merged) for k in range(operands))
    return sizes[1:], strides, contiguous


def _layout(shape, operands):
    """(sizes of dims 1..3, strides per operand padded to 4 dims, contiguous flag, operands used) for
    operands broadcast to `shape` (through their strides: no expanded views are made)."""
    shape = tuple(shape)
    layout = _merged_layout(shape, tuple((t.shape, t.stride()) for t in operands))
    if layout is None:  # rare: materialise the operands, which then merge to one dim
        operands = [t.expand(shape).contiguous() for t in operands]
        layout = _merged_layout(shape, tuple((t.shape, t.stride()) for t in operands))
    return (*layout, operands)


def prepare_unary(x: torch.Tensor, name: str = "x", dtypes=FLOAT_DTYPES):
    """Validate `x` (one of `dtypes`), allocate the output and lay `x` out: (out, x, sizes, x_strides,
    contiguous). Shared by both launch styles."""
    check_tensor(name, x, dtypes)
    out = new_output_as(x)
    if x.numel() == 0 or x.is_contiguous():
        sizes, strides, contiguous = _FLAT
    else:
        sizes, strides, contiguous, (x,) = _layout(x.shape, [x])
    return out, x, sizes, strides[0], contiguous


def unary(fn, x: torch.Tensor, name: str = "x", dtypes=FLOAT_DTYPES) -> torch.Tensor:
    """Apply the jit function `fn` (fp32 in, fp32 out; for a bool / integer `x`, where `dtypes` allows
    one, in x's own dtype) to every element of `x`."""
    if dtypes is FLOAT_DTYPES and is_on_device(x) and x.is_contiguous() and not persistent():
        # the decode-sized common case, inlined as binary's
        out = torch.empty_like(x)
        if _common._poison:
            _common._poisoned(out)
        n = out.numel()
        if n:
            key = (id(fn), x.dtype, n)  # by id: a JITFunction's hash runs Python
            site = dict.get(_flat_sites, key)  # the plain lookup: the launch style was tested above
            if site is None:
                site = Site(_unary_flat_kernel, FN=fn, BLOCK=BLOCK, INT=False)
                _flat_sites.put(key, site)
            site(((n + BLOCK - 1) // BLOCK,), x, out, n, aligned=not x.data_ptr() & 15)
        return out
    # Any other layout (a slice such as rotate_half's x[..., d:]): a plan per geometry.
    plan_key = (
        (id(fn), x.shape, x.stride(), x.dtype, x.device, dtypes) if isinstance(x, torch.Tensor) else None
    )
    plan = _unary_plans.get(plan_key)
    if plan is not None:  # checked before; x is read in place
        grid, rest, site = plan
        out = new_output_of(x, x.shape)
        site(grid, x, out, *rest, aligned=not x.data_ptr() & 15)
        return out
    given = x
    out, x, sizes, x_strides, contiguous = prepare_unary(x, name, dtypes)
    n = out.numel()
    if n == 0:
        return out
    if persistent():
        programs, block = grid_1d(n, x.element_size())  # live tile: the loaded x
        launch(
            _unary_persistent_kernel,
            (programs,),
            x,
            out,
            n,
            *sizes,
            *x_strides,
            FN=fn,
            CONTIGUOUS=contiguous,
            BLOCK=block,
            INT=not x.is_floating_point(),
            num_warps=NUM_WARPS,
        )
        return out
    kernel, layout = (_unary_flat_kernel, ()) if contiguous else (_unary_kernel, (*sizes, *x_strides))
    grid, rest = (cdiv(n, BLOCK),), (n, *layout)
    site = Site(kernel, FN=fn, BLOCK=BLOCK, INT=not x.is_floating_point())
    site(grid, x, out, *rest, aligned=aligned(x))
    if x is given and out.is_contiguous():
        _unary_plans.put(plan_key, (grid, rest, site))
    return out


def prepare_binary(
    a: torch.Tensor,
    b,
    names=("input", "other"),
    integers: bool = False,
    out_dtype: torch.dtype | None = None,
    dtypes: tuple[torch.dtype, ...] | None = None,
):
    """Validate, broadcast and type-promote two operands and lay them out:
    (out, a, b_arg, sizes, a_strides, b_strides, contiguous, b_scalar). A Python number `b` comes back
    as `b_scalar` (a float, or an int where the result is an integer; `b_arg` is then `a`, never read),
    else `b_scalar` is None. Shared by both launch styles. `integers`: int32/int64 operands are allowed
    too (the op's math is exact in integers);
    the caller computes those in int64 (`integer_math`). `out_dtype`: the result's dtype when it is not
    the promoted one (bool for a comparison). `dtypes`: the operand dtypes allowed, instead of those
    `integers` implies (the bitwise ops: integers and bool only).

    A Python number is passed to kernels by value (no device tensor, as torch does); contiguous
    same-shape tensors skip all layout work. Both keep the call path short for decode-sized ops.
    """
    dtypes = dtypes or (FLOAT_OR_INT_DTYPES if integers else FLOAT_DTYPES)
    check_tensor(names[0], a, dtypes)
    if isinstance(b, (int, float)) and not isinstance(b, bool):
        # a float tensor with a Python number keeps its dtype; an integer one with a float becomes float
        dtype = a.dtype if a.is_floating_point() else torch.result_type(a, b)
        out = new_output_as(a, out_dtype or dtype)
        operands, b_scalar, flat = [a], (float(b) if dtype.is_floating_point else int(b)), a.is_contiguous()
    else:
        if not isinstance(b, torch.Tensor) or b.dim() == 0:  # else as_tensor_operand returns b itself
            b = as_tensor_operand(names[1], b, a)
        check_tensor(names[1], b, dtypes)
        if b.dim() > 0 and b.device != a.device:
            check_same_device(**{names[0]: a, names[1]: b})
        if a.shape == b.shape:  # the common case, allocated the cheap way
            out = new_output_as(a, out_dtype or (a.dtype if a.dtype == b.dtype else torch.result_type(a, b)))
            flat = a.is_contiguous() and b.is_contiguous()
        else:
            shape = cached_broadcast(a.shape, b.shape)
            if shape is None:
                raise ValueError(
                    f"{names[1]}: shape {tuple(b.shape)} does not broadcast with "
                    f"{names[0]} shape {tuple(a.shape)}"
                )
            out = new_output_of(a, shape, out_dtype or torch.result_type(a, b))
            flat = False  # one operand is broadcast
        operands, b_scalar = [a, b], None
    if flat or out.numel() == 0:
        sizes, strides, contiguous = _FLAT
    else:
        sizes, strides, contiguous, operands = _layout(out.shape, operands)
    b_arg, b_strides = (operands[1], strides[1]) if len(operands) == 2 else (operands[0], [0] * MAX_DIMS)
    return out, operands[0], b_arg, sizes, strides[0], b_strides, contiguous, b_scalar


def integer_math(a: torch.Tensor, b) -> bool:
    """Whether `a op b` promotes to an integer dtype (validated operands): then the kernel works in int64."""
    if isinstance(b, torch.Tensor):
        return not (a.is_floating_point() or b.is_floating_point())
    return not (a.is_floating_point() or isinstance(b, float))


def scale_arg(b_scale, is_int: bool):
    """`alpha` as the kernel argument: an int for integer math (torch refuses a float alpha there)."""
    if not is_int:
        return float(b_scale)
    if isinstance(b_scale, bool) or not isinstance(b_scale, int):
        raise TypeError(f"alpha: expected an int for integer operands, got {b_scale!r}")
    return b_scale


def binary(
    fn,
    a: torch.Tensor,
    b,
    b_scale=1,
    names=("input", "other"),
    integers: bool = False,
    out_dtype: torch.dtype | None = None,
    dtypes: tuple[torch.dtype, ...] | None = None,
) -> torch.Tensor:
    """`fn(a, b * b_scale)` elementwise with torch broadcasting and type promotion (see prepare_binary)."""
    if b_scale == 1 and out_dtype is None and dtypes is None and is_on_device(a) and not persistent():
        # The decode-sized common cases, checked in a few attribute reads: a contiguous float tensor with
        # one of its dtype, shape and device, or with a Python number. Inlined (allocation, alignment,
        # the Sites' dict): each call saved is a fraction of a µs on every decode-sized call.
        if isinstance(b, torch.Tensor):
            fast = b.dtype == a.dtype and b.is_contiguous() and b.shape == a.shape and b.device == a.device
            b_scalar = None
        else:
            fast = type(b) is float or type(b) is int
            b_scalar = float(b) if fast else None
        if fast and a.is_contiguous():
            out = torch.empty_like(a)
            if _common._poison:
                _common._poisoned(out)
            n = out.numel()
            if n:
                key = (id(fn), b_scalar is None, a.dtype, n)  # by id: a JITFunction's hash runs Python
                site = dict.get(_flat_sites, key)  # the plain lookup: the launch style was tested above
                if site is None:
                    site = Site(
                        _binary_flat_kernel,
                        FN=fn,
                        B_SCALAR=b_scalar is not None,
                        SCALE_B=False,
                        BLOCK=BLOCK,
                        INT=False,
                    )
                    _flat_sites.put(key, site)
                if b_scalar is None:
                    site(
                        ((n + BLOCK - 1) // BLOCK,),
                        a,
                        b,
                        out,
                        n,
                        0.0,
                        1.0,
                        aligned=not (a.data_ptr() | b.data_ptr()) & 15,
                    )
                else:
                    site(
                        ((n + BLOCK - 1) // BLOCK,),
                        a,
                        a,
                        out,
                        n,
                        b_scalar,
                        1.0,
                        aligned=not a.data_ptr() & 15,
                    )
            return out
    # Two tensors in any other layout (a broadcast, a strided view): a plan per geometry, keyed by one flat
    # tuple (cheaper to build and hash than `geometry`'s nested ones: most decode muls broadcast).
    try:
        plan_key = (
            id(fn), a.shape, a.stride(), a.dtype, a.device, b.shape, b.stride(), b.dtype, b.device,
            b_scale, integers, out_dtype, dtypes,
        )  # fmt: skip
    except AttributeError:  # a number, or not a tensor at all: the checked path below
        plan_key = None
    plan = _binary_plans.get(plan_key)
    if plan is not None:  # checked before; a and b are read in place
        shape, dtype, grid, rest, site = plan
        out = new_output_of(a, shape, dtype)
        site(grid, a, b, out, *rest, aligned=not (a.data_ptr() | b.data_ptr()) & 15)
        return out
    out, a_arg, b_arg, sizes, a_strides, b_strides, contiguous, b_scalar = prepare_binary(
        a, b, names, integers, out_dtype, dtypes
    )
    n = out.numel()
    if n == 0:
        return out
    is_int = integer_math(a_arg, b_arg if b_scalar is None else b_scalar)
    if persistent():
        # live tiles: the loaded a, and the loaded b or the block a scalar b is made into (fp32, or int64)
        b_bytes = (8 if is_int else 4) if b_scalar is not None else b_arg.element_size()
        programs, block = grid_1d(n, a_arg.element_size() + b_bytes)
        scalars = ((0 if is_int else 0.0) if b_scalar is None else b_scalar, scale_arg(b_scale, is_int))
        launch(
            _binary_persistent_kernel,
            (programs,),
            a_arg,
            b_arg,
            out,
            n,
            *sizes,
            *a_strides,
            *b_strides,
            *scalars,
            FN=fn,
            CONTIGUOUS=contiguous,
            B_SCALAR=b_scalar is not None,
            SCALE_B=b_scale != 1,
            BLOCK=block,
            INT=is_int,
            num_warps=NUM_WARPS,
        )
        return out
    kernel, layout = (
        (_binary_flat_kernel, ()) if contiguous else (_binary_kernel, (*sizes, *a_strides, *b_strides))
    )
    grid = (cdiv(n, BLOCK),)
    rest = (n, *layout, (0 if is_int else 0.0) if b_scalar is None else b_scalar, scale_arg(b_scale, is_int))
    site = Site(kernel, FN=fn, B_SCALAR=b_scalar is not None, SCALE_B=b_scale != 1, BLOCK=BLOCK, INT=is_int)
    site(grid, a_arg, b_arg, out, *rest, aligned=aligned(a_arg, b_arg))
    if plan_key is not None and a_arg is a and b_arg is b and out.is_contiguous():
        _binary_plans.put(plan_key, (tuple(out.shape), out.dtype, grid, rest, site))
    return out


def _scalar_operand(name: str, value) -> float | None:
    """A Python number or a 0-dim CPU tensor as a Python float (for a kernel argument); else None.

    Reading a CPU tensor's value does not synchronise a device. Type promotion uses the original
    operand (torch.result_type), so `bf16_tensor + 2.5` stays bf16 and a 0-dim tensor does not promote.
    """
    if isinstance(value, torch.Tensor):
        if value.dim() != 0 or value.device.type != "cpu":
            return None
        if value.is_complex():
            raise TypeError(f"{name}: expected a real number, got a 0-dim {value.dtype} tensor")
        return float(value.item())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None  # the tensor path reports the type error


def prepare_ternary(
    c: torch.Tensor,
    a,
    b,
    out_dtype: torch.dtype,
    names=("condition", "input", "other"),
    c_dtypes=(torch.bool,),
    integers: bool = False,
):
    """Validate and broadcast three operands and lay them out:
    (out, args, sizes, strides, contiguous, scalars).

    `args` are the c, a and b kernel arguments (a number's place holds c, never read), `strides` their
    strides (c, a, b), `scalars` the values of number operands (a, b; None for a tensor). Shared by both
    launch styles. `integers`: an int32/int64
    `out_dtype` is allowed (computed exactly: `out.dtype in INT_DTYPES`); numbers must then be integral.
    """
    check_tensor(names[0], c, dtypes=c_dtypes)
    dtypes = FLOAT_OR_INT_DTYPES if integers else FLOAT_DTYPES
    is_int = out_dtype in INT_DTYPES
    if is_int and not integers:
        raise TypeError(
            f"{names[1]}, {names[2]}: expected a float32, float16 or bfloat16 result, got {out_dtype}"
        )
    values, operands = [], [c]
    for name, v in ((names[1], a), (names[2], b)):
        value = _scalar_operand(name, v)
        if value is None:
            check_tensor(name, v, dtypes)
            if v.device != c.device:
                check_same_device(**{names[0]: c, name: v})
            operands.append(v)
        elif is_int:
            if not float(value).is_integer():
                raise TypeError(f"{name}: expected an integral value for a {out_dtype} result, got {value}")
            value = int(value)
        values.append(value)
    shape = cached_broadcast(*[t.shape for t in operands])
    if shape is None:
        raise ValueError(f"{', '.join(names)}: shapes {[tuple(t.shape) for t in operands]} do not broadcast")
    out = new_output_of(c, shape, out_dtype)
    if out.numel() == 0 or all(t.shape == shape and t.is_contiguous() for t in operands):
        sizes, contiguous = _FLAT[0], True
        strides = [[0] * MAX_DIMS] * len(operands)
    else:
        sizes, strides, contiguous, operands = _layout(shape, operands)
    # Scalar operands get the condition's pointer and strides: never read (A_SCALAR / B_SCALAR).
    args, arg_strides, rest = [operands[0]], [strides[0]], iter(zip(operands[1:], strides[1:]))
    for value in values:
        t, st = (operands[0], strides[0]) if value is not None else next(rest)
        args.append(t)
        arg_strides.append(st)
    return out, args, sizes, arg_strides, contiguous, values


def ternary_scalars(values, is_int: bool = False) -> tuple:
    """The two scalar kernel arguments: a number operand's value, a tensor operand's place a zero of the
    kernel's compute type (int for `is_int`)."""
    zero = 0 if is_int else 0.0
    return zero if values[0] is None else values[0], zero if values[1] is None else values[1]


def ternary_args(n, sizes, strides, values, is_int: bool = False) -> list:
    """The runtime arguments after the pointers shared by the strided ternary kernels: n, sizes, strides,
    scalars (`ternary_scalars`)."""
    return [n, *sizes, *strides[0], *strides[1], *strides[2], *ternary_scalars(values, is_int)]


def ternary(
    fn,
    c: torch.Tensor,
    a,
    b,
    out_dtype: torch.dtype,
    names=("condition", "input", "other"),
    c_dtypes=(torch.bool,),
    integers: bool = False,
) -> torch.Tensor:
    """`fn(c, a, b)` elementwise with broadcasting into a new `out_dtype` tensor.

    `c` is loaded in its own dtype (one of `c_dtypes`), `a` and `b` (tensors or numbers) as fp32, or,
    where `integers` allows an int32/int64 `out_dtype`, in int64 (numbers must then be integral).
    """
    out, args, sizes, strides, contiguous, values = prepare_ternary(
        c, a, b, out_dtype, names, c_dtypes, integers
    )
    n = out.numel()
    if n == 0:
        return out
    is_int = out_dtype in INT_DTYPES
    if persistent():
        # live tiles: the loaded c, and for a and b the loaded tile or the block a number is made into
        programs, block = grid_1d(
            n,
            args[0].element_size()
            + sum(
                (8 if is_int else 4) if v is not None else t.element_size() for v, t in zip(values, args[1:])
            ),
        )
        launch(
            _ternary_persistent_kernel,
            (programs,),
            *args,
            out,
            *ternary_args(n, sizes, strides, values, is_int),
            FN=fn,
            CONTIGUOUS=contiguous,
            A_SCALAR=values[0] is not None,
            B_SCALAR=values[1] is not None,
            BLOCK=block,
            INT=is_int,
            num_warps=NUM_WARPS,
        )
        return out
    if contiguous:
        kernel, rest = _ternary_flat_kernel, (n, *ternary_scalars(values, is_int))
    else:
        kernel, rest = _ternary_kernel, ternary_args(n, sizes, strides, values, is_int)
    launch(
        kernel,
        (cdiv(n, BLOCK),),
        *args,
        out,
        *rest,
        FN=fn,
        A_SCALAR=values[0] is not None,
        B_SCALAR=values[1] is not None,
        BLOCK=BLOCK,
        INT=is_int,
    )
    return out


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


def randint(
    shape, dtype: torch.dtype, device: torch.device, gen: torch.Generator, bound: int
) -> torch.Tensor:
    """Fresh random integers in [-bound, bound) of `dtype` (bound capped at the dtype's 2**(bits - 2), so
    that a sum of two stays in range; bool: a random mask), drawn on the device."""
    if dtype == torch.bool:
        return torch.rand(shape, device=device, generator=gen) < 0.5
    bound = min(bound, (torch.iinfo(dtype).max + 1) // 2)
    return torch.randint(-bound, bound, shape, dtype=dtype, device=device, generator=gen)


def _int_binary_cases(bound: int) -> dict:
    """Integer cases (their dtypes fixed, whatever the float dtype of the run): exact compare.
    `bound`: int64 operands in [-bound, bound) (past 2**24 an fp32 round trip would lose them);
    int32 ones in [-2**15, 2**15), so that no case overflows."""

    def case(name, a_shape, b_shape, a_dtype=torch.int64, b_dtype=torch.int64, b_number=None):
        def make(d, dev, g):
            a = randint(a_shape, a_dtype, dev, g, bound if a_dtype == torch.int64 else 2**15)
            b = (
                b_number
                if b_shape is None
                else randint(b_shape, b_dtype, dev, g, bound if b_dtype == torch.int64 else 2**15)
            )
            return (a, b), {}

        return Case(name, make)

    return {
        "quick": [case("int64 positions 2x33, number", (2, 33), None, b_number=1)],
        "edge": [
            case(f"int64 +-{bound} row broadcast", (9, 40), (40,)),
            case("int32 with int64 (promotes)", (7, 13), (7, 13), a_dtype=torch.int32),
            case("int32 transposed", (13, 7), (13, 7), a_dtype=torch.int32, b_dtype=torch.int32),
            case("int64 with a float number (fp32 result)", (5, 6), None, b_number=0.5),
        ],
    }


def binary_cases(integers: int | None = None, **kwargs) -> dict:
    """quick / edge / llm cases for a two-input elementwise op with broadcasting. `integers`: also
    int64/int32 cases with operands in [-integers, integers) (ops whose math is exact in integers)."""

    def case(name, a_shape, b_shape, a_tf=None, b_tf=None, big=False, b_dtype=None):
        make_a, make_b = _t(a_shape, a_tf), _t(b_shape, b_tf)

        def make(d, dev, g):
            b = make_b(b_dtype or d, dev, g) if b_shape is not None else 1.75
            return (make_a(d, dev, g), b), dict(kwargs)

        return Case(name, make, big=big)

    ints = _int_binary_cases(integers) if integers else {"quick": [], "edge": []}
    return {
        "quick": lambda: [
            case("1000", (1000,), (1000,)),
            case("64x300 + row", (64, 300), (300,)),
            *ints["quick"],
        ],
        "edge": lambda: [
            case("rank4 broadcast 2x1x5x7,3x1x7", (2, 1, 5, 7), (3, 1, 7)),
            case("transposed 33x65", (65, 33), (65, 33), a_tf=lambda x: x.t(), b_tf=lambda x: x.t()),
            case("column broadcast 40x30,40x1", (40, 30), (40, 1)),
            case(
                "strided rank5",
                (2, 3, 4, 5, 6),
                (2, 3, 4, 5, 6),
                a_tf=lambda x: x.permute(4, 2, 0, 3, 1),
                b_tf=lambda x: x.permute(4, 2, 0, 3, 1),
            ),
            case("python scalar", (37, 11), None),
            case("0-dim tensor", (37, 11), ()),
            case("promote with fp32", (19, 23), (19, 23), b_dtype=torch.float32),
            case("zero-size 0x16", (0, 16), (16,)),
            case(f"big {BIG}", (BIG,), (BIG,), big=True),
            *ints["edge"],
        ],
        "llm": lambda: [
            case("decode 1x4096", (1, 4096), (1, 4096)),
            case("decode 64x4096", (64, 4096), (64, 4096)),
            case("prefill 2048x4096", (2048, 4096), (2048, 4096)),
            case("prefill 2048x12288", (2048, 12288), (2048, 12288)),
        ],
    }
