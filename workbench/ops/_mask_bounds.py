"""The spans of an attention mask: for each query row the keys it keeps, [first, last + 1), and for each
key the query rows that keep it. Attention kernels loop over a tile's span only, skipping the tiles the
mask removes whole (a causal or sliding-window mask given as a tensor, as transformers gives a compiled
model, or its padded causal mask as additive `finfo.min`). One small launch per direction
(`mask_bounds`); in a kernel `line_spans` reads each line's span, `tile_span` a tile's from them
(`span`: both).

A line is plain when it keeps one unbroken run of keys and, in an additive mask, adds exactly 0 to each:
the run's ends then say all the mask says, and a kernel need not read the mask for it.

A boolean mask keeps where true. An additive mask removes a key where its value is at most -1e30 (-inf,
and `finfo.min` of float32 and bfloat16): such a key's weight is exactly 0 beside any key of the row with
a larger value (float32 values that far down differ by more than 1e22, whose exponential is 0), so
skipping it changes nothing. A row that keeps no key spans every key: softmax over its values is
torch's answer (uniform over equal `finfo.min`, zero over -inf), which the kernel gives on the whole row.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._launch import launch
from ._shapes import next_pow2


@triton.jit
def _bounds_kernel(
    M, OUT, n_h, n, along, smb, smh, s_line, s_along, ADDITIVE: tl.constexpr, BLOCK: tl.constexpr
):
    """Program i, line `i % n` of mask slice (batch, head) `i // n` (a query row, or a key column):
    OUT[i] = (its first kept index along the other dim, the last one + 1, 1 if the line is plain else 0);
    where none is kept, (along, 0, 0) for a boolean mask, (0, along, 0) for an additive one (see the
    module docstring)."""
    i = tl.program_id(0)
    line = i % n
    b = i // n // n_h
    h = i // n % n_h
    base = M + b.to(tl.int64) * smb + h.to(tl.int64) * smh + line.to(tl.int64) * s_line
    first = along + tl.zeros([BLOCK], tl.int32)  # past every index: none kept yet
    end = tl.zeros([BLOCK], tl.int32)
    kept = tl.zeros([BLOCK], tl.int32)
    biased = tl.zeros([BLOCK], tl.int32)  # kept keys whose additive value is not 0, and NaNs
    for start in range(0, along, BLOCK):
        idx = start + tl.arange(0, BLOCK)
        if ADDITIVE:
            value = tl.load(base + idx.to(tl.int64) * s_along, mask=idx < along, other=-float("inf"))
            value = value.to(tl.float32)
            keep = value > -1e30
            biased += ((keep & (value != 0.0)) | (value != value)).to(tl.int32)
        else:
            keep = tl.load(base + idx.to(tl.int64) * s_along, mask=idx < along, other=0) != 0
        first = tl.minimum(first, tl.where(keep, idx, along))
        end = tl.maximum(end, tl.where(keep, idx + 1, 0))
        kept += keep.to(tl.int32)
    first = tl.min(first, 0)
    end = tl.max(end, 0)
    kept = tl.sum(kept, 0)
    plain = (kept > 0) & (kept == end - first) & (tl.sum(biased, 0) == 0)
    if ADDITIVE:  # a line that keeps no key spans all of them
        first = tl.where(end == 0, 0, first)
        end = tl.where(end == 0, along, end)
    tl.store(OUT + i.to(tl.int64) * 3, first)
    tl.store(OUT + i.to(tl.int64) * 3 + 1, end)
    tl.store(OUT + i.to(tl.int64) * 3 + 2, plain.to(tl.int32))


@triton.jit
def line_spans(BOUNDS, base, lines64, line_ok, n_other):
    """Each of lines `lines64`: its kept [first, end) and whether it is plain (`_bounds_kernel`'s triples
    from `BOUNDS + base`); lines past the end (not `line_ok`) span [0, n_other) and count as plain."""
    first = tl.load(BOUNDS + base + lines64 * 3, mask=line_ok, other=0)
    end = tl.load(BOUNDS + base + lines64 * 3 + 1, mask=line_ok, other=n_other)
    plain = tl.load(BOUNDS + base + lines64 * 3 + 2, mask=line_ok, other=1) != 0
    return first, end, plain


@triton.jit
def tile_span(first, end, line_ok, n_other, ALIGN: tl.constexpr):
    """[lo, hi) along the other dim that lines with runs [first, end) keep between them (`line_spans`),
    lo aligned down to ALIGN: the tiles past it are masked whole."""
    lo = tl.min(tl.where(line_ok, first, n_other), 0)
    hi = tl.max(tl.where(line_ok, end, 0), 0)
    return lo // ALIGN * ALIGN, hi


@triton.jit
def span(BOUNDS, base, lines64, line_ok, n_other, ALIGN: tl.constexpr):
    """`tile_span` of lines `lines64`, read from `BOUNDS + base`."""
    first, end, _ = line_spans(BOUNDS, base, lines64, line_ok, n_other)
    return tile_span(first, end, line_ok, n_other, ALIGN)


def mask_bounds(mask: torch.Tensor, by_rows: bool) -> tuple[torch.Tensor, int, int]:
    """(bounds, batch stride, head stride) of a (B, H, L, S) boolean or additive mask view (broadcast
    dims stride 0, worked out once): per query row its kept keys' [first, last + 1) (by_rows), else per
    key the query rows that keep it, and whether the line is plain, as int32 triples over the slices the
    mask really has."""
    B, H, L, S = mask.shape
    smb, smh, smm, smn = mask.stride()
    nb, nh = (B if smb else 1), (H if smh else 1)
    n, along, s_line, s_along = (L, S, smm, smn) if by_rows else (S, L, smn, smm)
    bounds = torch.empty((nb, nh, n, 3), dtype=torch.int32, device=mask.device)
    block = min(1024, max(16, next_pow2(along)))
    launch(
        _bounds_kernel,
        (nb * nh * n,),
        mask,
        bounds,
        nh,
        n,
        along,
        smb,
        smh,
        s_line,
        s_along,
        ADDITIVE=mask.dtype != torch.bool,
        BLOCK=block,
    )
    return bounds, (nh * n * 3 if nb > 1 else 0), (n * 3 if nh > 1 else 0)
