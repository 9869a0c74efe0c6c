"""The correctness harness catches wrong values, unwritten outputs, wrong dtypes and crashes."""

import pytest
import torch

from workbench import backends
from workbench.ops import REGISTRY
from workbench.ops._common import new_output
from workbench.profiling import check, compare_outputs, failures
from workbench.profiling.correctness import check_case


@pytest.fixture
def add_variant(monkeypatch):
    """Install a replacement implementation of `add` for the active backend."""
    spec = REGISTRY["add"]

    def install(fn):
        monkeypatch.setitem(spec.variants, backends.active().name, fn)
        return spec

    return install


def test_compare_accepts_rounding_and_rejects_errors():
    ref = torch.randn(1000, dtype=torch.float64)
    assert compare_outputs(ref.to(torch.bfloat16), ref, 1e-2)["passed"]
    assert not compare_outputs(ref.to(torch.bfloat16), ref, 1e-5)["passed"]
    off_by_one = ref.clone()
    off_by_one[17] += 1.0
    metrics = compare_outputs(off_by_one, ref, 1e-2)
    assert not metrics["passed"] and not metrics["elementwise_ok"]


def test_compare_requires_matching_nan_and_inf():
    ref = torch.tensor([1.0, float("nan"), float("inf"), -float("inf")], dtype=torch.float64)
    assert compare_outputs(ref.clone(), ref, 1e-5)["passed"]
    for bad in ([1.0, 0.0, float("inf"), -float("inf")], [1.0, float("nan"), -float("inf"), -float("inf")]):
        assert not compare_outputs(torch.tensor(bad, dtype=torch.float64), ref, 1e-5)["nonfinite_match"]


def test_wrong_values_fail(add_variant):
    spec = add_variant(lambda a, b, alpha=1: torch.add(a, b, alpha=alpha) * 1.05)
    row = check_case(spec, spec.case_list("quick")[0], torch.float32, seed=0)
    assert row["error"] == "" and not row["passed"]
    # the native op on the same inputs meets the bound: the failure is the kernel's, not the tolerance's
    assert row["native_passed"] and row["native_rel_err"] < 1e-6 < row["rel_err"]


def test_unwritten_output_is_caught(add_variant):
    def half_written(a, b, alpha=1):
        out = new_output(torch.broadcast_shapes(a.shape, b.shape), a.dtype, a.device)
        full = torch.add(a, b, alpha=alpha)
        out.view(-1)[: out.numel() // 2] = full.view(-1)[: out.numel() // 2]
        return out

    spec = add_variant(half_written)
    row = check_case(spec, spec.case_list("quick")[0], torch.float32, seed=0)
    assert not row["nonfinite_match"] and not row["passed"]


def test_wrong_dtype_fails(add_variant):
    spec = add_variant(lambda a, b, alpha=1: torch.add(a, b, alpha=alpha).double())
    row = check_case(spec, spec.case_list("quick")[0], torch.float32, seed=0)
    assert not row["dtype_match"] and not row["passed"]


def test_crash_becomes_an_error_row_and_the_table_still_fills(add_variant):
    def crash(*args, **kwargs):
        raise RuntimeError("boom")

    add_variant(crash)
    df = check(ops=["add", "exp"], cases=["quick"], dtypes=["fp32"], progress=False)
    bad = failures(df)
    assert set(bad["op"]) == {"add"} and bad["error"].str.contains("RuntimeError: boom").all()
    assert df[df.op == "exp"]["passed"].all()


def test_check_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown op"):
        check(ops=["nope"], progress=False)
    with pytest.raises(ValueError, match="unknown case set"):
        check(ops=["add"], cases=["huge"], progress=False)
    with pytest.raises(ValueError, match="dtype: expected one of"):
        check(ops=["add"], dtypes=["fp8"], progress=False)


def test_compare_integer_outputs_exactly():
    ref = torch.tensor([3, 1, 4, 1, 5])
    assert compare_outputs(ref.clone(), ref, 1e-2)["passed"]
    off = ref.clone()
    off[2] = 5
    metrics = compare_outputs(off, ref, 1e-2)
    assert (
        not metrics["passed"] and metrics["rel_err"] == pytest.approx(0.2) and metrics["max_abs_err"] == 1.0
    )


def test_compare_tuples_element_by_element():
    a, b = torch.randn(10, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    assert compare_outputs((a.clone(), b.clone()), (a, b), 1e-5)["passed"]
    bad = b.clone()
    bad[0] += 1
    assert not compare_outputs((a.clone(), bad), (a, b), 1e-5)["passed"]
    with pytest.raises(ValueError, match="expected 2 outputs"):
        compare_outputs((a,), (a, b), 1e-5)


def test_compare_topk_indices_only_where_values_are_distinct():
    x = torch.tensor([[5.0, 3.0, 5.0, 1.0, 2.0, 2.0, 0.0]], dtype=torch.float64)
    ref = torch.topk(x, 5)  # values 5 5 3 2 2: only the 3 (index 1) has one right index
    swapped = torch.return_types.topk((ref.values.clone(), ref.indices[:, [1, 0, 2, 4, 3]]))
    assert compare_outputs(swapped, ref, 1e-5)["passed"]
    wrong = ref.indices.clone()
    wrong[0, 2] = 6  # the distinct value's index
    assert not compare_outputs(torch.return_types.topk((ref.values, wrong)), ref, 1e-5)["passed"]
    # sorted along dim 0: the rule follows `dim`
    ref0 = torch.topk(x.t().contiguous(), 5, dim=0)
    wrong0 = ref0.indices.clone()
    wrong0[2, 0] = 6
    swapped0 = torch.return_types.topk((ref0.values, ref0.indices[[1, 0, 2, 4, 3]]))
    assert compare_outputs(swapped0, ref0, 1e-5, dim=0)["passed"]
    assert not compare_outputs(torch.return_types.topk((ref0.values, wrong0)), ref0, 1e-5, dim=0)["passed"]


def test_unwritten_integer_output_is_caught(monkeypatch):
    spec = REGISTRY["argmax"]

    def half_written(x, dim=None, keepdim=False):
        out = new_output(torch.argmax(x, dim, keepdim).shape, torch.int64, x.device)
        out.view(-1)[:1] = torch.argmax(x, dim, keepdim).view(-1)[:1]
        return out

    monkeypatch.setitem(spec.variants, backends.active().name, half_written)
    row = check_case(spec, spec.case_list("quick")[0], torch.float32, seed=0)
    assert row["error"] == "" and not row["passed"]


def test_tuple_output_of_the_wrong_kind_fails(monkeypatch):
    spec = REGISTRY["topk"]
    monkeypatch.setitem(
        spec.variants, backends.active().name, lambda x, k, **kw: tuple(torch.topk(x, k, **kw))
    )
    row = check_case(spec, spec.case_list("quick")[0], torch.float32, seed=0)
    assert not row["dtype_match"] and not row["passed"]
