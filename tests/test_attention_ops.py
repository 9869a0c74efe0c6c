"""Focused checks for the attention-side Qwen3 ops that the registry-parametrized suite cannot reach:
causal alignment when L != S, GQA, boolean vs additive masks, the split-KV decode path, chunked
argmax/topk, out-of-range inputs and bad arguments."""

import pytest
import torch

from workbench import backends, ops
from workbench.ops import REGISTRY, _index_check, _scratch, _split_rows

NEW_OPS = {
    "scaled_dot_product_attention",
    "rope",
    "silu_and_mul",
    "add_rms_norm",
    "log_softmax",
    "cross_entropy",
    "argmax",
    "topk",
    "cumsum",
    "embedding",
}


def dev():
    return backends.active().device_type


def rand(*shape, dtype=torch.float32, gen=None):
    return torch.randn(*shape, generator=gen, device="cpu").to(dtype).to(dev())


def attention_additive(q, k, v, mask):
    """float64 softmax(q k^T / sqrt(E) + mask) v, as torch computes it; rows of -inf only give 0."""
    q, k, v, mask = q.double().cpu(), k.double().cpu(), v.double().cpu(), mask.double().cpu()
    s = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5 + mask
    return torch.softmax(s, -1).nan_to_num(0.0) @ v


def attention_math(q, k, v, keep):
    """float64 softmax(q k^T / sqrt(E)) v over the keys where `keep` is true;
    rows that keep nothing give 0."""
    keep = keep.cpu()
    return attention_additive(q, k, v, torch.zeros(keep.shape).masked_fill(~keep, -float("inf")))


def close(out, ref, tol=1e-5):
    torch.testing.assert_close(out.double().cpu(), ref.double().cpu(), rtol=tol, atol=tol)


@pytest.fixture
def many_splits(monkeypatch):
    """Make split-KV attention and chunked argmax/topk split their rows as much as they can."""
    monkeypatch.setattr(_split_rows, "target_programs", lambda: 4096)


def test_new_ops_are_registered_and_exported():
    assert NEW_OPS <= set(REGISTRY)
    for name in NEW_OPS:
        assert callable(getattr(ops, name))


@pytest.mark.parametrize("L,S", [(5, 12), (12, 5), (20, 41), (1, 9)])
def test_causal_is_top_left_aligned_like_torch(L, S):
    q, k, v = rand(1, 2, L, 16), rand(1, 2, S, 16), rand(1, 2, S, 16)
    out = ops.scaled_dot_product_attention(q, k, v, is_causal=True)
    top_left = torch.ones(L, S, dtype=torch.bool).tril(0)
    close(out, attention_math(q, k, v, top_left))
    bottom_right = torch.ones(L, S, dtype=torch.bool).tril(S - L)
    assert not torch.allclose(out.double().cpu(), attention_math(q, k, v, bottom_right), atol=1e-3)


@pytest.mark.parametrize("L", [1, 3, 24])  # split-KV decode path and prefill path
def test_gqa_repeats_each_kv_head_for_consecutive_query_heads(L):
    q, k, v = rand(2, 8, L, 16), rand(2, 2, 30, 16), rand(2, 2, 30, 16)
    out = ops.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    repeated = ops.scaled_dot_product_attention(q, k.repeat_interleave(4, 1), v.repeat_interleave(4, 1))
    close(out, repeated)
    close(
        out,
        attention_math(
            q, k.repeat_interleave(4, 1), v.repeat_interleave(4, 1), torch.ones(L, 30, dtype=torch.bool)
        ),
    )


@pytest.mark.parametrize("L", [2, 33])
def test_boolean_and_additive_masks_agree(L):
    S = 37
    q, k, v = rand(1, 2, L, 16), rand(1, 2, S, 16), rand(1, 2, S, 16)
    keep = torch.rand(L, S) > 0.4
    keep[0] = False  # a row with nothing to attend to gives zeros, as in torch
    keep = keep.to(dev())
    additive = torch.zeros(L, S, device=dev()).masked_fill(~keep, -float("inf"))
    by_bool = ops.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    by_add = ops.scaled_dot_product_attention(q, k, v, attn_mask=additive)
    close(by_bool, by_add)
    close(by_bool, attention_math(q, k, v, keep))
    assert (by_bool[:, :, 0] == 0).all()


@pytest.mark.parametrize("L", [3, 40])
def test_mask_and_is_causal_combine(L):
    S = 45
    q, k, v = rand(1, 2, L, 16), rand(1, 2, S, 16), rand(1, 2, S, 16)
    keep = (torch.rand(L, S) > 0.3).to(dev())
    out = ops.scaled_dot_product_attention(q, k, v, attn_mask=keep, is_causal=True)
    close(out, attention_math(q, k, v, keep.cpu() & torch.ones(L, S, dtype=torch.bool).tril(0)))


@pytest.mark.parametrize("per_head", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_prefill_skips_only_the_key_tiles_a_boolean_mask_removes(per_head, causal):
    """A sliding-window mask (whole key tiles masked before and after each query tile's window; windows
    past the row, which is_causal cuts), one window per head or one for all, a row with no key and a key
    nobody sees: the prefill kernel loops over
    each query tile's span of kept keys only, and gives what the float64 reference does."""
    gen = torch.Generator().manual_seed(5)
    B, H, L, S = 2, 2, 70, 75
    q, k, v = rand(B, H, L, 16, gen=gen), rand(B, H, S, 16, gen=gen), rand(B, H, S, 16, gen=gen)
    keep = torch.stack([_band(L, S, 20, gen, H if per_head else 1) for _ in range(B)])
    keep = keep.roll(8, -1)  # windows reach 8 keys past each row: is_causal must take those away
    keep[0, :, 9] = False
    keep[1, :, :, 50] = False
    out = ops.scaled_dot_product_attention(q, k, v, attn_mask=keep.to(dev()), is_causal=causal)
    combined = keep & torch.ones(L, S, dtype=torch.bool).tril(0) if causal else keep
    close(out, attention_math(q, k, v, combined))
    assert (out[0, :, 9] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("causal", [False, True])
def test_prefill_skips_only_the_key_tiles_an_additive_mask_removes(dtype, causal):
    """transformers' padded mask as additive finfo.min (with small biases on the kept keys): sliding
    windows with whole key tiles removed before and after them, a row of finfo.min only (torch: uniform
    over its keys, so the kernel must take the whole row), a row of -inf only (zeros), a row whose one kept
    key sits just above the -1e30 line, and a key nobody keeps. The result is torch's on every row."""
    gen = torch.Generator().manual_seed(11)
    B, H, L, S = 2, 2, 70, 75
    q, k, v = (rand(B, H, n, 16, gen=gen, dtype=dtype) for n in (L, S, S))
    keep = torch.stack([_band(L, S, 20, gen, H) for _ in range(B)]).roll(8, -1)
    low = torch.finfo(dtype).min
    mask = (0.5 * torch.randn(B, H, L, S, generator=gen)).masked_fill(~keep, low)
    mask[0, :, 9] = low  # keeps nothing but finfo.min: uniform, as torch
    mask[1, :, 20] = -float("inf")  # keeps nothing at all: zeros
    mask[1, :, 30] = low
    mask[1, :, 30, 60] = -9.9e29  # one key above the line: it alone counts
    mask[0, :, :, 50] = low
    mask = mask.to(dtype)
    out = ops.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(dev()), is_causal=causal)
    if causal:
        mask = mask.masked_fill(~torch.ones(L, S, dtype=torch.bool).tril(0), -float("inf"))
    ref = attention_additive(q, k, v, mask)
    close(out, ref, tol=1e-5 if dtype == torch.float32 else 2e-2)
    if not causal:  # (is_causal takes key 9 away from the first rows: not uniform over every key then)
        close(out[0, :, 9], v[0].double().cpu().mean(1), tol=1e-5 if dtype == torch.float32 else 2e-2)
    assert (out[1, :, 20] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("additive", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_plain_mask_rows_give_torchs_answer(dtype, additive, causal):
    """Masks whose rows each keep one run of keys with nothing added (transformers' padded causal mask,
    sliding windows) are run from their spans without reading the mask, tile by tile; tiles holding a row
    that is not plain (no key kept, a run cut by is_causal before it starts, a bias) read the mask. Every
    row is torch's answer."""
    gen = torch.Generator().manual_seed(7)
    # sizes past one query tile of the GPU's configs (64 or 128 rows), or of the interpreter's (32)
    B, H, (L, S) = 2, 2, ((70, 75) if backends.active().interpreted else (300, 310))
    q, k, v = (rand(B, H, n, 16, gen=gen, dtype=dtype) for n in (L, S, S))
    i, j = torch.arange(L)[:, None], torch.arange(S)[None, :]
    keep = torch.zeros(B, H, L, S, dtype=torch.bool)
    keep[0] = j <= i + S - L  # causal over a cache of S - L earlier keys...
    keep[0, :, :, :9] = False  # ...left-padded by 9 keys
    keep[0, 1, L - 30 : L - 22] = False
    keep[0, 1, L - 30 : L - 22, L - 20 : L - 10] = True  # runs after their rows: is_causal leaves no key
    keep[1] = _band(L, S, 20, gen, H)  # ragged run starts within each query tile
    keep[1, 1, 40] = False  # a row with no key
    keep[1, 1, 50, 30:35] = True  # a run with a hole
    low = torch.finfo(dtype).min
    mask = torch.zeros(B, H, L, S).masked_fill(~keep, low).to(dtype) if additive else keep
    if additive:
        mask[1, 0, 60, 55] = 0.25  # a kept key with a bias
    out = ops.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(dev()), is_causal=causal)
    ref_mask = mask.float() if additive else torch.zeros(keep.shape).masked_fill(~keep, -float("inf"))
    if causal:
        ref_mask = ref_mask.masked_fill(j > i, -float("inf"))
    close(out, attention_additive(q, k, v, ref_mask), tol=1e-5 if dtype == torch.float32 else 2e-2)


def test_mask_bounds_of_an_additive_mask():
    """An additive mask keeps a key where its value is above -1e30; a row that keeps none spans all keys.
    A row is plain when it keeps one run of keys and adds exactly 0 to each (no NaN anywhere)."""
    from workbench.ops import _mask_bounds

    low = torch.finfo(torch.float32).min
    mask = torch.zeros(1, 1, 6, 40)
    mask[0, 0, 0, :10] = low
    mask[0, 0, 0, 30:] = -float("inf")
    mask[0, 0, 1] = -float("inf")
    mask[0, 0, 2, :] = low
    mask[0, 0, 2, 17] = -9.9e29  # kept, but adds something
    mask[0, 0, 3, :5] = low
    mask[0, 0, 3, 12] = low  # a hole in the run
    mask[0, 0, 3, 25:] = low
    mask[0, 0, 4, 3] = 0.5
    mask[0, 0, 5, 20:] = low
    mask[0, 0, 5, 30] = float("nan")
    want = [[10, 30, 1], [0, 40, 0], [17, 18, 0], [5, 25, 0], [0, 40, 0], [0, 20, 0]]
    for dtype in (torch.float32, torch.bfloat16):
        bounds = _mask_bounds.mask_bounds(mask.to(dev(), dtype), by_rows=True)[0]
        assert bounds[0, 0].cpu().tolist() == want


@pytest.mark.parametrize("L,causal", [(1, False), (4, True)])
def test_split_kv_decode_matches_one_pass(L, causal, many_splits, monkeypatch):
    q, k, v = rand(2, 4, L, 16), rand(2, 2, 150, 16), rand(2, 2, 150, 16)
    keep = torch.ones(L, 150, dtype=torch.bool).tril(0) if causal else torch.ones(L, 150, dtype=torch.bool)
    ref = attention_math(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), keep)
    close(ops.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True), ref)  # ~10 chunks
    # one launch: the last program of each row group merged the chunks and put its count back to 0
    counts = _scratch.kept("sdpa_decode", q.device)[2]
    assert not counts.any()
    close(ops.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True), ref)  # again, planned
    monkeypatch.setattr(_split_rows, "target_programs", lambda: 1)
    close(ops.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True), ref)  # one chunk


@pytest.mark.parametrize("failure", ["raises", "returns None"])
def test_sdpa_reference_falls_back_to_the_math_backend(failure, monkeypatch):
    """Where torch's fused SDPA cannot take the inputs (cuda: past 2**31 elements, an empty bf16 batch),
    the reference computes the same attention with the math backend."""
    reference = REGISTRY["scaled_dot_product_attention"].reference
    fused = torch.nn.functional.scaled_dot_product_attention

    def fused_failing(*args, **kwargs):
        if torch.backends.cuda.math_sdp_enabled() and not torch.backends.cuda.flash_sdp_enabled():
            return fused(*args, **kwargs)  # inside sdpa_kernel(MATH): the math backend answers
        if failure == "raises":
            raise RuntimeError("key.stride(2) overflows")
        return None

    q, k, v = (torch.randn(1, 2, 5, 16, dtype=torch.float64) for _ in range(3))
    expected = fused(q, k, v, is_causal=True)
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", fused_failing)
    torch.testing.assert_close(reference(q, k, v, is_causal=True), expected)


def test_sdpa_reference_reraises_other_errors(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        REGISTRY["scaled_dot_product_attention"].reference(*(torch.randn(1, 1, 2, 4) for _ in range(3)))


def test_attention_head_dim_128_bf16():
    q, k, v = (rand(1, 2, 18, 128, dtype=torch.bfloat16) for _ in range(3))
    out = ops.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert out.dtype == torch.bfloat16
    close(out, attention_math(q, k, v, torch.ones(18, 18, dtype=torch.bool).tril()), tol=2e-2)


def _grads(q, k, v, dout, **kw):
    """(dq, dk, dv) of torch's SDPA in float64 on the cpu."""
    leaves = [t.detach().double().cpu().requires_grad_() for t in (q, k, v)]
    torch.nn.functional.scaled_dot_product_attention(*leaves, **kw).backward(dout.double().cpu())
    return [t.grad for t in leaves]


@pytest.mark.parametrize(
    "q_shape, kv_shape, ev, causal",
    [
        ((2, 4, 37, 16), (2, 2, 45, 16), 16, True),  # GQA, L != S, tiles cut at both ends
        ((1, 2, 33, 40), (1, 2, 33, 40), 24, False),  # padded head dims, value dim != key dim
        ((1, 2, 1, 16), (1, 2, 50, 16), 16, False),  # one query row
        ((1, 1, 50, 16), (1, 1, 20, 16), 16, True),  # more queries than keys
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_flash_backward_matches_float64(q_shape, kv_shape, ev, causal, dtype):
    from workbench.ops import _attention_backward

    gen = torch.Generator().manual_seed(7)
    q, k = rand(*q_shape, dtype=dtype, gen=gen), rand(*kv_shape, dtype=dtype, gen=gen)
    v = rand(*kv_shape[:-1], ev, dtype=dtype, gen=gen)
    dout = rand(*q_shape[:-1], ev, dtype=dtype, gen=gen)
    gqa = q_shape[1] != kv_shape[1]
    assert _attention_backward.takes(q, k, v, None, gqa)
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=gqa)
    ours = _attention_backward.flash_backward(dout, q, k, v, out, causal, None)
    want = _grads(q, k, v, dout, is_causal=causal, enable_gqa=gqa)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    for got, ref in zip(ours, want):
        assert got.dtype == dtype and got.shape == ref.shape
        assert float((got.double().cpu() - ref).norm()) <= tol * float(ref.norm()) + 1e-6


def _band(L, S, width, gen, per_head=1):
    """(per_head, L, S) keep masks: query i keeps keys i - width < j <= i (a sliding window; whole tiles
    masked before and after it), each head's width shortened by a random amount."""
    i, j = torch.arange(L)[:, None], torch.arange(S)[None, :]
    widths = width - torch.randint(0, width // 2, (per_head,), generator=gen)
    return torch.stack([(j <= i) & (j > i - w) for w in widths.tolist()])


@pytest.mark.parametrize("kind", ["random", "band", "band per head"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_flash_backward_with_a_boolean_mask_matches_float64(kind, causal, dtype):
    """transformers' mask of a compiled model: (B, 1, L, S), broadcast over heads (or one per head); one
    padded row that keeps no key (P = 0: no gradient through it), a key nobody sees, keys masked inside
    the tiles (random) or whole tiles before and after a window (band: the skipped tiles), GQA."""
    from workbench.ops import _attention_backward

    gen = torch.Generator().manual_seed(11)
    B, H, HK, L, S, E = 2, 4, 2, 37, 41, 16
    q, k, v = (
        rand(B, H, L, E, dtype=dtype, gen=gen),
        rand(B, HK, S, E, dtype=dtype, gen=gen),
        rand(B, HK, S, E, dtype=dtype, gen=gen),
    )
    dout = rand(B, H, L, E, dtype=dtype, gen=gen)
    if kind == "random":
        keep = torch.rand(B, 1, L, S, generator=gen) > 0.3
    else:
        heads = H if kind == "band per head" else 1
        keep = torch.stack([_band(L, S, 12, gen, heads) for _ in range(B)])
    keep[0, :, 5] = False  # a row with no key
    keep[1, :, :, 3] = False  # a key nobody sees
    keep = keep.to(q.device)
    assert _attention_backward.takes(q, k, v, keep, True)
    combined = keep  # torch takes no mask with is_causal: the combined mask gives its output and reference
    if causal:
        combined = keep & torch.ones(L, S, dtype=torch.bool, device=q.device).tril()
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, combined, enable_gqa=True)
    ours = _attention_backward.flash_backward(dout, q, k, v, out, causal, None, keep)
    want = _grads(q, k, v, dout, attn_mask=combined.cpu(), enable_gqa=True)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    for got, ref in zip(ours, want):
        assert got.dtype == dtype and got.shape == ref.shape
        assert torch.isfinite(got).all()
        assert float((got.double().cpu() - ref).norm()) <= tol * float(ref.norm()) + 1e-6
    assert not ours[0][0, :, 5].any()  # the row with no key passes no gradient
    assert not ours[1][1, :, 3].any() and not ours[2][1, :, 3].any()  # nor the key nobody sees


def test_mask_bounds_give_each_line_its_first_and_last_kept_index():
    """Per query row the kept keys' [first, last + 1), per key the rows keeping it; (n, 0) where none;
    whether the line keeps one unbroken run; one slice per batch or head the mask really has (broadcast
    dims: stride 0)."""
    from workbench.ops import _mask_bounds

    gen = torch.Generator().manual_seed(3)
    keep = torch.rand(2, 1, 9, 70, generator=gen) > 0.8
    keep[1, 0, 4] = False
    keep[0, 0, :, 66] = False
    keep[0, 0, 2] = False
    keep[0, 0, 2, 7:19] = True  # one run
    keep[1, 0, 5] = False
    keep[1, 0, 5, 40] = True  # one key
    view = keep.to(dev()).expand(2, 3, 9, 70)
    for by_rows, lines in ((True, keep[:, 0]), (False, keep[:, 0].transpose(1, 2))):
        bounds, sb, sh = _mask_bounds.mask_bounds(view, by_rows)
        assert bounds.shape == (2, 1, lines.shape[1], 3) and sh == 0 and sb == lines.shape[1] * 3
        idx = torch.arange(lines.shape[2])
        first = torch.where(lines, idx, lines.shape[2]).amin(-1)
        end = torch.where(lines, idx + 1, 0).amax(-1)
        count = lines.sum(-1)
        plain = (count > 0) & (count == end - first)
        assert torch.equal(bounds[:, 0].cpu(), torch.stack([first, end, plain], -1).int())
        assert not by_rows or (plain[0, 2] and plain[1, 5] and not plain[1, 4])


def test_flash_backward_takes_only_4d_inputs_unmasked_or_boolean():
    from workbench.ops import _attention_backward

    q, k = rand(1, 4, 8, 16), rand(1, 2, 8, 16)
    assert _attention_backward.takes(q, k, k, None, enable_gqa=True)
    assert not _attention_backward.takes(q, k, k, None, enable_gqa=False)  # heads differ without GQA
    assert _attention_backward.takes(q, k, k, torch.ones(8, 8, dtype=torch.bool, device=q.device), True)
    assert not _attention_backward.takes(q, k, k, torch.zeros(8, 8, device=q.device), True)  # additive
    assert not _attention_backward.takes(q[0], k[0], k[0], None, True)  # 3-D: broadcast batch handling
    assert not _attention_backward.takes(q, rand(2, 2, 8, 16), rand(2, 2, 8, 16), None, True)


def test_rope_matches_transformers_layout():
    B, H, KV, S, D = 2, 4, 2, 5, 16
    q = rand(B, S, H, D).transpose(1, 2)
    k = rand(B, S, KV, D).transpose(1, 2)
    pos = torch.arange(S, dtype=torch.float32)[None].expand(B, S)
    inv = 1.0 / 1e6 ** (torch.arange(0, D, 2).float() / D)
    emb = torch.cat([pos[..., None] * inv] * 2, -1)
    cos, sin = emb.cos().to(dev()), emb.sin().to(dev())
    q_out, k_out = ops.rope(q, k, cos, sin)

    def rotate_half(x):
        return torch.cat((-x[..., D // 2 :], x[..., : D // 2]), -1)

    close(q_out, q * cos[:, None] + rotate_half(q) * sin[:, None])
    close(k_out, k * cos[:, None] + rotate_half(k) * sin[:, None])
    close(q_out[:, :, 0], q[:, :, 0])  # position 0 is not rotated


def test_add_rms_norm_returns_normed_and_residual():
    x, res, w = rand(3, 64), rand(3, 64), rand(64)
    normed, total = ops.add_rms_norm(x, res, w, eps=1e-6)
    close(total, x + res)
    close(normed, torch.nn.functional.rms_norm(x + res, (64,), w, 1e-6))


def test_argmax_first_index_across_chunks(many_splits):
    x = rand(2, 3000)
    x[0, [100, 1700, 2900]] = 50.0  # the same maximum in three chunks
    x[1, 2500] = float("nan")
    x[1, 2999] = float("nan")
    assert ops.argmax(x, dim=1).tolist() == [100, 2500]
    assert ops.argmax(x).item() == 3000 + 2500  # flattened: the first NaN


def test_topk_sorted_valid_and_split(many_splits):
    x = rand(2, 200)
    x[0, 10] = x[0, 190] = 9.0  # a tie at the top, in two chunks: the lower index first
    values, indices = ops.topk(x, 6)
    ref = torch.topk(x, 6)
    assert torch.equal(values, ref.values)
    assert torch.equal(torch.gather(x, 1, indices), values)
    assert indices[0, :2].tolist() == [10, 190]
    small = ops.topk(x, 3, largest=False)
    assert torch.equal(small.values, torch.topk(x, 3, largest=False).values)


def test_cross_entropy_ignored_and_out_of_range_targets():
    x = rand(4, 10)
    t = torch.tensor([1, -100, 3, 9], device=dev())
    per_row = ops.cross_entropy(x, t, reduction="none")
    assert per_row[1] == 0
    close(per_row[[0, 2, 3]], torch.nn.functional.cross_entropy(x[[0, 2, 3]], t[[0, 2, 3]], reduction="none"))
    with pytest.raises(IndexError, match="cross_entropy: Target 12 is out of bounds"):  # as torch
        ops.cross_entropy(x, torch.tensor([1, -100, 3, 12], device=dev()), reduction="none")
        _index_check.raise_pending()  # on a GPU the error may come after the call (docs/ops.md)


def test_embedding_out_of_range_index_raises():
    w = rand(5, 8)
    close(ops.embedding(torch.tensor([1, 4], device=dev()), w), w[[1, 4]])
    for bad in (7, -1):
        with pytest.raises(IndexError, match=f"embedding: index out of range in self: index {bad} "):
            ops.embedding(torch.tensor([1, bad], device=dev()), w)
            _index_check.raise_pending()  # on a GPU the error may come after the call


@pytest.mark.parametrize("shape,dim", [((2, 40000), 1), ((2000, 3, 5), 0)])
def test_cumsum_in_chunks(shape, dim, many_splits):
    x = rand(*shape)
    close(ops.cumsum(x, dim), torch.cumsum(x.double(), dim), tol=1e-3)  # fp32 sums of ~200 in magnitude


def test_cumsum_accumulates_in_fp32():
    x = torch.full((1, 4096), 1.0, dtype=torch.bfloat16, device=dev())
    out = ops.cumsum(x, 1)
    assert out[0, -1].item() == 4096  # a bf16 running sum would stall at 256
    assert out.dtype == torch.bfloat16 and ops.cumsum(x, 1, dtype=torch.float32).dtype == torch.float32


def x(*shape, dtype=torch.float32):
    return rand(*shape, dtype=dtype)


def idx(*values):
    return torch.tensor(values, device=dev())


@pytest.mark.parametrize(
    "call,exc,pattern",
    [
        (
            lambda: ops.scaled_dot_product_attention(
                x(1, 2, 4, 8), x(1, 2, 5, 8), x(1, 2, 5, 8, dtype=torch.float16)
            ),
            TypeError,
            r"value: expected dtype torch.float32 to match query",
        ),
        (
            lambda: ops.scaled_dot_product_attention(x(1, 2, 4, 8), x(1, 2, 5, 6), x(1, 2, 5, 8)),
            ValueError,
            r"key: expected head_dim 8 like query",
        ),
        (
            lambda: ops.scaled_dot_product_attention(x(1, 2, 4, 8), x(1, 2, 5, 8), x(1, 2, 6, 8)),
            ValueError,
            r"value: expected 5 keys like key",
        ),
        (
            lambda: ops.scaled_dot_product_attention(
                x(1, 6, 4, 8), x(1, 4, 5, 8), x(1, 4, 5, 8), enable_gqa=True
            ),
            ValueError,
            r"key: expected a number of heads that divides query's 6, got 4",
        ),
        (
            lambda: ops.scaled_dot_product_attention(x(1, 6, 4, 8), x(1, 4, 5, 8), x(1, 4, 5, 8)),
            ValueError,
            r"key, value: leading dims",
        ),
        (
            lambda: ops.scaled_dot_product_attention(x(2, 4, 8), x(2, 5, 8), x(2, 5, 8), attn_mask=x(3, 5)),
            ValueError,
            r"attn_mask: shape \(3, 5\) does not broadcast to \(2, 4, 5\)",
        ),
        (
            lambda: ops.scaled_dot_product_attention(x(2, 4, 8), x(2, 5, 8), x(2, 5, 8), attn_mask=idx(1, 2)),
            TypeError,
            r"attn_mask: expected dtype in \(bool, float32\), got int64",
        ),
        (
            lambda: ops.scaled_dot_product_attention(x(2, 4, 8), x(2, 5, 8), x(2, 5, 8), dropout_p=0.1),
            ValueError,
            r"dropout_p: expected 0.0",
        ),
        (
            lambda: ops.rope(x(1, 2, 3, 7), x(1, 2, 3, 7), x(1, 3, 7), x(1, 3, 7)),
            ValueError,
            r"q: expected an even last dim",
        ),
        (
            lambda: ops.rope(x(1, 2, 3, 8), x(1, 2, 3, 8), x(1, 4, 8), x(1, 4, 8)),
            ValueError,
            r"cos: shape \(1, 1, 4, 8\) \(after unsqueeze\(1\)\) does not broadcast to q's",
        ),
        (
            lambda: ops.rope(x(1, 2, 3, 8), x(1, 2, 3, 8, dtype=torch.float16), x(1, 3, 8), x(1, 3, 8)),
            TypeError,
            r"k: expected dtype torch.float32 to match q",
        ),
        (
            lambda: ops.silu_and_mul(x(4, 6), x(4, 5)),
            ValueError,
            r"up: shape \(4, 5\) does not broadcast with gate",
        ),
        (lambda: ops.add_rms_norm(x(4, 6), x(4, 5)), ValueError, r"residual: expected shape \(4, 6\) like x"),
        (lambda: ops.add_rms_norm(x(4, 6), x(4, 6), x(5)), ValueError, r"weight: expected shape \(6,\)"),
        (lambda: ops.log_softmax(x(2, 3), dim=2), ValueError, r"dim: expected a dim in \[-2, 2\), got 2"),
        (
            lambda: ops.cross_entropy(x(4, 10), x(4)),
            TypeError,
            r"target: expected dtype in \(int64\), got float32",
        ),
        (lambda: ops.cross_entropy(x(4, 10), idx(1, 2, 3)), ValueError, r"target: expected shape \(4,\)"),
        (
            lambda: ops.cross_entropy(x(4, 10), idx(1, 2, 3, 4), reduction="avg"),
            ValueError,
            r"reduction: expected one of",
        ),
        (lambda: ops.argmax(x(3, 4), dim=2), ValueError, r"dim: expected a dim in \[-2, 2\), got 2"),
        (lambda: ops.argmax(x(0, 4)), ValueError, r"x: expected a non-empty tensor when dim is None"),
        (lambda: ops.argmax(x(3, 0), dim=1), ValueError, r"x: expected dim 1 to have a non-zero size"),
        (
            lambda: ops.topk(x(3, 4), 5),
            ValueError,
            r"k: expected an int in \[0, 4\] \(size of dim -1\), got 5",
        ),
        (lambda: ops.topk(x(3, 2000), 1500), ValueError, r"k: expected at most 1024"),
        (lambda: ops.topk(idx(1, 2), 1), TypeError, r"x: expected dtype in .*got int64"),
        (lambda: ops.cumsum(x(3, 4), 2), ValueError, r"dim: expected a dim in \[-2, 2\), got 2"),
        (lambda: ops.cumsum(x(3, 4), 1, dtype=torch.float64), TypeError, r"dtype: expected one of"),
        (
            lambda: ops.embedding(x(3), x(5, 4)),
            TypeError,
            r"input: expected dtype in \(int64, int32\), got float32",
        ),
        (lambda: ops.embedding(idx(1), x(5)), ValueError, r"weight: expected a 2-D"),
        (
            lambda: ops.embedding(idx(1), x(5, 4), padding_idx=5),
            ValueError,
            r"padding_idx: expected a value in \[-5, 5\)",
        ),
    ],
)
def test_bad_input_is_named(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()
