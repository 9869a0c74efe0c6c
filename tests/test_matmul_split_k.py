"""Split-K in the matmul kernels (pointer and TMA), on the interpreter: the device is made to look like a
GPU with many cores and the tuner is handed the GPU's config list (one config at a time, so nothing is
timed), so the split path runs here; its results are checked against float64, run to run for bitwise
equality (the partials are summed in slice order, whatever order the programs arrive in), and the
arrival counters are back at 0 after each launch. Which problems are offered split configs is checked
on the GPU list."""

import dataclasses

import pytest
import torch
import triton  # noqa: E402  (after workbench: the interpreter's mode)

from workbench import backends  # binds the backend before triton is imported
from workbench.ops import REGISTRY, _matmul, _scratch

CORES = 132  # an H100's SMs


@pytest.fixture
def gpu_like(monkeypatch):
    """The active backend reporting CORES cores, fresh tuner state and workspaces; returns a function
    that makes the tuner take one given config."""
    backend = backends.active()
    props = dataclasses.replace(backend.properties(), cores=CORES)
    monkeypatch.setattr(type(backend), "properties", lambda self: props)
    caches = (
        _matmul._tuned,
        _matmul._pointer_launches,
        _matmul._split_sizes,
        _scratch._kept,
        _matmul._autotuned._chosen,
        _matmul._tma_autotuned._chosen,
    )
    saved = [dict(c) for c in caches]

    def use(config: triton.Config, tuner=_matmul._autotuned) -> None:
        for cache in caches:
            cache.clear()
        monkeypatch.setattr(_matmul._autotuned, "configs", _matmul._configs(interpreted=False))
        monkeypatch.setattr(tuner, "configs", tuner.configs + [config])
        monkeypatch.setattr(tuner, "prune", lambda configs, named, **_: [config])
        REGISTRY["linear"].impl.__globals__["_plans"].clear()

    yield use
    for cache, old in zip(caches, saved):
        cache.clear()
        cache.update(old)


def _split(m, n, k, splits):
    return triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k, "GROUP_M": 8, "SPLIT_K": splits})


def _rand(*shape, dtype):
    return torch.randn(*shape, dtype=torch.float32).to(backends.active().device(), dtype)


def _rel_err(got, want):
    return ((got.double() - want).norm() / want.norm()).item()


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
def test_split_k_matches_float64_and_is_deterministic(gpu_like, dtype, tol):
    gpu_like(_split(16, 16, 32, 4))
    torch.manual_seed(0)
    # M=1 decode GEMV; K not a multiple of the slice (the last slice is short); a row of several tiles
    for m, k, n in ((1, 256, 48), (5, 200, 40), (3, 130, 16)):
        x, w, bias = _rand(m, k, dtype=dtype), _rand(n, k, dtype=dtype), _rand(n, dtype=dtype)
        got = REGISTRY["linear"].impl(x, w, bias)
        assert _rel_err(got, x.double() @ w.double().T + bias.double()) < tol
        again = REGISTRY["linear"].impl(x, w, bias)  # the plan's first repeat finds the tuned launch
        assert torch.equal(got, again)
        assert torch.equal(got, REGISTRY["linear"].impl(x, w, bias))  # the plan's Site, workspace per launch
        a, b = _rand(m, k, dtype=dtype), _rand(k, n, dtype=dtype)
        assert _rel_err(REGISTRY["mm"].impl(a, b), a.double() @ b.double()) < tol
        full = _rand(m, n, dtype=dtype)
        got = REGISTRY["addmm"].impl(full, a, b, beta=0.5, alpha=2.0)
        assert _rel_err(got, 0.5 * full.double() + 2.0 * (a.double() @ b.double())) < tol
    part, counts = _matmul._split_workspace(x.device)
    assert counts.dtype == torch.int32 and not counts.any()  # every tile's counter reset by its last program
    assert _matmul._tuned and all(c["SPLIT_K"] == 4 for c in _matmul._tuned.values())


def test_split_k_slices_cover_k_once(gpu_like):
    """Integer-valued operands: the fp32 sums are exact, so a slice read twice or skipped would show."""
    gpu_like(_split(16, 32, 32, 8))
    for k in (2 * 8 * 32, 2 * 8 * 32 + 7, 513):
        a = torch.randint(-3, 4, (7, k)).float().to(backends.active().device())
        b = torch.randint(-3, 4, (k, 40)).float().to(a.device)
        assert torch.equal(REGISTRY["mm"].impl(a, b), a @ b)


def test_split_configs_are_offered_only_to_one_matrix_with_few_tiles(gpu_like):
    gpu_like(_split(16, 16, 32, 4))  # the GPU's config list, and a workspace sized for it
    configs = _matmul._configs(interpreted=False)

    def splits(**named):
        return {c.kwargs["SPLIT_K"] for c in _matmul._prune(configs, named) if c.kwargs["SPLIT_K"] > 1}

    # Qwen3 decode projections: M=1 N=1024 K=4096 has 16-64 tiles of 132 cores: split candidates
    assert splits(M=1, N=1024, K=4096, stride_cb=0)
    assert splits(M=16, N=1024, K=4096, stride_cb=0)
    assert not splits(M=1, N=1024, K=4096, stride_cb=1024)  # a batched product (bmm): never split
    assert not splits(M=1, N=151936, K=4096, stride_cb=0)  # lm_head: tiles enough
    assert not splits(M=2048, N=1024, K=4096, stride_cb=0)  # prefill: tall tiles fill the device
    assert not splits(M=1, N=1024, K=256, stride_cb=0)  # K too short to cut
    assert not splits(M=1)  # sizes not given: no split
    for c in _matmul._prune(configs, {"M": 1, "N": 1024, "K": 4096, "stride_cb": 0}):
        kw = c.kwargs
        tiles = -(-1 // kw["BLOCK_M"]) * -(-1024 // kw["BLOCK_N"])
        if kw["SPLIT_K"] > 1:
            assert tiles < CORES and tiles * kw["SPLIT_K"] <= _matmul.SPLIT_K_PROGRAMS * CORES
            assert (
                tiles * kw["SPLIT_K"] * kw["BLOCK_M"] * kw["BLOCK_N"]
                <= _matmul._split_workspace(torch.device("cpu"))[0].numel()
            )


def test_tma_kernel_splits_k_too(gpu_like, monkeypatch):
    backend = type(backends.active())
    monkeypatch.setattr(
        backend, "capabilities", dataclasses.replace(backends.active().capabilities, tma=True)
    )
    monkeypatch.setattr(_matmul, "TMA_MIN_M", 1)
    config = triton.Config(
        {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 32, "GROUP_M": 8, "PROGRAMS": 0, "SPLIT_K": 4},
        pre_hook=_matmul._set_block_shapes,
    )
    gpu_like(config, tuner=_matmul._tma_autotuned)
    torch.manual_seed(0)
    for m, k, n in ((1, 256, 48), (5, 200, 40)):  # 16-byte aligned rows: the TMA kernel's operands
        x, w, bias = (_rand(*s, dtype=torch.float16) for s in ((m, k), (n, k), (n,)))
        got = REGISTRY["linear"].impl(x, w, bias)  # b by rows
        assert _rel_err(got, x.double() @ w.double().T + bias.double()) < 2e-3
        assert torch.equal(got, REGISTRY["linear"].impl(x, w, bias))
        a, b = _rand(m, k, dtype=torch.float16), _rand(k, n, dtype=torch.float16)
        assert _rel_err(REGISTRY["mm"].impl(a, b), a.double() @ b.double()) < 2e-3
    assert [key[0] for key in _matmul._tuned] == ["tma"] * len(_matmul._tuned) and _matmul._tuned
    assert all(c["SPLIT_K"] == 4 for c in _matmul._tuned.values())
    assert not _matmul._split_workspace(x.device)[1].any()

    configs = _matmul._tma_autotuned.configs
    monkeypatch.setattr(backend, "interpreted", False)  # the GPU's pruning: every candidate that fits
    offered = {
        c.kwargs["SPLIT_K"]
        for c in _matmul._prune_tma(configs, {"M": 64, "N": 1024, "K": 4096, "BATCHED": False})
    }
    assert offered > {1}  # decode batch 64 x a narrow projection: split candidates
    assert {
        c.kwargs["SPLIT_K"]
        for c in _matmul._prune_tma(configs, {"M": 64, "N": 1024, "K": 4096, "BATCHED": True})
    } == {1}
    assert {
        c.kwargs["SPLIT_K"]
        for c in _matmul._prune_tma(configs, {"M": 64, "N": 12288, "K": 4096, "BATCHED": False})
    } == {1}
