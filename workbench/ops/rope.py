"""rope: rotary position embedding of q and k in one launch, transformers' `apply_rotary_pos_emb` form.

`q * cos + rotate_half(q) * sin` (and the same for k), where rotate_half(x) = cat(-x[..., D/2:], x[..., :D/2])
and cos/sin (e.g. [batch, seq, head_dim]) are unsqueezed at `unsqueeze_dim` to broadcast over heads.
A fused op: there is no single ATen overload it replaces. One launch rotates q's row tiles then k's: one
tile per program, or, in the persistent style (ops.mlu.persistent), programs that fill the cores walk them.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from workbench import backends

from ._common import (
    Plans,
    check_dtype_match,
    check_same_device,
    check_tensor,
    geometry,
    new_output_as,
    new_output_of,
)
from ._elementwise import _merge_dims
from ._launch import Site, aligned, launch
from ._library import generic
from ._shapes import broadcast, cdiv, next_pow2
from .mlu.persistent import MAX_TILE, NUM_WARPS, max_programs, persistent, programs, tile_elems
from .spec import Case, Cost, OpSpec, input_grads, nbytes, randn, register

MAX_LEAD_DIMS = 3  # leading (row) dims a layout may keep after merging; more are made contiguous


@triton.jit
def _rope_rows(
    x_ptr,
    c_ptr,
    s_ptr,
    out_ptr,
    row0,
    n_rows,
    half,
    r1,
    r2,
    xs0,
    xs1,
    xs2,
    xsd,
    cs0,
    cs1,
    cs2,
    csd,
    ss0,
    ss1,
    ss2,
    ssd,
    BLOCK_R: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    rows = row0 + tl.arange(0, BLOCK_R).to(tl.int64)
    i2 = rows % r2
    rest = rows // r2
    i1 = rest % r1
    i0 = rest // r1
    d = tl.arange(0, BLOCK_H)
    ok = (rows < n_rows)[:, None] & (d < half)[None, :]
    x_row = (x_ptr + i0 * xs0 + i1 * xs1 + i2 * xs2)[:, None]
    c_row = (c_ptr + i0 * cs0 + i1 * cs1 + i2 * cs2)[:, None]
    s_row = (s_ptr + i0 * ss0 + i1 * ss1 + i2 * ss2)[:, None]
    x1 = tl.load(x_row + d[None, :] * xsd, mask=ok, other=0.0).to(tl.float32)
    x2 = tl.load(x_row + (d[None, :] + half) * xsd, mask=ok, other=0.0).to(tl.float32)
    c1 = tl.load(c_row + d[None, :] * csd, mask=ok, other=0.0).to(tl.float32)
    c2 = tl.load(c_row + (d[None, :] + half) * csd, mask=ok, other=0.0).to(tl.float32)
    s1 = tl.load(s_row + d[None, :] * ssd, mask=ok, other=0.0).to(tl.float32)
    s2 = tl.load(s_row + (d[None, :] + half) * ssd, mask=ok, other=0.0).to(tl.float32)
    out_row = out_ptr + rows[:, None] * (2 * half)  # outputs are contiguous
    tl.store(out_row + d[None, :], (x1 * c1 - x2 * s1).to(out_ptr.dtype.element_ty), mask=ok)
    tl.store(out_row + d[None, :] + half, (x2 * c2 + x1 * s2).to(out_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _rope_kernel(
    q_ptr,
    kx_ptr,
    qc_ptr,
    qs_ptr,
    kc_ptr,
    ks_ptr,
    qo_ptr,
    ko_ptr,
    q_rows,
    k_rows,
    q_programs,
    half,
    qr1,
    qr2,
    qxs0,
    qxs1,
    qxs2,
    qxsd,
    qcs0,
    qcs1,
    qcs2,
    qcsd,
    qss0,
    qss1,
    qss2,
    qssd,
    kr1,
    kr2,
    kxs0,
    kxs1,
    kxs2,
    kxsd,
    kcs0,
    kcs1,
    kcs2,
    kcsd,
    kss0,
    kss1,
    kss2,
    kssd,
    BLOCK_R: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    # The first q_programs programs rotate q, the rest k: one launch for both.
    pid = tl.program_id(0)
    if pid < q_programs:
        _rope_rows(
            q_ptr,
            qc_ptr,
            qs_ptr,
            qo_ptr,
            pid.to(tl.int64) * BLOCK_R,
            q_rows,
            half,
            qr1,
            qr2,
            qxs0,
            qxs1,
            qxs2,
            qxsd,
            qcs0,
            qcs1,
            qcs2,
            qcsd,
            qss0,
            qss1,
            qss2,
            qssd,
            BLOCK_R=BLOCK_R,
            BLOCK_H=BLOCK_H,
        )
    else:
        _rope_rows(
            kx_ptr,
            kc_ptr,
            ks_ptr,
            ko_ptr,
            (pid - q_programs).to(tl.int64) * BLOCK_R,
            k_rows,
            half,
            kr1,
            kr2,
            kxs0,
            kxs1,
            kxs2,
            kxsd,
            kcs0,
            kcs1,
            kcs2,
            kcsd,
            kss0,
            kss1,
            kss2,
            kssd,
            BLOCK_R=BLOCK_R,
            BLOCK_H=BLOCK_H,
        )


@triton.jit
def _rope_persistent_kernel(
    q_ptr,
    kx_ptr,
    qc_ptr,
    qs_ptr,
    kc_ptr,
    ks_ptr,
    qo_ptr,
    ko_ptr,
    q_rows,
    k_rows,
    q_tiles,
    tiles,
    half,
    qr1,
    qr2,
    qxs0,
    qxs1,
    qxs2,
    qxsd,
    qcs0,
    qcs1,
    qcs2,
    qcsd,
    qss0,
    qss1,
    qss2,
    qssd,
    kr1,
    kr2,
    kxs0,
    kxs1,
    kxs2,
    kxsd,
    kcs0,
    kcs1,
    kcs2,
    kcsd,
    kss0,
    kss1,
    kss2,
    kssd,
    BLOCK_R: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    # The persistent style: programs that fill the cores rotate every num_programs-th tile of the q tiles
    # followed by the k tiles. int64 tile indices (the loop variable takes the start's type), so row
    # offsets never wrap
    for t in range(tl.program_id(0).to(tl.int64), tiles, tl.num_programs(0)):
        if t < q_tiles:
            _rope_rows(
                q_ptr,
                qc_ptr,
                qs_ptr,
                qo_ptr,
                t * BLOCK_R,
                q_rows,
                half,
                qr1,
                qr2,
                qxs0,
                qxs1,
                qxs2,
                qxsd,
                qcs0,
                qcs1,
                qcs2,
                qcsd,
                qss0,
                qss1,
                qss2,
                qssd,
                BLOCK_R=BLOCK_R,
                BLOCK_H=BLOCK_H,
            )
        else:
            _rope_rows(
                kx_ptr,
                kc_ptr,
                ks_ptr,
                ko_ptr,
                (t - q_tiles) * BLOCK_R,
                k_rows,
                half,
                kr1,
                kr2,
                kxs0,
                kxs1,
                kxs2,
                kxsd,
                kcs0,
                kcs1,
                kcs2,
                kcsd,
                kss0,
                kss1,
                kss2,
                kssd,
                BLOCK_R=BLOCK_R,
                BLOCK_H=BLOCK_H,
            )


def _row_layout(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """Sizes of the last two of three merged row dims and the (3 row + 1 column) strides of x, cos, sin."""
    operands = [x, cos, sin]
    merged = _merge_dims(x.shape[:-1], [t.stride()[:-1] for t in operands])
    if len(merged) > MAX_LEAD_DIMS:
        operands = [t.contiguous() for t in operands]
        merged = _merge_dims(x.shape[:-1], [t.stride()[:-1] for t in operands])
    pad = MAX_LEAD_DIMS - len(merged)
    sizes = [1] * pad + [size for size, _ in merged]
    strides = []
    for k, t in enumerate(operands):
        strides += [0] * pad + [st[k] for _, st in merged] + [t.stride(-1)]
    return operands, sizes[1:], strides


def prepare(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, unsqueeze_dim: int = 1):
    """Validate rope's arguments, allocate its outputs and lay the operands out: (q_out, k_out, plan).

    plan is None when q and k are both empty, else (q_layout, k_layout, half) with each layout
    (operands x/cos/sin, sizes of the last two row dims, strides, rows). Shared by the generic op and its
    variants.
    """
    check_tensor("q", q)
    check_tensor("k", k)
    check_dtype_match("k", k, q.dtype, "q")
    check_tensor("cos", cos)
    check_tensor("sin", sin)
    check_dtype_match("sin", sin, cos.dtype, "cos")
    for name, x in (("q", q), ("k", k)):
        if x.dim() < 1 or x.shape[-1] % 2:
            raise ValueError(f"{name}: expected an even last dim (head_dim), got shape {tuple(x.shape)}")
    if k.shape[-1] != q.shape[-1]:
        raise ValueError(f"k: expected head_dim {q.shape[-1]} like q, got shape {tuple(k.shape)}")
    if cos.shape != sin.shape:
        raise ValueError(f"sin: expected shape {tuple(cos.shape)} like cos, got {tuple(sin.shape)}")
    check_same_device(q=q, k=k, cos=cos, sin=sin)
    if not -cos.dim() - 1 <= unsqueeze_dim <= cos.dim():
        raise ValueError(
            f"unsqueeze_dim: expected a dim in [{-cos.dim() - 1}, {cos.dim()}] for cos of "
            f"{cos.dim()} dims, got {unsqueeze_dim}"
        )
    cos_u, sin_u = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
    for x_name, x in (("q", q), ("k", k)):
        if broadcast(cos_u.shape, x.shape) != tuple(x.shape):
            raise ValueError(
                f"cos: shape {tuple(cos_u.shape)} (after unsqueeze({unsqueeze_dim})) does not "
                f"broadcast to {x_name}'s {tuple(x.shape)}"
            )
    dtype = torch.promote_types(q.dtype, cos.dtype)
    q_out, k_out = new_output_as(q, dtype), new_output_as(k, dtype)
    if q.numel() == 0 and k.numel() == 0:
        return q_out, k_out, None
    layouts = []
    for x in (q, k):
        operands, sizes, strides = _row_layout(x, cos_u.expand(x.shape), sin_u.expand(x.shape))
        layouts.append((operands, sizes, strides, x.numel() // max(1, x.shape[-1])))
    return q_out, k_out, (layouts[0], layouts[1], q.shape[-1] // 2)


# Geometry of (q, k, cos, sin) and unsqueeze_dim -> (q_out shape, k_out shape, dtype, grid, runtime ints,
# constexprs) of a launch that reads q, k, cos and sin in place: a decode step repeats it in every layer.
_plans = Plans()


def rope(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, unsqueeze_dim: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """(q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin), cos/sin unsqueezed at
    unsqueeze_dim."""
    plan_key = (geometry(q, k, cos, sin), unsqueeze_dim)
    plan = _plans.get(plan_key)
    if plan is not None:  # checked before; the operands are read in place
        q_shape, k_shape, dtype, grid, ints, site = plan
        q_out, k_out = new_output_of(q, q_shape, dtype), new_output_of(k, k_shape, dtype)
        site(grid, q, k, cos, sin, cos, sin, q_out, k_out, *ints, aligned=aligned(q, k, cos, sin))
        return q_out, k_out
    q_out, k_out, layout = prepare(q, k, cos, sin, unsqueeze_dim)
    if layout is None:
        return q_out, k_out
    ((qx, qc, qs), q_sizes, q_strides, q_rows), ((kx, kc, ks), k_sizes, k_strides, k_rows), half = layout
    block_h = next_pow2(max(half, 1))
    if persistent():
        # Live tiles per element of a BLOCK_R x BLOCK_H tile: two halves of x, cos and sin. Capped at a
        # quarter of MAX_TILE: the kernel holds two inlined rotations of six loads each, and a GPU build of
        # 8192-element tiles took ~30 s (2048: ~5 s) on this project's CPU; on an MLU a larger tile may pay.
        limit = tile_elems(2 * qx.element_size() + 4 * qc.element_size(), cap=MAX_TILE // 4)
        block_r = max(1, min(limit // block_h, next_pow2(cdiv(q_rows + k_rows, max_programs()))))
        q_tiles = cdiv(q_rows, block_r)
        tiles = q_tiles + cdiv(k_rows, block_r)
        grid, counts = (programs(tiles),), (q_tiles, tiles)
        launch(
            _rope_persistent_kernel,
            grid,
            qx,
            kx,
            qc,
            qs,
            kc,
            ks,
            q_out,
            k_out,
            q_rows,
            k_rows,
            *counts,
            half,
            *q_sizes,
            *q_strides,
            *k_sizes,
            *k_strides,
            BLOCK_R=block_r,
            BLOCK_H=block_h,
            num_warps=NUM_WARPS,
        )
        return q_out, k_out
    # ~4K elements per program on a GPU, scaled up for big-block backends; at least one row.
    block_r = max(
        1,
        min(next_pow2(max(q_rows, k_rows, 1)), 4096 * backends.active().policy.block_scale // (2 * block_h)),
    )
    q_programs = cdiv(q_rows, block_r)
    grid = (q_programs + cdiv(k_rows, block_r),)
    ints = (q_rows, k_rows, q_programs, half, *q_sizes, *q_strides, *k_sizes, *k_strides)
    site = Site(_rope_kernel, BLOCK_R=block_r, BLOCK_H=block_h, num_warps=4)
    read = (qx, kx, qc, qs, kc, ks)
    site(grid, *read, q_out, k_out, *ints, aligned=aligned(*read))
    if all(a.data_ptr() == b.data_ptr() for a, b in zip(read, (q, k, cos, sin, cos, sin))):  # no copies made
        _plans.put(plan_key, (tuple(q_out.shape), tuple(k_out.shape), q_out.dtype, grid, ints, site))
    return q_out, k_out


def _rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _setup_context(ctx, inputs, output):
    q, k, cos, sin, ctx.unsqueeze_dim = inputs
    ctx.save_for_backward(q, k, cos, sin)


def _backward(ctx, dq, dk):
    """The rotation's transpose is a rotation: dq_in = rope(dq, cos, -swap_halves(sin)), on our forward kernel
    (for any tables, not only ones whose halves repeat). Gradients of cos/sin, rarely needed (the tables
    come from a buffer), are torch sums of the products they multiplied."""
    q, k, cos, sin = ctx.saved_tensors
    d = ctx.unsqueeze_dim
    dq = torch.zeros_like(q) if dq is None else dq
    dk = torch.zeros_like(k) if dk is None else dk
    half = sin.shape[-1] // 2
    swapped = -torch.cat((sin[..., half:], sin[..., :half]), -1)
    dq_in, dk_in = generic("rope")(dq, dk.to(dq.dtype), cos, swapped, d)
    need = (*ctx.needs_input_grad, False, False, False, False)
    dcos = dsin = None
    if need[2] or need[3]:
        c = cos.unsqueeze(d)
        dcos = ((dq * q).sum_to_size(c.shape) + (dk * k).sum_to_size(c.shape)).squeeze(d).to(cos.dtype)
        dsin = (
            ((dq * _rotate_half(q)).sum_to_size(c.shape) + (dk * _rotate_half(k)).sum_to_size(c.shape))
            .squeeze(d)
            .to(sin.dtype)
        )
    return input_grads(ctx, dq_in.to(q.dtype), dk_in.to(k.dtype), dcos, dsin, None)


def _reference(q, k, cos, sin, unsqueeze_dim=1):
    """transformers' apply_rotary_pos_emb, written out."""
    cos, sin = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
    return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin


def _cost(q, k, cos, sin, unsqueeze_dim=1):
    return Cost(bytes=2 * nbytes(q, k) + nbytes(cos, sin), flops=3 * (q.numel() + k.numel()))


def _tables(batch, seq, dim, dtype, device, gen, theta=1e6):
    """cos/sin [batch, seq, dim] as Qwen3's rotary embedding builds them, at random positions."""
    pos = torch.randint(0, 4096, (batch, seq), device=device, generator=gen).float()
    inv_freq = 1.0 / theta ** (torch.arange(0, dim, 2, device=device).float() / dim)
    freqs = pos[..., None] * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def _case(
    name, batch, q_heads, k_heads, seq, dim, layout="bhsd", table_dtype=None, unsqueeze_dim=1, big=False
):
    """layout "bhsd": q [B, H, S, D]; "bshd": transformers' q.view(B, S, H, D).transpose(1, 2);
    "bshd-raw": q [B, S, H, D] with unsqueeze_dim=2."""

    def make(dtype, device, gen):
        def draw(heads):
            if layout == "bhsd":
                return randn((batch, heads, seq, dim), dtype, device, gen)
            x = randn((batch, seq, heads, dim), dtype, device, gen)
            return x.transpose(1, 2) if layout == "bshd" else x

        cos, sin = _tables(batch, seq, dim, table_dtype or dtype, device, gen)
        return (draw(q_heads), draw(k_heads), cos, sin), {"unsqueeze_dim": unsqueeze_dim}

    return Case(name, make, big=big)


SPEC = register(
    OpSpec(
        name="rope",
        reference=_reference,
        impl=rope,
        cases={
            "quick": lambda: [
                _case("1x4x2x8x16", 1, 4, 2, 8, 16),
                _case("2x2x2x5x64 bshd", 2, 2, 2, 5, 64, "bshd"),
            ],
            "edge": lambda: [
                _case("bshd raw, unsqueeze_dim=2", 2, 4, 2, 7, 16, "bshd-raw", unsqueeze_dim=2),
                _case("fp32 tables (promotes)", 1, 2, 1, 6, 32, table_dtype=torch.float32),
                _case("head_dim 2", 1, 3, 3, 4, 2),
                _case("zero seq", 1, 4, 2, 0, 16),
                _case("big q 1x32x(2**19+1)x128", 1, 32, 1, 2**19 + 1, 128, big=True),
            ],
            "llm": lambda: [
                _case("prefill 1x32/8x2048x128", 1, 32, 8, 2048, 128, "bshd"),
                _case("decode 1x32/8x1x128", 1, 32, 8, 1, 128, "bshd"),
                _case("decode 64x32/8x1x128", 64, 32, 8, 1, 128, "bshd"),
            ],
        },
        cost=_cost,
        aten=(),
        doc="Fused rotary embedding of q and k (transformers' apply_rotary_pos_emb); no ATen overload.",
        backward=_backward,
        setup_context=_setup_context,
    )
)
