"""The spans of a boolean attention mask: for each query row the keys it keeps, [first, last + 1), and for
each key the query rows that keep it. Attention kernels loop over a tile's span only, skipping the tiles
the mask removes whole (a causal or sliding-window mask given as a tensor, as transformers gives a
compiled model). One small launch per direction (`mask_bounds`); `span` reads a tile's span in a kernel.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._launch import launch
from ._shapes import next_pow2


@triton.jit
def _bounds_kernel(M, OUT, n_h, n, along, smb, smh, s_line, s_along, BLOCK: tl.constexpr):
    """Program i, line `i % n` of mask slice (batch, head) `i // n` (a query row, or a key column):
    OUT[i] = (its first kept index along the other dim, the last one + 1), (along, 0) where none."""
    i = tl.program_id(0)
    line = i % n
    b = i // n // n_h
    h = i // n % n_h
    base = M + b.to(tl.int64) * smb + h.to(tl.int64) * smh + line.to(tl.int64) * s_line
    first = along + tl.zeros([BLOCK], tl.int32)  # past every index: none kept yet
    end = tl.zeros([BLOCK], tl.int32)
    for start in range(0, along, BLOCK):
        idx = start + tl.arange(0, BLOCK)
        keep = tl.load(base + idx.to(tl.int64) * s_along, mask=idx < along, other=0) != 0
        first = tl.minimum(first, tl.where(keep, idx, along))
        end = tl.maximum(end, tl.where(keep, idx + 1, 0))
    tl.store(OUT + i.to(tl.int64) * 2, tl.min(first, 0))
    tl.store(OUT + i.to(tl.int64) * 2 + 1, tl.max(end, 0))


@triton.jit
def span(BOUNDS, base, lines64, line_ok, n_other, ALIGN: tl.constexpr):
    """[lo, hi) along the other dim that lines `lines64` keep between them (`_bounds_kernel`'s
    pairs from `BOUNDS + base`), lo aligned down to ALIGN: the tiles past it are masked whole."""
    first = tl.min(tl.load(BOUNDS + base + lines64 * 2, mask=line_ok, other=n_other), 0)
    end = tl.max(tl.load(BOUNDS + base + lines64 * 2 + 1, mask=line_ok, other=0), 0)
    return first // ALIGN * ALIGN, end


def mask_bounds(mask: torch.Tensor, by_rows: bool) -> tuple[torch.Tensor, int, int]:
    """(bounds, batch stride, head stride) of a (B, H, L, S) boolean mask view (broadcast dims stride 0,
    worked out once): per query row its kept keys' [first, last + 1) (by_rows), else per key the query
    rows that keep it, as int32 pairs over the slices the mask really has."""
    B, H, L, S = mask.shape
    smb, smh, smm, smn = mask.stride()
    nb, nh = (B if smb else 1), (H if smh else 1)
    n, along, s_line, s_along = (L, S, smm, smn) if by_rows else (S, L, smn, smm)
    bounds = torch.empty((nb, nh, n, 2), dtype=torch.int32, device=mask.device)
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
        BLOCK=block,
    )
    return bounds, (nh * n * 2 if nb > 1 else 0), (n * 2 if nh > 1 else 0)
