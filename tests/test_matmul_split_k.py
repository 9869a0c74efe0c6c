"""Split-K: a product with few output tiles cut along K into a batched product of fp32 partials and a
summing epilogue. Forced on small shapes here (SPLIT_K_MIN lowered); checked against float64."""

import pytest
import torch

from workbench.ops import REGISTRY, _matmul


@pytest.fixture
def small_slices(monkeypatch):
    monkeypatch.setattr(_matmul, "SPLIT_K_MIN", 16)
    monkeypatch.setattr(_matmul.backends.active(), "properties",
                        lambda: _matmul.backends.base.DeviceProperties("test", cores=8, memory_bytes=0))


def test_split_count(small_slices):
    assert _matmul.split_k(3, 40, 128, 1) == 8  # 1 tile, 8 cores: 8 slices of 16 columns
    assert _matmul.split_k(3, 40, 128, 2) == 1  # batched products are not split
    assert _matmul.split_k(3, 40, 48, 1) == 1  # 48 is not two slices of a multiple of 16
    assert _matmul.split_k(3, 40, 0, 1) == 1
    assert _matmul.split_k(300, 600, 128, 1) == 1  # enough tiles already


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_split_k_matches_float64(small_slices, dtype):
    torch.manual_seed(0)
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    x, w, bias = (torch.randn(*s, dtype=dtype) for s in ((3, 128), (40, 128), (40,)))
    got = REGISTRY["linear"].impl(x, w, bias)
    want = x.double() @ w.double().T + bias.double()
    assert ((got.double() - want).norm() / want.norm()).item() < tol
    inp, a, b = torch.randn(3, 40, dtype=dtype), torch.randn(128, 3, dtype=dtype).T, torch.randn(128, 40, dtype=dtype)
    got = REGISTRY["addmm"].impl(inp, a, b, beta=0.5, alpha=2.0)  # a transposed: strided slices
    want = 0.5 * inp.double() + 2.0 * (a.double() @ b.double())
    assert got.dtype == dtype and ((got.double() - want).norm() / want.norm()).item() < tol
