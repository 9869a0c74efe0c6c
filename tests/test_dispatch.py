"""The ATen dispatch override: use_ops / enable / disable, fallback to native, and the coverage report."""

import re
import warnings
from pathlib import Path

import pytest
import torch

import workbench
from workbench import backends, dispatch
from workbench.ops import REGISTRY, OpSpec, Unsupported
from workbench.ops.spec import Cost
from workbench.selection import aten_overload

ADD_OVERLOADS = ["aten::add.Scalar", "aten::add.Tensor"]


def t(*shape, dtype=torch.float32):
    return torch.randn(*shape, device=backends.active().device_type).to(dtype)


@pytest.fixture
def variant(monkeypatch):
    """Install a replacement implementation of an op for the active backend (what use_ops then calls)."""

    def install(name, fn):
        monkeypatch.setitem(REGISTRY[name].variants, backends.active().name, fn)

    return install


@pytest.fixture(autouse=True)
def nothing_left_registered():
    yield
    assert dispatch.replaced() == [], "a test left workbench kernels registered"


def test_inside_use_ops_aten_calls_reach_our_op_and_outside_they_do_not(variant):
    calls = []

    def marked(input, other, alpha=1):
        calls.append(alpha)
        return REGISTRY["add"].impl(input, other, alpha=alpha) + 1000  # only ours adds 1000

    variant("add", marked)
    x, y = t(5, 7), t(5, 7)
    native = x + y
    with workbench.use_ops(include=["add"]) as cov:
        assert dispatch.replaced() == ADD_OVERLOADS
        inside = x + y
        scaled = torch.add(x, y, alpha=2)
    outside = x + y
    torch.testing.assert_close(inside, native + 1000)
    torch.testing.assert_close(scaled, torch.add(x, y, alpha=2) + 1000)
    torch.testing.assert_close(outside, native)
    assert calls == [1, 2]
    row = cov.table().set_index("aten_op").loc["aten::add.Tensor"]
    assert (row.op, row.calls, row.handled, row.fallback, row.reasons) == ("add", 2, 2, 0, "")


def test_the_real_kernels_run_and_agree_with_native():
    x, y = t(6, 33), t(33)
    with workbench.use_ops() as cov:
        out = torch.softmax(x * y - 1.5, dim=-1)
    torch.testing.assert_close(out, torch.softmax(x * y - 1.5, dim=-1))
    handled = dict(zip(cov.table().aten_op, cov.table().handled))
    assert handled == {"aten::mul.Tensor": 1, "aten::sub.Tensor": 1, "aten::_softmax": 1}


def test_unsupported_dtype_falls_back_to_native_and_is_reported():
    x = t(4, 9, dtype=torch.float64)
    with workbench.use_ops() as cov:
        out = x + x * 0.5
    torch.testing.assert_close(out, x + x * 0.5)
    assert out.dtype == torch.float64
    table = cov.table().set_index("aten_op")
    for overload in ("aten::add.Tensor", "aten::mul.Tensor"):
        assert table.loc[overload, "fallback"] == 1 and table.loc[overload, "handled"] == 0
        assert re.fullmatch(
            r"input: expected dtype in \(float32, float16, bfloat16, int32, int64\), got float64 \(1\)",
            table.loc[overload, "reasons"],
        )


def test_fallback_calls_the_native_kernel_once_without_recursing(variant, monkeypatch):
    adapter_calls, native_calls = [], []

    def refuse(*args, **kwargs):
        adapter_calls.append(1)
        raise Unsupported("not today")

    variant("add", refuse)
    real_call_native = dispatch._call_native
    monkeypatch.setattr(dispatch, "_call_native", lambda *a: native_calls.append(1) or real_call_native(*a))
    x = t(3, 4)
    with workbench.use_ops(include=["add"]) as cov:
        out = x + x
    torch.testing.assert_close(out, 2 * x)
    assert adapter_calls == [1] and native_calls == [1]
    assert cov.table().reasons.tolist() == ["not today (1)"]


def test_wrapped_numbers_reach_native_kernels_with_their_promotion(variant):
    # ATen hands Python kernels the scalar in `x + 1` as a Python number; on fallback it goes back to a
    # tensor that must promote like the original wrapped number. Our kernels take these integer calls,
    # so they are made to refuse here: every call below falls back.
    def refuse(*args, **kwargs):
        raise Unsupported("refused for this test")

    for op in ("add", "mul", "where", "gt"):
        variant(op, refuse)
    i = torch.arange(6, device=backends.active().device_type)
    x64 = t(5, dtype=torch.float64)
    with workbench.use_ops() as cov:
        ints, floats, exact = i + 1, i * 1.5, x64 + 0.1
        zero_dim = torch.tensor(3, device=i.device) + 2.5
        picked = torch.where(i > 2, i, 0)
    assert ints.dtype == torch.int64 and torch.equal(ints, torch.arange(1, 7, device=i.device))
    assert floats.dtype == torch.float32 and torch.equal(floats, i.float() * 1.5)
    assert torch.equal(exact, x64 + 0.1)  # not 0.1 rounded to float32
    assert zero_dim.dtype == torch.float32 and zero_dim.item() == 5.5
    assert torch.equal(picked, torch.where(i > 2, i, 0))
    assert cov.table().fallback.sum() >= 6 and cov.table().handled.sum() == 0


def test_integer_bookkeeping_runs_our_kernels_exactly():
    # positions, masks and counts as generate and the loss pass make them: int64 / bool, served by us
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]], device=backends.active().device_type).bool()
    big = torch.tensor([2**40 + 1, -(2**41) - 3], device=mask.device)
    with workbench.use_ops() as cov:
        positions = mask.long().cumsum(-1) - 1
        positions = positions.masked_fill(~mask, 1)
        unfinished = (positions > 0).sum(-1)
        shifted = big + 2**40 - big * 3
    assert torch.equal(positions, torch.tensor([[1, 0, 1, 2], [0, 1, 2, 3]], device=mask.device))
    assert unfinished.dtype == torch.int64 and unfinished.tolist() == [3, 3]
    assert torch.equal(shifted, big + 2**40 - big * 3) and shifted.dtype == torch.int64
    handled = cov.table().set_index("aten_op")["handled"]
    assert {
        "aten::cumsum",
        "aten::sub.Tensor",
        "aten::masked_fill.Scalar",
        "aten::gt.Scalar",
        "aten::sum.dim_IntList",
        "aten::add.Tensor",
        "aten::mul.Tensor",
    } <= set(handled[handled > 0].index)
    assert cov.table().fallback.sum() == 0


def test_nested_contexts_innermost_wins_and_counts_join_the_outer_recorder():
    x = t(4, 4)
    with workbench.use_ops(include=["add"]) as outer:
        x + x
        with workbench.use_ops(include=["aten::mul.Tensor"]) as inner:
            assert dispatch.replaced() == ["aten::mul.Tensor"]
            x * x
            x + x  # not replaced in here: native, counted nowhere
        assert dispatch.replaced() == ADD_OVERLOADS
        x + x
        x * x  # native again
    assert dict(zip(inner.table().aten_op, inner.table().calls)) == {"aten::mul.Tensor": 1}
    assert dict(zip(outer.table().aten_op, outer.table().calls)) == {
        "aten::add.Tensor": 2,
        "aten::mul.Tensor": 1,
    }


def test_repeated_use_and_an_exception_inside_restore_native():
    x = t(3)
    for _ in range(3):
        with workbench.use_ops(include=["exp"]) as cov:
            torch.exp(x)
        assert cov.table().handled.tolist() == [1]
    with pytest.raises(RuntimeError, match="inside"):
        with workbench.use_ops():
            raise RuntimeError("inside")
    assert dispatch.replaced() == []


def test_an_adapter_error_that_is_not_unsupported_propagates(variant):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    variant("exp", broken)
    x = t(3)
    with workbench.use_ops(include=["exp"]):
        with pytest.raises(RuntimeError, match="boom"):
            torch.exp(x)
    variant("exp", REGISTRY["exp"].impl)
    with workbench.use_ops(include=["exp"]) as cov:  # the re-entrancy flag was reset
        torch.exp(x)
    assert cov.table().handled.tolist() == [1]


def test_include_and_exclude_select_ops_and_overloads(monkeypatch):
    with workbench.use_ops(exclude=["add", "aten::mm"]):
        replaced = dispatch.replaced()
    assert "aten::mul.Tensor" in replaced and "aten::bmm" in replaced
    assert not set(ADD_OVERLOADS + ["aten::mm"]) & set(replaced)
    with workbench.use_ops(include="aten::add.Tensor"):
        assert dispatch.replaced() == ["aten::add.Tensor"]
    with pytest.raises(ValueError, match=r"include: expected op names or ATen overloads .* got 'nope'"):
        with workbench.use_ops(include=["nope"]):
            pass
    spec = REGISTRY["add"]
    monkeypatch.setitem(
        REGISTRY,
        "fused_thing",
        OpSpec(name="fused_thing", reference=torch.add, impl=torch.add, cases=spec.cases, cost=spec.cost),
    )
    with pytest.raises(ValueError, match=r"include: \['fused_thing'\] have no ATen overloads to replace"):
        workbench.enable(include=["fused_thing"])
    with workbench.use_ops(exclude=["fused_thing"]):  # a fused op left out: nothing to take out here
        assert "aten::add.Tensor" in dispatch.replaced()


def test_enable_and_disable_around_contexts():
    x = t(2, 3)
    cov = workbench.enable(include=["mul"])
    try:
        assert dispatch.replaced() == ["aten::mul.Scalar", "aten::mul.Tensor"]
        x * x
        with workbench.use_ops(include=["add"]):
            assert dispatch.replaced() == ADD_OVERLOADS
            x + x
        assert dispatch.replaced() == ["aten::mul.Scalar", "aten::mul.Tensor"]
    finally:
        ended = workbench.disable()
    assert ended is cov
    assert dict(zip(cov.table().aten_op, cov.table().handled)) == {
        "aten::mul.Tensor": 1,
        "aten::add.Tensor": 1,
    }
    assert workbench.disable() is None


def test_coverage_table_interface():
    x = t(3, 5)
    x64 = x.double()
    with workbench.use_ops() as cov:
        x + x
        x + x
        x64 + 1
        x.sum(-1)
    df = cov.table()
    assert list(df.columns) == ["aten_op", "op", "calls", "handled", "fallback", "reasons"]
    assert df.calls.tolist() == sorted(df.calls.tolist(), reverse=True)
    assert (df.calls == df.handled + df.fallback).all()
    row = df.set_index("aten_op").loc["aten::add.Tensor"]
    assert (row.calls, row.handled, row.fallback) == (3, 2, 1) and "got float64 (1)" in row.reasons
    assert "3 handled, 1 fallen back" in repr(cov)
    assert workbench.dispatch.Coverage().table().empty


def test_adapters_map_aten_arguments():
    """In-place ops, keyword-only arguments, tuples and lists go through their adapters unchanged."""
    dev = backends.active().device_type
    x, w, b = t(2, 5, 8), t(6, 8), t(6)
    dst, src = torch.zeros(8, 12, device=dev)[:, ::2], t(6, 8).t()
    idx = torch.tensor([3, 0, 3], device=dev)

    def calls():
        return {
            "linear": torch.nn.functional.linear(x, w, b),
            "addmm": torch.addmm(b, x[0], w.t(), beta=0.5, alpha=2.0),
            "bmm": torch.bmm(x, x.transpose(1, 2)),
            "max": x.max(dim=1, keepdim=True),
            "sum": x.sum(dim=(0, 2), dtype=torch.float32),
            "mean": x.mean(-1),
            "pow": x**2,
            "copy_": dst.copy_(src),
            "to": x.to(torch.bfloat16),
            "fill_": torch.full((3, 4), -2.5, device=dev),
            "cat": torch.cat([x, x[:, :1]], dim=1),
            "index_select": torch.index_select(w, 0, idx),
            "gather": x.gather(2, idx.expand(2, 5, 3)),
            "masked_fill": x.masked_fill(x > 0, float("-inf")),
            "div": x / 3,
            "neg": -x,
            "rms_norm": torch.nn.functional.rms_norm(x, (8,), eps=1e-6),
        }

    with workbench.use_ops() as cov:
        got = calls()
    assert got["copy_"] is dst
    got["copy_"] = got["copy_"].clone()
    dst.zero_()
    want = calls()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-4, msg=name)
    handled = set(cov.table().query("handled > 0").aten_op)
    assert {
        "aten::linear",
        "aten::addmm",
        "aten::bmm",
        "aten::max.dim",
        "aten::sum.dim_IntList",
        "aten::mean.dim",
        "aten::pow.Tensor_Scalar",
        "aten::copy_",
        "aten::_to_copy",
        "aten::fill_.Scalar",
        "aten::cat",
        "aten::index_select",
        "aten::gather",
        "aten::masked_fill.Scalar",
        "aten::div.Tensor",
        "aten::neg",
        "aten::rms_norm",
    } <= handled


def test_adapters_of_the_attention_side_ops():
    dev = backends.active().device_type
    q, k, v = t(1, 4, 6, 8), t(1, 2, 6, 8), t(1, 2, 6, 8)
    logits, target = t(5, 11), torch.randint(0, 11, (5,), device=dev)
    ids, table = torch.randint(0, 9, (2, 3), device=dev), t(9, 4)

    def calls():
        return {
            "sdpa": torch.nn.functional.scaled_dot_product_attention(
                q, k, v, is_causal=True, enable_gqa=True
            ),
            "log_softmax": torch.log_softmax(logits, dim=-1),
            "cross_entropy": torch.nn.functional.cross_entropy(logits, target, reduction="sum"),
            "argmax": logits.argmax(-1),
            "topk": logits.topk(3, dim=-1),
            "cumsum": logits.cumsum(0),
            "embedding": torch.nn.functional.embedding(ids, table),
        }

    want = calls()
    with workbench.use_ops() as cov:
        got = calls()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-4, msg=name)
    handled = set(cov.table().query("handled > 0").aten_op)
    assert {
        "aten::scaled_dot_product_attention",
        "aten::_log_softmax",
        "aten::cross_entropy_loss",
        "aten::argmax",
        "aten::topk",
        "aten::cumsum",
        "aten::embedding",
    } <= handled


def test_a_small_decoder_block_runs_on_our_kernels():
    """A Qwen3-style block as transformers writes it (RMSNorm by hand, rotate_half, GQA attention by
    matmul, SiLU MLP), with our kernels in place: same output, and the float ops are ours."""
    torch.manual_seed(0)
    dev = backends.active().device_type
    S, H, heads, kv_heads, D = 5, 32, 4, 2, 8
    p = {
        k: torch.randn(*s, device=dev) * 0.2
        for k, s in {
            "wq": (heads * D, H),
            "wk": (kv_heads * D, H),
            "wv": (kv_heads * D, H),
            "wo": (H, heads * D),
            "w1": (48, H),
            "w3": (48, H),
            "w2": (H, 48),
            "g": (H,),
        }.items()
    }
    x = torch.randn(1, S, H, device=dev)

    def rms(h):
        h32 = h.to(torch.float32)
        return p["g"] * (h32 * torch.rsqrt(h32.pow(2).mean(-1, keepdim=True) + 1e-6)).to(h.dtype)

    def rotate_half(q):
        return torch.cat((-q[..., D // 2 :], q[..., : D // 2]), dim=-1)

    def block(x):
        h = rms(x)
        q = torch.nn.functional.linear(h, p["wq"]).view(1, S, heads, D).transpose(1, 2)
        k = torch.nn.functional.linear(h, p["wk"]).view(1, S, kv_heads, D).transpose(1, 2)
        v = torch.nn.functional.linear(h, p["wv"]).view(1, S, kv_heads, D).transpose(1, 2)
        pos = torch.arange(S, device=dev)[:, None] * torch.ones(D, device=dev)
        cos, sin = torch.cos(pos / 3), torch.sin(pos / 3)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = (t.repeat_interleave(heads // kv_heads, dim=1) for t in (k, v))
        scores = torch.matmul(q, k.transpose(-1, -2)) / D**0.5
        scores = scores.masked_fill(~torch.ones(S, S, dtype=torch.bool, device=dev).tril(), float("-inf"))
        o = torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2).reshape(1, S, heads * D)
        x = x + torch.nn.functional.linear(o, p["wo"])
        h = rms(x)
        gate, up = torch.nn.functional.linear(h, p["w1"]), torch.nn.functional.linear(h, p["w3"])
        mlp = torch.nn.functional.silu(gate) * up
        return x + torch.nn.functional.linear(mlp, p["w2"])

    with torch.inference_mode():
        want = block(x)
        with workbench.use_ops() as cov:
            got = block(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    table = cov.table().set_index("aten_op")
    for overload in (
        "aten::linear",
        "aten::rsqrt",
        "aten::mean.dim",
        "aten::pow.Tensor_Scalar",
        "aten::cat",
        "aten::neg",
        "aten::bmm",
        "aten::_softmax",
        "aten::silu",
        "aten::masked_fill.Scalar",
        "aten::mul.Tensor",
        "aten::add.Tensor",
        "aten::div.Tensor",
    ):
        assert table.loc[overload, "handled"] > 0, overload
    float_fallbacks = table[(table.fallback > 0) & ~table.reasons.str.contains("int64|bool|a torch.Tensor")]
    assert float_fallbacks.empty, float_fallbacks


# ---- declarations the override relies on ---------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(n for n, s in REGISTRY.items() if s.aten))
def test_every_claimed_overload_has_an_adapter_and_exists(name):
    spec = REGISTRY[name]
    assert set(spec.aten) == set(spec.aten_impls), f"{name}: overloads without adapters"
    for overload in spec.aten_impls:
        aten_overload(overload)  # raises for a name torch does not know


def test_docs_list_every_claimed_overload():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "ops.md").read_text()
    missing = [ov for ov in dispatch.claims() if f"`{ov}`" not in doc]
    assert not missing, f"docs/ops.md lacks {missing}"


def test_register_fills_aten_from_adapters_and_rejects_strays():
    from workbench.ops.spec import register

    spec = REGISTRY["add"]
    fresh = OpSpec(
        name="probe",
        reference=torch.add,
        impl=torch.add,
        cases=spec.cases,
        cost=lambda *a: Cost(1, 1),
        aten_impls={"aten::add.Tensor": spec.aten_impls["aten::add.Tensor"]},
    )
    try:
        assert register(fresh).aten == ("aten::add.Tensor",)
    finally:
        REGISTRY.pop("probe")
    stray = OpSpec(
        name="probe2",
        reference=torch.add,
        impl=torch.add,
        cases=spec.cases,
        cost=spec.cost,
        aten=("aten::add.Tensor",),
        aten_impls={"aten::mul.Tensor": lambda impl, a, b: a},
    )
    with pytest.raises(
        ValueError, match=r"aten_impls has overloads \['aten::mul.Tensor'\] that are not in aten"
    ):
        register(stray)
    assert "probe2" not in REGISTRY


def test_grad_mode_composites_train_through_our_backward_other_ops_below_torchs_autograd():
    import torch.nn.functional as F

    x0, w0 = t(4, 8), t(8)

    def grads():
        x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
        (F.rms_norm(x, (8,), w) + 2 * x).sum().backward()
        return x.grad, w.grad

    native = grads()
    with workbench.use_ops() as cov:
        ours = grads()
    for a, b in zip(ours, native):
        torch.testing.assert_close(a, b)
    table = cov.table().set_index("aten_op")
    assert table.loc["aten::rms_norm", "handled"] == 1 and table.loc["aten::rms_norm", "fallback"] == 0
    # mul has no backward of ours, but torch's autograd kernel sits above our kernel and has recorded its
    # own formula by the time ours runs: the forward and the backward's own mul calls are ours
    assert table.loc["aten::mul.Tensor", "fallback"] == 0 and table.loc["aten::mul.Tensor", "handled"] >= 2
    a, w = t(3, 8), t(5, 8)
    expected = [
        g.clone()
        for g in torch.autograd.grad(F.linear(a.requires_grad_(), w.requires_grad_()).square().sum(), (a, w))
    ]
    with workbench.use_ops(include=["linear", "mm"]):
        got = torch.autograd.grad(F.linear(a, w).square().sum(), (a, w))
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e)
    with torch.no_grad(), workbench.use_ops(include=["rms_norm"]) as cov:  # no grad needed: ours
        F.rms_norm(x0.clone().requires_grad_(), (8,), w0)
    assert cov.handled == {"aten::rms_norm": 1}


def test_plain_torch_compile_under_use_ops_warns_once():
    dispatch.compile_watch.warned = False
    with workbench.use_ops(include=["mul"]), pytest.warns(UserWarning, match='backend="workbench"'):
        torch.compile(lambda v: v * 3, backend="eager")(t(3))
    with workbench.use_ops(include=["mul"]), warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.compile(lambda v: v * 4, backend="eager")(t(3))  # once per process
