"""Flash-style backward of scaled dot-product attention, unmasked or with a boolean mask: nothing of size
L x S is held beyond the mask itself.

Three launches over tiles, every product of two 16-bit tiles with fp32 accumulation, the probabilities
P = softmax(Q K^T * scale) rebuilt per tile from each query row's log-sum-exp:
1. `_rows_kernel`, per (query tile, query head): one pass over the keys gives each row's log-sum-exp
   (base 2), folded online as the forward folds its output, and delta = rowsum(dO * O) from the forward's
   output O (equal to rowsum(P * dP) with dP = dO V^T);
2. `_kv_kernel`, per (key tile, KV head): dV = sum P^T dO and dK = scale * sum dS^T Q over the query rows
   of every query head of its group (GQA: no atomics), dS = P * (dP - delta);
3. `_q_kernel`, per (query tile, query head): dQ = scale * sum dS K.
Causal masking is torch's (key j is seen by query i when j <= i); causal programs skip the tiles it
masks whole. A boolean mask (MASKED: keep where true; what transformers builds for a compiled model) is
read per tile through its strides; a query row it masks whole has P = 0 (torch's safe softmax: LSE
+inf), so it passes no gradient. Its spans (`_mask_bounds`: each query row's first and last kept
key, each key's first and last query row) let the loops skip the tiles it masks whole: a causal mask
given as a tensor costs what `is_causal` does. See `flash_backward` for what it takes.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from workbench import backends

from ._launch import autotune, launch
from ._mask_bounds import mask_bounds, span
from ._shapes import cdiv, next_pow2
from ._tuning import Tuner
from .mlu.persistent import persistent

LOG2E = 1.4426950408889634
MAX_HEAD_DIM = 128  # the tiles hold whole head dims; wider ones take the recomputing backward


@triton.jit
def _tile(ptrs, mask, UPCAST: tl.constexpr):
    """A tile (zeros where masked), in fp32 where the device has no 16-bit dot (UPCAST)."""
    t = tl.load(ptrs, mask=mask, other=0.0)
    if UPCAST:
        t = t.to(tl.float32)
    return t


@triton.jit
def _query_rows(
    Q,
    DO,
    q_row0,
    do_row0,
    rows64,
    row_ok,
    sqm,
    sdm,
    E,
    EV,
    BLOCK_D: tl.constexpr,
    BLOCK_DV: tl.constexpr,
    UPCAST: tl.constexpr,
):
    """The q and dO tiles of rows `rows64` of one (batch, head), row 0 at offsets q_row0 and do_row0."""
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    q = _tile(
        Q + q_row0 + rows64[:, None] * sqm + offs_d[None, :], row_ok[:, None] & (offs_d[None, :] < E), UPCAST
    )
    do = _tile(
        DO + do_row0 + rows64[:, None] * sdm + offs_dv[None, :],
        row_ok[:, None] & (offs_dv[None, :] < EV),
        UPCAST,
    )
    return q, do


@triton.jit
def _key_tiles(
    K,
    V,
    k_col0,
    v_col0,
    cols64,
    col_ok,
    skn,
    svn,
    E,
    EV,
    BLOCK_D: tl.constexpr,
    BLOCK_DV: tl.constexpr,
    UPCAST: tl.constexpr,
):
    """K^T and V^T tiles (head dim x keys) of keys `cols64` of one (batch, KV head), key 0 at offsets
    k_col0 and v_col0."""
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    kt = _tile(
        K + k_col0 + cols64[None, :] * skn + offs_d[:, None], (offs_d[:, None] < E) & col_ok[None, :], UPCAST
    )
    vt = _tile(
        V + v_col0 + cols64[None, :] * svn + offs_dv[:, None],
        (offs_dv[:, None] < EV) & col_ok[None, :],
        UPCAST,
    )
    return kt, vt


@triton.jit
def _scores(
    q, k_tile, rows, cols, row_ok, S, scale_log2, mask_rows, smn, CAUSAL: tl.constexpr, MASKED: tl.constexpr
):
    """Q K^T of one tile in base-2 units (scale * log2 e), -inf where masked or past the keys. mask_rows:
    the boolean mask's row starts (BLOCK_M x 1 pointers, MASKED only)."""
    s = tl.dot(q, k_tile, input_precision="ieee") * scale_log2
    keep = cols[None, :] < S
    if CAUSAL:
        keep = keep & (cols[None, :] <= rows[:, None])
    if MASKED:
        keep &= row_ok[:, None]
        keep &= tl.load(mask_rows + cols[None, :].to(tl.int64) * smn, mask=keep, other=0) != 0
    return tl.where(keep, s, -float("inf"))


@triton.jit
def _key_range(
    BOUNDS,
    base,
    rows64,
    row_ok,
    S,
    CAUSAL: tl.constexpr,
    MASKED: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """[lo, hi) of the keys query tile `program_id(0)` (rows `rows64`) visits: every key, the causal ones
    (keys up to its last row), and with a mask only those some row of the tile keeps (its span in
    BOUNDS + base), lo at a BLOCK_N boundary."""
    lo = 0
    hi = S
    if CAUSAL:
        hi = tl.minimum(S, tl.program_id(0) * BLOCK_M + BLOCK_M)
    if MASKED:
        lo, end = span(BOUNDS, base, rows64, row_ok, S, BLOCK_N)
        hi = tl.minimum(hi, end)
    return lo, hi


@triton.jit
def _rows_kernel(
    Q,
    K,
    V,
    DO,
    LSE,
    DELTA,
    OUT,
    sqb,
    sqh,
    sqm,
    skb,
    skh,
    skn,
    svb,
    svh,
    svn,
    sdb,
    sdh,
    sdm,
    sob,
    soh,
    som,
    M,
    smb,
    smh,
    smm,
    smn,
    BOUNDS,
    sbb,
    sbh,
    H,
    L,
    S,
    E,
    EV,
    group,
    scale_log2,
    CAUSAL: tl.constexpr,
    MASKED: tl.constexpr,
    UPCAST: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_DV: tl.constexpr,
):
    """Program (query tile, batch x query head): LSE (base 2) and DELTA of its rows, (B, H, L) fp32."""
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = pid_bh % H
    hk = (h // group).to(tl.int64)
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < L
    offs_n = tl.arange(0, BLOCK_N)
    rows64 = rows.to(tl.int64)
    h64 = h.to(tl.int64)
    q, do = _query_rows(
        Q,
        DO,
        b * sqb + h64 * sqh,
        b * sdb + h64 * sdh,
        rows64,
        row_ok,
        sqm,
        sdm,
        E,
        EV,
        BLOCK_D,
        BLOCK_DV,
        UPCAST,
    )
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    o = tl.load(
        OUT + b * sob + h64 * soh + rows64[:, None] * som + offs_dv[None, :],
        mask=row_ok[:, None] & (offs_dv[None, :] < EV),
        other=0.0,
    )
    out = pid_bh.to(tl.int64) * L + rows64
    tl.store(DELTA + out, tl.sum(do.to(tl.float32) * o.to(tl.float32), 1), mask=row_ok)
    mask_rows = M + b * smb + h64 * smh + rows64[:, None] * smm
    m_i = tl.full([BLOCK_M], -float("inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    lo, hi = _key_range(BOUNDS, b * sbb + h64 * sbh, rows64, row_ok, S, CAUSAL, MASKED, BLOCK_M, BLOCK_N)
    for start in range(lo, hi, BLOCK_N):
        cols = start + offs_n
        col_ok = cols < S
        cols64 = cols.to(tl.int64)
        kt = _tile(
            K + b * skb + hk * skh + cols64[None, :] * skn + offs_d[:, None],
            (offs_d[:, None] < E) & col_ok[None, :],
            UPCAST,
        )
        s = _scores(q, kt, rows, cols, row_ok, S, scale_log2, mask_rows, smn, CAUSAL, MASKED)
        m_new = tl.maximum(m_i, tl.max(s, 1))
        if MASKED:  # a row whose keys so far are all masked keeps its max at 0, not -inf (NaN below)
            m_new = tl.where(m_new == -float("inf"), 0.0, m_new)
        l_i = l_i * tl.exp2(m_i - m_new) + tl.sum(tl.exp2(s - m_new[:, None]), 1)
        m_i = m_new
    lse = m_i + tl.log2(l_i)
    if MASKED:  # a row with no key: +inf, so that every P of it is exp2(-inf) = 0
        lse = tl.where(l_i > 0, lse, float("inf"))
    tl.store(LSE + out, lse, mask=row_ok)


@triton.jit
def _kv_kernel(
    Q,
    K,
    V,
    DO,
    LSE,
    DELTA,
    DK,
    DV,
    sqb,
    sqh,
    sqm,
    skb,
    skh,
    skn,
    svb,
    svh,
    svn,
    sdb,
    sdh,
    sdm,
    M,
    smb,
    smh,
    smm,
    smn,
    BOUNDS,
    sbb,
    sbh,
    H,
    HK,
    L,
    S,
    E,
    EV,
    group,
    scale_log2,
    scale,
    CAUSAL: tl.constexpr,
    MASKED: tl.constexpr,
    UPCAST: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_DV: tl.constexpr,
):
    """Program (key tile, batch x KV head): dK and dV of its keys (contiguous (B, HK, S, E / EV))."""
    pid_bh = tl.program_id(1)
    b = (pid_bh // HK).to(tl.int64)
    hk = pid_bh % HK
    cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < S
    cols64 = cols.to(tl.int64)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    d_ok = offs_d < E
    dv_ok = offs_dv < EV
    hk64 = hk.to(tl.int64)
    kt, vt = _key_tiles(
        K,
        V,
        b * skb + hk64 * skh,
        b * svb + hk64 * svh,
        cols64,
        col_ok,
        skn,
        svn,
        E,
        EV,
        BLOCK_D,
        BLOCK_DV,
        UPCAST,
    )
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_DV], tl.float32)
    lo = 0
    if CAUSAL:  # query rows before the tile's first key see none of it
        lo = tl.program_id(0) * BLOCK_N // BLOCK_M * BLOCK_M
    for g in range(0, group):
        h = (hk * group + g).to(tl.int64)
        stat_base = (b * H + h) * L
        lo_h = lo
        hi_h = L
        if MASKED:  # only the query rows that keep some key of the tile
            first, hi_h = span(BOUNDS, b * sbb + h * sbh, cols64, col_ok, L, BLOCK_M)
            lo_h = tl.maximum(lo, first)
        for start in range(lo_h, hi_h, BLOCK_M):
            rows = start + offs_m
            row_ok = rows < L
            rows64 = rows.to(tl.int64)
            q, do = _query_rows(
                Q,
                DO,
                b * sqb + h * sqh,
                b * sdb + h * sdh,
                rows64,
                row_ok,
                sqm,
                sdm,
                E,
                EV,
                BLOCK_D,
                BLOCK_DV,
                UPCAST,
            )
            lse = tl.load(LSE + stat_base + rows64, mask=row_ok, other=0.0)
            delta = tl.load(DELTA + stat_base + rows64, mask=row_ok, other=0.0)
            mask_rows = M + b * smb + h * smh + rows64[:, None] * smm
            s = _scores(q, kt, rows, cols, row_ok, S, scale_log2, mask_rows, smn, CAUSAL, MASKED)
            p = tl.where(row_ok[:, None], tl.exp2(s - lse[:, None]), 0.0)
            dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision="ieee")
            dp = tl.dot(do, vt, input_precision="ieee")
            ds = p * (dp - delta[:, None])
            dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision="ieee")
    out_k = DK + ((b * HK + hk) * S + cols64[:, None]) * E + offs_d[None, :]
    out_v = DV + ((b * HK + hk) * S + cols64[:, None]) * EV + offs_dv[None, :]
    tl.store(out_k, (dk * scale).to(DK.dtype.element_ty), mask=col_ok[:, None] & d_ok[None, :])
    tl.store(out_v, dv.to(DV.dtype.element_ty), mask=col_ok[:, None] & dv_ok[None, :])


@triton.jit
def _q_kernel(
    Q,
    K,
    V,
    DO,
    LSE,
    DELTA,
    DQ,
    sqb,
    sqh,
    sqm,
    skb,
    skh,
    skn,
    svb,
    svh,
    svn,
    sdb,
    sdh,
    sdm,
    M,
    smb,
    smh,
    smm,
    smn,
    BOUNDS,
    sbb,
    sbh,
    H,
    L,
    S,
    E,
    EV,
    group,
    scale_log2,
    scale,
    CAUSAL: tl.constexpr,
    MASKED: tl.constexpr,
    UPCAST: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_DV: tl.constexpr,
):
    """Program (query tile, batch x query head): dQ of its rows (contiguous (B, H, L, E))."""
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = pid_bh % H
    hk = (h // group).to(tl.int64)
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < L
    rows64 = rows.to(tl.int64)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < E
    h64 = h.to(tl.int64)
    q, do = _query_rows(
        Q,
        DO,
        b * sqb + h64 * sqh,
        b * sdb + h64 * sdh,
        rows64,
        row_ok,
        sqm,
        sdm,
        E,
        EV,
        BLOCK_D,
        BLOCK_DV,
        UPCAST,
    )
    stat = pid_bh.to(tl.int64) * L + rows64
    lse = tl.load(LSE + stat, mask=row_ok, other=0.0)
    delta = tl.load(DELTA + stat, mask=row_ok, other=0.0)
    mask_rows = M + b * smb + h64 * smh + rows64[:, None] * smm
    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    lo, hi = _key_range(BOUNDS, b * sbb + h64 * sbh, rows64, row_ok, S, CAUSAL, MASKED, BLOCK_M, BLOCK_N)
    for start in range(lo, hi, BLOCK_N):
        cols = start + offs_n
        col_ok = cols < S
        cols64 = cols.to(tl.int64)
        kt, vt = _key_tiles(
            K,
            V,
            b * skb + hk * skh,
            b * svb + hk * svh,
            cols64,
            col_ok,
            skn,
            svn,
            E,
            EV,
            BLOCK_D,
            BLOCK_DV,
            UPCAST,
        )
        s = _scores(q, kt, rows, cols, row_ok, S, scale_log2, mask_rows, smn, CAUSAL, MASKED)
        p = tl.exp2(s - lse[:, None])
        ds = p * (tl.dot(do, vt, input_precision="ieee") - delta[:, None])
        dq += tl.dot(ds.to(kt.dtype), tl.trans(kt), input_precision="ieee")
    tl.store(
        DQ + (pid_bh.to(tl.int64) * L + rows64[:, None]) * E + offs_d[None, :],
        (dq * scale).to(DQ.dtype.element_ty),
        mask=row_ok[:, None] & d_ok[None, :],
    )


def takes(query, key, value, attn_mask, enable_gqa: bool) -> bool:
    """Whether `flash_backward` takes these inputs: 4-D query, key and value of one batch size, as many
    key heads as value heads (query heads a multiple of them, or equal without GQA), no mask or a boolean
    one of at most 4 dims, a last dim of stride 1, head dims up to MAX_HEAD_DIM, 16-bit or fp32 values,
    at most 65535 batch x query heads (a grid column); not in the persistent launch style (MLU)."""
    if persistent() or query.dim() != 4 or key.dim() != 4 or value.dim() != 4:
        return False
    if attn_mask is not None and (attn_mask.dtype != torch.bool or attn_mask.dim() > 4):
        return False
    (b, hq, _, _), (bk, hk, _, _), (bv, hv, _, _) = query.shape, key.shape, value.shape
    if not (b == bk == bv and hk == hv and hq % hk == 0 and (enable_gqa or hq == hk)) or b * hq > 65535:
        return False
    return (
        query.dtype in (torch.float16, torch.bfloat16, torch.float32)
        and max(query.shape[-1], value.shape[-1]) <= MAX_HEAD_DIM
        and all(t.stride(-1) == 1 or t.shape[-1] == 1 for t in (query, key, value))
    )


def _configs(interpreted: bool) -> list[triton.Config]:
    """Tile candidates of each kernel, tuned separately (`_tuning.Tuner`). On the interpreter one small
    tile, so that every loop runs. On a GPU the first, 64 x 64 over 8 warps in two stages, fits fp32
    operands of head dim 128 in shared memory; the others trade query rows (BLOCK_M) against key columns
    (BLOCK_N): tall query tiles suit `_q_kernel`, wide key tiles `_kv_kernel`."""
    if interpreted:
        return [triton.Config({"BLOCK_M": 16, "BLOCK_N": 16}, num_warps=4)]
    shapes = [
        (64, 64, 8, 2),
        (32, 128, 4, 3),
        (128, 32, 4, 3),
        (64, 64, 4, 3),
        (128, 64, 8, 2),
        (64, 128, 8, 2),
    ]
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s) for m, n, w, s in shapes]


_KEY = ["H", "L", "S", "group", "CAUSAL", "MASKED", "BLOCK_D", "BLOCK_DV"]
_TUNERS = {
    kernel: Tuner(kernel, _configs(backends.active().interpreted), key=_KEY)
    for kernel in (_rows_kernel, _kv_kernel, _q_kernel)
}
_tuned: dict = {}  # (kernel, H, L, S, group, dtype, constexprs) -> the chosen config's keywords


def _launch_tuned(kernel, grid, args: tuple, key: tuple, **consts) -> None:
    """`kernel` with the config tuned for `key` (tuned on its first call); grid(config) -> the grid."""
    config = _tuned.get((kernel, *key))
    if config is None:
        _tuned[(kernel, *key)] = autotune(_TUNERS[kernel], grid, *args, **consts)
    else:
        launch(kernel, grid(config), *args, **consts, **config)


def flash_backward(dout, query, key, value, out, is_causal: bool, scale: float | None, attn_mask=None):
    """(dq, dk, dv) of out = softmax(query key^T * scale, masked) value for inputs that `takes` accepts."""
    B, H, L, E = query.shape
    HK, S, EV = key.shape[1], key.shape[2], value.shape[3]
    scale = E**-0.5 if scale is None else float(scale)
    dq = torch.empty((B, H, L, E), dtype=query.dtype, device=query.device)
    dk = torch.empty((B, HK, S, E), dtype=key.dtype, device=key.device)
    dv = torch.empty((B, HK, S, EV), dtype=value.dtype, device=value.device)
    if dq.numel() == 0 or dk.numel() == 0 or dv.numel() == 0 or L == 0 or S == 0:
        return dq.zero_(), dk.zero_(), dv.zero_()
    if dout.stride(-1) != 1:
        dout = dout.contiguous()
    if out.stride(-1) != 1:
        out = out.contiguous()
    lse = torch.empty((B, H, L), dtype=torch.float32, device=query.device)
    delta = torch.empty_like(lse)
    strides = (
        *query.stride()[:3],
        *key.stride()[:3],
        *value.stride()[:3],
        *dout.stride()[:3],
    )
    if attn_mask is None:  # the kernels read neither: any pointer serves
        mask_args = (query, 0, 0, 0, 0)
        row_bounds = col_bounds = (query, 0, 0)
    else:
        mask = attn_mask.expand(B, H, L, S)  # broadcast dims: stride 0
        mask_args = (mask, *mask.stride())
        row_bounds, col_bounds = mask_bounds(mask, by_rows=True), mask_bounds(mask, by_rows=False)
    consts = dict(
        CAUSAL=bool(is_causal),
        MASKED=attn_mask is not None,
        UPCAST=query.dtype == torch.bfloat16 and not backends.active().capabilities.bf16_dot,
        BLOCK_D=max(16, next_pow2(E)),
        BLOCK_DV=max(16, next_pow2(EV)),
    )
    group, scale_log2 = H // HK, scale * LOG2E
    tuning = (H, L, S, group, query.dtype, *consts.values())
    tensors = (query, key, value, dout, lse, delta)
    _launch_tuned(
        _rows_kernel,
        lambda c: (cdiv(L, c["BLOCK_M"]), B * H),
        (
            *tensors,
            out,
            *strides,
            *out.stride()[:3],
            *mask_args,
            *row_bounds,
            H,
            L,
            S,
            E,
            EV,
            group,
            scale_log2,
        ),
        tuning,
        **consts,
    )
    _launch_tuned(
        _kv_kernel,
        lambda c: (cdiv(S, c["BLOCK_N"]), B * HK),
        (*tensors, dk, dv, *strides, *mask_args, *col_bounds, H, HK, L, S, E, EV, group, scale_log2, scale),
        tuning,
        **consts,
    )
    _launch_tuned(
        _q_kernel,
        lambda c: (cdiv(L, c["BLOCK_M"]), B * H),
        (*tensors, dq, *strides, *mask_args, *row_bounds, H, L, S, E, EV, group, scale_log2, scale),
        tuning,
        **consts,
    )
    return dq, dk, dv
