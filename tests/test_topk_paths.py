"""topk's paths that the registry's cases do not pin down: the filter path with one chunk per row (lanes
in registers) and with split rows (atomic lanes and counter), ties at its threshold, rows whose
candidates overflow the buffer (the merge path takes over), and the merge path itself (ALGORITHM).
Indices are checked exactly against the documented order: equal values, the lower index first."""

import importlib

import pytest
import torch

from workbench import backends
from workbench.ops import _split_rows

topk_mod = importlib.import_module("workbench.ops.topk")


@pytest.fixture(params=["one chunk", "split"])
def chunking(request, monkeypatch):
    """One program per row, or rows cut into as many chunks as they allow."""
    monkeypatch.setattr(_split_rows, "target_programs", lambda: 1 if request.param == "one chunk" else 4096)
    return request.param


def dev():
    return backends.active().device_type


def stable_topk(x, k, largest=True):
    """The best k by value (NaN first), equal values in index order."""
    order = torch.sort(x.float(), dim=-1, descending=largest, stable=True).indices[:, :k]
    return torch.gather(x, 1, order), order


def run_filter(x, k, largest=True):
    """(values, indices, candidate count per row) from the filter path."""
    values, indices, rows = topk_mod.prepare(x, k, -1)
    counts = topk_mod._run_filter(rows, values, indices, k, largest)
    return values, indices, counts.cpu()


def assert_exact(values, indices, x, k, largest=True):
    ref_values, ref_indices = stable_topk(x, k, largest)
    assert torch.equal(indices, ref_indices)
    torch.testing.assert_close(values, ref_values, rtol=0, atol=0, equal_nan=True)  # bit for bit, NaN too


def test_filter_ties_at_the_threshold(chunking):
    g = torch.Generator().manual_seed(0)
    x = (torch.randperm(256, generator=g).reshape(2, 128).float() / 8).to(torch.bfloat16)
    x[0, [3, 40, 77, 120]] = 40.0  # ranks 5..8 of row 0 tie: the k-th (k=6) falls inside the tie
    x[0, [10, 20, 30, 60]] = 50.0
    x[1, ::9] = 33.0  # row 1: the top 15 values equal, k inside them
    k = 6
    values, indices, counts = run_filter(x.to(dev()), k)
    assert_exact(values.cpu(), indices.cpu(), x, k)
    cap = topk_mod.filter_sizes(128, k)[2]
    assert (counts >= 8).all() and (counts <= cap).all()  # every tied value is a candidate, no overflow
    small_values, small_indices, _ = run_filter(x.to(dev()), 5, largest=False)
    assert_exact(small_values.cpu(), small_indices.cpu(), x, 5, largest=False)


def test_filter_overflow_takes_the_merge_path(chunking):
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 2, (2, 150), generator=g).float()
    x[0] = 3.0  # every value tied
    x[1, 7] = float("nan")
    k = 5
    values, indices, counts = run_filter(x.to(dev()), k)
    assert (counts > topk_mod.filter_sizes(150, k)[2]).all()
    assert_exact(values.cpu(), indices.cpu(), x, k)


def test_filter_random_rows_stay_in_the_buffer(chunking):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 160, generator=g) * 3
    x[0, 17] = x[2, 3] = float("nan")  # above +inf
    x[1, 100] = float("inf")
    x[2, 150] = float("-inf")
    k = 7
    for largest in (True, False):
        values, indices, counts = run_filter(x.to(dev()), k, largest)
        assert ((counts >= k) & (counts <= topk_mod.filter_sizes(160, k)[2])).all()
        assert_exact(values.cpu(), indices.cpu(), x, k, largest)


def test_merge_algorithm(chunking):
    merge = topk_mod.SPEC.implementation(backends.active().name, "merge")
    assert merge is topk_mod.SPEC.variant("generic:merge") is topk_mod.topk_merge
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(2, 100, generator=g) * 3).round()  # ties
    out = merge(x.to(dev()), 4)
    assert_exact(out.values.cpu(), out.indices.cpu(), x, 4)


def test_check_and_bench_select_the_algorithm_by_name():
    from workbench.profiling import check
    from workbench.profiling.bench import implementations

    df = check(
        ops=["topk", "exp"], cases=["quick"], dtypes=["fp32"], algorithm="merge", seed=0, progress=False
    )
    assert (df[df.op == "topk"]["variant"] == "generic:merge").all() and df[df.op == "topk"]["passed"].all()
    assert (df[df.op == "exp"]["skipped"] == "no generic:merge variant").all()
    impls = implementations(topk_mod.SPEC, backends.active().name, all_variants=False, algorithm="merge")
    assert list(impls) == ["native", "generic:merge"] and impls["generic:merge"] is topk_mod.topk_merge
