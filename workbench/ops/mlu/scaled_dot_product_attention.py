"""scaled_dot_product_attention, MLU style: persistent flash attention.

The op's validation, broadcasting and mask handling are its `prepare`; the key loop is its `attend_rows`
(online softmax in fp32, base 2, causal top-left, bool / additive masks, safe softmax for rows with no
key). What changes for the MLU: one kernel for prefill and decode, launched with as many programs as
fill the cores (num_warps 4), each walking work items in a grid-stride loop. A work item is one batch
entry x one group of query heads that share a KV head (GQA: the group's queries are packed into one
tile, so decode with few queries still fills the tile) x one BLOCK_M tile of the group's rows; tiles
are taken last rows first, so the long causal rows start early. The tile shape comes from a small
table pruned by the NRAM estimate and by the rows a group has.

Not done here: splitting one work item's keys over several programs (flash-decoding). A decode batch
with fewer (batch x KV head) groups than programs leaves programs idle; on an MLU that is the next step.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._launch import launch
from ..scaled_dot_product_attention import SPEC, Attention, attend_rows, prepare
from . import persistent

# (BLOCK_M, BLOCK_N) in order of preference; used when its tiles fit NRAM (`nram_bytes`) and BLOCK_M is
# not taller than a head group's rows need. Not tuned on an MLU: no MLU was available.
CONFIGS = [(128, 64), (64, 64), (32, 64), (32, 32), (16, 64), (16, 32), (16, 16)]
MAX_TILE = persistent.MAX_TILE // 2  # elements per tile: see pick_config
MAX_PACKED_ROWS = 128  # a head group's rows (heads x queries) are packed while they fit one tile


@triton.jit
def _attention_kernel(
    Q,
    K,
    V,
    M,
    Out,
    sqb,
    sqh,
    sqm,
    sqd,
    skb,
    skh,
    skn,
    skd,
    svb,
    svh,
    svn,
    svd,
    smb,
    smh,
    smm,
    smn,
    sob,
    soh,
    som,
    sod,
    B,
    H,
    L,
    S,
    E,
    EV,
    group_k,
    group_v,
    G,
    scale_log2,
    CAUSAL: tl.constexpr,
    MASK_KIND: tl.constexpr,
    UPCAST: tl.constexpr,
    EVEN_D: tl.constexpr,
    EVEN_DV: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_DV: tl.constexpr,
):
    n_groups = H // G
    group_rows = G * L  # row r of a group: query head hg * G + r // L, query r % L
    n_tiles = tl.cdiv(group_rows, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    d_ok = offs_d < E
    dv_ok = offs_dv < EV
    for w in range(tl.program_id(0).to(tl.int64), B * n_groups * n_tiles, tl.num_programs(0).to(tl.int64)):
        bg = w // n_tiles
        tile = n_tiles - 1 - w % n_tiles  # last rows first: the longest causal rows start early
        b = bg // n_groups
        hg = bg % n_groups
        r = tile * BLOCK_M + tl.arange(0, BLOCK_M)
        row_ok = r < group_rows
        head = hg * G + r // L
        qi = r % L
        q = tl.load(
            Q + b * sqb + head[:, None] * sqh + qi[:, None] * sqm + offs_d[None, :] * sqd,
            mask=row_ok[:, None] & d_ok[None, :],
            other=0.0,
        )
        if UPCAST:
            q = q.to(tl.float32)
        kv_head = hg * G  # every head of the group reads the same K / V head
        k_base = K + b * skb + (kv_head // group_k) * skh + offs_d[:, None] * skd + offs_n[None, :] * skn
        v_base = V + b * svb + (kv_head // group_v) * svh + offs_n[:, None] * svn + offs_dv[None, :] * svd
        mask_rows = M + b * smb + head[:, None] * smh + qi[:, None] * smm

        # Keys [0, clean) need neither the causal nor the bounds mask; [clean, hi) get both.
        if CAUSAL:
            hi = tl.minimum(S, tl.max(tl.where(row_ok, qi, 0), 0) + 1)
            clean = tl.minimum(tl.min(tl.where(row_ok, qi, L), 0), S) // BLOCK_N * BLOCK_N
        else:
            hi = S
            clean = S // BLOCK_N * BLOCK_N
        out = attend_rows(
            q,
            k_base,
            v_base,
            mask_rows,
            qi,
            row_ok,
            offs_n,
            d_ok,
            dv_ok,
            clean,
            hi,
            S,
            skn,
            svn,
            smn,
            scale_log2,
            CAUSAL,
            MASK_KIND,
            True,
            UPCAST,
            EVEN_D,
            EVEN_DV,
            BLOCK_M,
            BLOCK_N,
            BLOCK_DV,
        )
        tl.store(
            Out + b * sob + head[:, None] * soh + qi[:, None] * som + offs_dv[None, :] * sod,
            out.to(Out.dtype.element_ty),
            mask=row_ok[:, None] & dv_ok[None, :],
        )


def nram_bytes(
    config: tuple[int, int], block_d: int, block_dv: int, element_size: int, mask_size: int
) -> int:
    """NRAM estimate of one program, as the launch-rules profile counts it: the q tile; K and V tiles
    at two load sites each (the unmasked and the bounds-checked pass of `attend_rows`); the mask tile; the
    fp32 scores, output accumulator and row statistics."""
    bm, bn = config
    return (
        (bm * block_d + 2 * block_d * bn + 2 * bn * block_dv) * element_size
        + bm * bn * mask_size
        + (bm * bn + bm * block_dv + 2 * bm) * 4
    )


def pick_config(rows: int, block_d: int, block_dv: int, element_size: int, mask_size: int) -> tuple[int, int]:
    """The first config that fits NRAM and is not taller than `rows` (a head group's rows) need.

    No tile (q, K, V, scores, output) is larger than MAX_TILE elements, for the GPU build of the same
    kernel: at head_dim 128 with num_warps=4, compiling for sm_90 on this machine took LLVM 4-14 minutes
    with 128x64 tiles, 13-30 s with 64x64 or 64x32, a few seconds with 32x32."""
    budget = persistent.target().nram_bytes * persistent.NRAM_FILL
    fitting = [
        c
        for c in CONFIGS
        if nram_bytes(c, block_d, block_dv, element_size, mask_size) <= budget
        and max(c) * max(block_d, block_dv, min(c)) <= MAX_TILE
    ]
    if not fitting:
        raise ValueError(
            f"no attention tile fits {budget:.0f} bytes of NRAM at head dims {block_d}/{block_dv}"
        )
    need = max(16, triton.next_power_of_2(rows))
    return next((c for c in fitting if c[0] <= need), fitting[-1])


def _launch(p: Attention) -> None:
    group = p.Hq // p.Hk
    # GQA heads that share K and V are packed into one tile while their rows fit one.
    packed = group if p.Hk == p.Hv and group * p.L <= MAX_PACKED_ROWS else 1
    mask_size = p.m.element_size() if p.mask_kind else 0
    bm, bn = pick_config(packed * p.L, p.block_d, p.block_dv, p.q.element_size(), mask_size)
    items = p.B * (p.Hq // packed) * triton.cdiv(packed * p.L, bm)
    launch(
        _attention_kernel,
        (persistent.programs(items),),
        p.q,
        p.k,
        p.v,
        p.m,
        p.o,
        *p.strides,
        p.B,
        p.Hq,
        p.L,
        p.S,
        p.E,
        p.EV,
        group,
        p.Hq // p.Hv,
        packed,
        p.scale_log2,
        CAUSAL=p.causal,
        MASK_KIND=p.mask_kind,
        UPCAST=p.upcast,
        EVEN_D=p.E == p.block_d,
        EVEN_DV=p.EV == p.block_dv,
        BLOCK_M=bm,
        BLOCK_N=bn,
        BLOCK_D=p.block_d,
        BLOCK_DV=p.block_dv,
        num_warps=persistent.NUM_WARPS,
    )


def scaled_dot_product_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    *,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor:
    out, p = prepare(query, key, value, attn_mask, dropout_p, is_causal, scale=scale, enable_gqa=enable_gqa)
    if p is not None:
        _launch(p)
    return out


SPEC.add_variant("mlu", scaled_dot_product_attention)
