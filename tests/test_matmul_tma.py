"""The TMA-descriptor matmul kernel (Hopper and later) on the interpreter: the path is forced on (tma
capability, TMA_MIN_M = 1), so its layouts, batch, bias and epilogue are checked against a float64
product here; which operands it refuses (they take the pointer kernel) is checked without running it."""

import dataclasses

import pytest
import torch

from workbench import backends
from workbench.ops import REGISTRY, _launch, _matmul


@pytest.fixture
def tma_on(monkeypatch):
    backend = type(backends.active())
    monkeypatch.setattr(
        backend, "capabilities", dataclasses.replace(backends.active().capabilities, tma=True)
    )
    monkeypatch.setattr(_matmul, "TMA_MIN_M", 1)
    served = []
    original = _matmul._matmul_tma
    monkeypatch.setattr(_matmul, "_matmul_tma", lambda *a, **k: (served.append(a[6]), original(*a, **k)))
    return served  # the batch of every call the TMA kernel served


def _rand(*shape, dtype):
    return torch.randn(*shape, dtype=torch.float32).to(dtype)


def _assert_close(got, want, dtype):
    err = ((got.double() - want).norm() / want.norm()).item()
    assert err < (2e-3 if dtype == torch.float16 else 1e-2), err


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_tma_kernel_matches_float64(tma_on, dtype):
    torch.manual_seed(0)
    x, w, bias = _rand(70, 40, dtype=dtype), _rand(24, 40, dtype=dtype), _rand(24, dtype=dtype)
    _assert_close(REGISTRY["linear"].impl(x, w, bias), x.double() @ w.double().T + bias.double(), dtype)
    a, b = _rand(33, 24, dtype=dtype), _rand(24, 40, dtype=dtype)
    _assert_close(REGISTRY["mm"].impl(a, b), a.double() @ b.double(), dtype)
    inp = _rand(33, 40, dtype=dtype)
    _assert_close(
        REGISTRY["addmm"].impl(inp, a, b, beta=2.0, alpha=0.5),
        2.0 * inp.double() + 0.5 * (a.double() @ b.double()),
        dtype,
    )
    q, k = _rand(3, 20, 16, dtype=dtype), _rand(3, 24, 16, dtype=dtype)
    _assert_close(REGISTRY["bmm"].impl(q, k.transpose(1, 2)), q.double() @ k.double().transpose(1, 2), dtype)
    v = _rand(3, 16, 24, dtype=dtype)
    _assert_close(REGISTRY["bmm"].impl(q, v), q.double() @ v.double(), dtype)
    assert tma_on == [1, 1, 1, 3, 3]  # every call above took the TMA kernel


def test_tma_kernel_refuses_what_it_cannot_read(tma_on):
    def layout(a, b, batch=1):
        c = torch.empty(a.shape[-2], b.shape[-1], dtype=a.dtype)
        a3, b3 = (a, b) if a.dim() == 3 else (a[None], b[None])
        c_strides = (c.shape[0] * c.shape[1], c.stride(0))
        return _matmul._tma_layout(
            a, b, c, a.shape[-2], a.shape[-1], batch, a3.stride(), b3.stride(), c_strides
        )

    h = torch.float16
    assert layout(_rand(64, 32, dtype=h), _rand(32, 48, dtype=h)) is False  # row-major b
    assert layout(_rand(64, 32, dtype=h), _rand(48, 32, dtype=h).T) is True  # b by rows (a linear's weight)
    assert layout(_rand(64, 32, dtype=torch.float32), _rand(32, 48, dtype=torch.float32)) is None  # fp32
    assert layout(_rand(32, 64, dtype=h).T, _rand(32, 48, dtype=h)) is None  # a transposed
    assert layout(_rand(64, 20, dtype=h), _rand(20, 48, dtype=h)) is None  # 40-byte rows: not 16-byte aligned
    assert layout(_rand(64, 33, dtype=h)[:, 1:], _rand(32, 48, dtype=h)) is None  # base off 16-byte alignment
    assert layout(_rand(1, 64, 32, dtype=h).expand(3, 64, 32), _rand(3, 32, 48, dtype=h), batch=3) is None


def test_tma_falls_back_below_min_m(tma_on, monkeypatch):
    monkeypatch.setattr(_matmul, "TMA_MIN_M", 64)
    a, b = _rand(8, 32, dtype=torch.float16), _rand(32, 16, dtype=torch.float16)
    _assert_close(REGISTRY["mm"].impl(a, b), a.double() @ b.double(), torch.float16)
    assert tma_on == []


def test_launch_key_tells_descriptors_apart():
    from triton.tools.tensor_descriptor import TensorDescriptor

    t = torch.zeros(64, 64, dtype=torch.float16)
    key = _launch._arg_key
    base = key(TensorDescriptor(t, [64, 64], [64, 1], [16, 16]))
    assert base == key(TensorDescriptor(t.clone(), [64, 64], [64, 1], [16, 16]))
    assert base != key(TensorDescriptor(t, [64, 64], [64, 1], [32, 16]))  # other tiles
    assert base != key(TensorDescriptor(t, [32, 64], [64, 1], [16, 16]))  # other shape
    assert base != key(TensorDescriptor(t.to(torch.bfloat16), [64, 64], [64, 1], [16, 16]))  # other dtype


def test_persistent_programs_walk_every_matrix_of_a_batch(tma_on, monkeypatch):
    """PROGRAMS > 0: a few programs walk the tiles of all matrices (attention scores' long run of short-K
    tiles); each tile is computed once, whichever matrix it belongs to."""
    import triton

    config = triton.Config(
        {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "GROUP_M": 2, "PROGRAMS": 3, "SPLIT_K": 1},
        pre_hook=_matmul._set_block_shapes,
    )
    tuner = _matmul._tma_autotuned
    monkeypatch.setattr(tuner, "configs", tuner.configs + [config])
    monkeypatch.setattr(tuner, "prune", lambda configs, named, **_: [config])
    monkeypatch.setattr(tuner, "_chosen", {})
    monkeypatch.setattr(_matmul, "_tuned", {})
    q, k = _rand(3, 40, 32, dtype=torch.float16), _rand(3, 24, 32, dtype=torch.float16)
    _assert_close(
        REGISTRY["bmm"].impl(q, k.transpose(1, 2)), q.double() @ k.double().transpose(1, 2), torch.float16
    )  # 3 matrices x 3x2 tiles over 3 programs, b by rows
    v = _rand(3, 32, 24, dtype=torch.float16)
    _assert_close(REGISTRY["bmm"].impl(q, v), q.double() @ v.double(), torch.float16)
    a, b = _rand(40, 32, dtype=torch.float16), _rand(32, 56, dtype=torch.float16)  # one matrix
    _assert_close(REGISTRY["mm"].impl(a, b), a.double() @ b.double(), torch.float16)
    assert tma_on == [3, 3, 1] and all(c["PROGRAMS"] == 3 for c in _matmul._tuned.values())
