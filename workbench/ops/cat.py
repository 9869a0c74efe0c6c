"""cat: tensors joined along `dim` (torch.cat).

Two inputs of the result's dtype (a KV-cache append, rotate_half) take one launch that reads each output
element from whichever input holds it; anything else is one strided copy per input into its slice of the
output. Type promotion as torch (the result dtype of all inputs); legacy 1-D empty inputs of shape (0,) are
skipped as torch does.
"""

import functools
import math

import torch
import triton
import triton.language as tl

from ._common import Plans, check_same_device, check_tensor, new_output, new_output_of
from ._elementwise import BLOCK, _merge_dims
from ._launch import Site, aligned
from ._movement import MOVE_DTYPES, copy_into
from ._reduce import normalize_dims
from ._shapes import cdiv
from .mlu.persistent import persistent
from .spec import Case, Cost, OpSpec, nbytes, randn, register, same_arguments


def prepare(tensors, dim: int = 0) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Validate; (output, [(its slice, the input copied there)]). Shared by both launch styles."""
    if isinstance(tensors, torch.Tensor) or not isinstance(tensors, (list, tuple)) or not tensors:
        raise TypeError(
            f"tensors: expected a non-empty list or tuple of tensors, got {type(tensors).__name__}"
        )
    for i, t in enumerate(tensors):
        check_tensor(f"tensors[{i}]", t, MOVE_DTYPES)
    check_same_device(**{f"tensors[{i}]": t for i, t in enumerate(tensors)})
    parts = [t for t in tensors if not (t.dim() == 1 and t.shape[0] == 0)] or [tensors[0]]
    first = parts[0]
    if first.dim() == 0:
        raise ValueError("tensors: zero-dimensional tensors cannot be concatenated")
    (d,) = normalize_dims(first, dim)
    for i, t in enumerate(parts):
        if t.dim() != first.dim() or any(
            a != b for k, (a, b) in enumerate(zip(t.shape, first.shape)) if k != d
        ):
            raise ValueError(
                f"tensors: shape {tuple(t.shape)} does not match {tuple(first.shape)} outside dim {d}"
            )
    shape = list(first.shape)
    shape[d] = sum(t.shape[d] for t in parts)
    dtype = functools.reduce(torch.promote_types, (t.dtype for t in tensors))
    out = new_output(shape, dtype, first.device)
    copies, offset = [], 0
    for t in parts:
        if t.shape[d]:
            copies.append((out.narrow(d, offset, t.shape[d]), t))
            offset += t.shape[d]
    return out, copies


@triton.jit
def _cat2_kernel(
    a_ptr, b_ptr, out_ptr, n, size, size_a, inner, a_so, a_sd, a_si, b_so, b_sd, b_si, BLOCK: tl.constexpr
):
    """out, contiguous (outer, size, inner), = a (its first size_a along the middle dim) then b; the flat
    index math in int32 (n < 2**31), the source offsets in int64."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < n
    i = (offs % inner).to(tl.int64)
    rest = offs // inner
    j = rest % size
    o = (rest // size).to(tl.int64)
    in_a = j < size_a
    a = tl.load(a_ptr + o * a_so + j.to(tl.int64) * a_sd + i * a_si, mask=ok & in_a)
    b = tl.load(b_ptr + o * b_so + (j - size_a).to(tl.int64) * b_sd + i * b_si, mask=ok & (j >= size_a))
    tl.store(out_ptr + offs, tl.where(in_a, a, b), mask=ok)


def _as_3d(t: torch.Tensor, d: int) -> tuple[int, int, int] | None:
    """(outer, dim d, inner) strides of `t`, or None when the dims before or after d do not merge."""
    outer = _merge_dims(t.shape[:d], [t.stride()[:d]])
    inner = _merge_dims(t.shape[d + 1 :], [t.stride()[d + 1 :]])
    if len(outer) > 1 or len(inner) > 1:
        return None
    return (outer[0][1][0] if outer else 0), t.stride(d), (inner[0][1][0] if inner else 0)


def _cat2(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor, d: int) -> tuple | None:
    """out = cat((a, b), d) in one launch when both read as 3-D views of out's dtype: returns the launch's
    (grid, runtime ints, Site), or None (nothing launched) otherwise."""
    n = out.numel()
    if a.dtype != out.dtype or b.dtype != out.dtype or n >= 2**31:
        return None
    a_strides, b_strides = _as_3d(a, d), _as_3d(b, d)
    if a_strides is None or b_strides is None:
        return None
    grid = (cdiv(n, BLOCK),)
    ints = (n, out.shape[d], a.shape[d], math.prod(out.shape[d + 1 :]), *a_strides, *b_strides)
    site = Site(_cat2_kernel, BLOCK=BLOCK)
    if n:
        site(grid, a, b, out, *ints, aligned=aligned(a, b))
    return grid, ints, site


# Two inputs' shapes, strides, dtypes and devices and dim -> (output shape, grid, runtime ints, Site) of
# their one-launch cat: a decode step appends to the KV cache of every layer with the same geometry.
_plans = Plans()


def _plan_key(tensors, dim) -> tuple | None:
    """The plan key of two tensors: one flat tuple (cheaper to build and hash than `geometry`'s nested
    ones, on every KV-cache append); None for anything else."""
    if not isinstance(tensors, (list, tuple)) or len(tensors) != 2:
        return None
    a, b = tensors
    try:
        return a.shape, a.stride(), a.dtype, a.device, b.shape, b.stride(), b.dtype, b.device, dim
    except AttributeError:  # not tensors: the checked path names them
        return None


def cat(tensors, dim: int = 0) -> torch.Tensor:
    plan_key = _plan_key(tensors, dim)
    plan = _plans.get(plan_key)
    if plan is not None:  # checked before: both inputs are read in place
        a, b = tensors
        shape, grid, ints, site = plan
        out = new_output_of(a, shape)
        if ints[0]:
            site(grid, a, b, out, *ints, aligned=not (a.data_ptr() | b.data_ptr()) & 15)
        return out
    out, copies = prepare(tensors, dim)
    # The one-launch form of two inputs has no persistent form: persistent launches copy input by input.
    if len(copies) == 2 and not persistent():
        launched = _cat2(out, copies[0][1], copies[1][1], normalize_dims(out, dim)[0])
        if launched is not None:
            if copies[0][1] is tensors[0] and copies[1][1] is tensors[1]:  # no legacy empty input skipped
                _plans.put(plan_key, (tuple(out.shape), *launched))
            return out
    for dst, src in copies:
        copy_into(dst, src)
    return out


def _cost(tensors, dim=0):
    return Cost(bytes=2 * nbytes(*tensors), flops=0)


def _case(name, shapes, dim, dtypes=None, transform=None, big=False):
    def make(d, dev, g):
        ts = [randn(s, (dtypes[i] if dtypes else None) or d, dev, g) for i, s in enumerate(shapes)]
        return ([transform(t) for t in ts] if transform else ts, dim), {}

    return Case(name, make, big=big)


def _kv_append(name, batch, past):
    return _case(name, [(batch, 8, past, 128), (batch, 8, 1, 128)], 2)


def _rotate_half(d, dev, g):
    """transformers' rotate_half: cat((-x2, x1), dim=-1) of the halves of q's head_dim (strided views)."""
    q = randn((1, 32, 2048, 128), d, dev, g)
    return ([q[..., 64:], q[..., :64]], -1), {}


SPEC = register(
    OpSpec(
        name="cat",
        reference=torch.cat,
        impl=cat,
        cases={
            "quick": lambda: [
                _case("dim 0 of 3", [(10, 32), (5, 32), (7, 32)], 0),
                _case("dim 1 of 2", [(16, 20), (16, 45)], 1),
            ],
            "edge": lambda: [
                _case("rank4 dim 2 (KV append)", [(2, 3, 5, 8), (2, 3, 1, 8)], 2),
                _case("dim -1 strided halves", [(6, 40), (6, 40)], -1, transform=lambda t: t[:, ::2]),
                _case("transposed inputs", [(20, 7), (20, 9)], 0, transform=lambda t: t.t()),
                _case("promotes to fp32", [(4, 5), (4, 5)], 0, dtypes=[None, torch.float32]),
                _case("int64 inputs", [(3, 4), (2, 4)], 0, dtypes=[torch.int64, torch.int64]),
                _case("legacy empty (0,) skipped", [(0,), (4, 6)], 0),
                _case("one input", [(5, 5)], 1),
                _case("zero-size part", [(0, 8), (3, 8)], 0),
            ],
            "llm": lambda: [
                _kv_append("KV append decode 64x8x2047+1x128", 64, 2047),
                _kv_append("KV append decode 1x8x2047+1x128", 1, 2047),
                Case("rotate_half 2x 1x32x2048x64 dim -1", _rotate_half),
            ],
        },
        cost=_cost,
        aten_impls={"aten::cat": same_arguments},
    )
)
