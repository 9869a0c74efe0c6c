"""Backward of every op that has one, against float64 gradients of its native reference, and training
through `use_ops`: a small expression and a tiny Qwen3 training step.

Each op's quick cases (fp32 and bf16) and edge cases (fp32) draw fresh random inputs, and on a GPU its llm
cases (bf16; Qwen3 shapes) too; every floating input requires grad; the output gradient is random. Our
gradients come through the op's custom operator (the path `workbench.ops.<op>`, `use_ops` and the compile
backend take), the reference ones from torch.autograd on the native op in float64 on the same (rounded)
inputs.
"""

import zlib

import pytest
import torch
import torch.nn.functional as F

import workbench
from workbench import backends
from workbench.ops import REGISTRY
from workbench.ops._library import trainable
from workbench.profiling.correctness import (
    GRAD_TOL_FACTOR,
    check,
    check_backward_case,
    dtype_name,
    failure_reason,
)


def _params():
    for spec in REGISTRY.values():
        if spec.backward is None:
            continue
        for case_set, dtypes in (
            ("quick", (torch.float32, torch.bfloat16)),
            ("edge", (torch.float32,)),
            ("llm", (torch.bfloat16,)),
        ):
            for case in spec.case_list(case_set):
                for dtype in dtypes:
                    if not case.big and dtype in spec.dtypes:
                        marks = [pytest.mark.gpu] if case_set == "llm" else []
                        yield pytest.param(
                            spec,
                            case,
                            dtype,
                            marks=marks,
                            id=f"{spec.name}-{case_set}-{case.name}-{dtype_name(dtype)}",
                        )


def _rel_err(a: torch.Tensor, b: torch.Tensor, floor: float = 0.0) -> float:
    """‖a − b‖ / max(‖b‖, floor) over the finite entries of b."""
    a, b = a.double(), b.double()
    ok = torch.isfinite(b)
    return (a[ok] - b[ok]).norm().item() / max(b[ok].norm().item(), floor, 1e-30)


@pytest.mark.parametrize("spec,case,dtype", list(_params()))
def test_backward_matches_float64_reference(spec, case, dtype, request):
    row = check_backward_case(spec, case, dtype, seed=zlib.crc32(request.node.name.encode()))
    if row.get("skipped"):
        pytest.skip(row["skipped"])
    assert row["passed"], failure_reason(row)


def test_check_adds_a_backward_row_that_fails_on_a_wrong_gradient(monkeypatch):
    """`check(backward=True)`: a backward row after each forward row of an op with a backward (none for an
    op without); a backward that returns the output gradient as silu's input gradient fails its row."""
    import importlib

    df = check(["silu", "cumsum"], cases=["quick"], dtypes=["fp32"], seed=0, progress=False, backward=True)
    silu = df[df["op"] == "silu"]
    assert list(silu["direction"][:2]) == ["forward", "backward"] and silu["passed"].all()
    assert set(df[df["op"] == "cumsum"]["direction"]) == {"forward"}
    module = importlib.import_module("workbench.ops.silu")
    monkeypatch.setattr(module, "silu_backward", lambda x, dy: dy.clone())
    df = check(["silu"], cases=["quick"], dtypes=["fp32"], seed=0, progress=False, backward=True)
    wrong = df[df["direction"] == "backward"]
    assert len(wrong) and not wrong["passed"].any() and (wrong["rel_err"] > wrong["tol"]).all()


def test_direct_call_of_an_op_without_backward_refuses():
    from workbench.ops import cumsum

    assert REGISTRY["cumsum"].backward is None
    with pytest.raises(RuntimeError, match="no backward"):
        cumsum(torch.randn(4, requires_grad=True), 0)


def test_use_ops_trains_rms_norm_in_an_expression():
    x = torch.randn(3, 8, dtype=torch.float64)
    w = torch.randn(8, dtype=torch.float64)
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    (F.rms_norm(xr, (8,), wr) + 2 * xr).sum().backward()
    xo, wo = x.float().requires_grad_(), w.float().requires_grad_()
    with workbench.use_ops() as cov:
        (F.rms_norm(xo, (8,), wo) + 2 * xo).sum().backward()
    table = cov.table().set_index("aten_op")
    assert table.loc["aten::rms_norm", "handled"] >= 1 and table.loc["aten::rms_norm", "fallback"] == 0
    assert _rel_err(xo.grad, xr.grad) < 1e-5 and _rel_err(wo.grad, wr.grad) < 1e-5


def test_tiny_qwen3_training_step_matches_native():
    from workbench.models.build import build_model

    native = build_model("tiny", dtype=torch.float32, seed=5).train()
    ours = build_model("tiny", dtype=torch.float32, seed=5).train()
    ids = torch.randint(0, native.config.vocab_size, (2, 8), generator=torch.Generator().manual_seed(1))
    native(input_ids=ids, labels=ids).loss.backward()
    with workbench.use_ops() as cov:
        loss = ours(input_ids=ids, labels=ids).loss
        loss.backward()
    handled = cov.table().set_index("aten_op")["handled"]
    # transformers spells RMSNorm as a chain of small ops: under use_ops there is no aten::rms_norm call
    for overload in ("aten::linear", "aten::embedding", "aten::cross_entropy_loss"):
        assert handled.get(overload, 0) >= 1, f"{overload} did not run our kernels"
    for (name, p), q in zip(native.named_parameters(), ours.parameters()):
        assert q.grad is not None, f"{name}: no gradient"
        assert _rel_err(q.grad, p.grad) < 1e-4, f"{name}: rel_err {_rel_err(q.grad, p.grad):.3g}"


def test_run_model_train_alternates_sides_on_the_same_data():
    from workbench.models import run_model

    run = run_model("tiny", train=True, train_steps=2, batch=1, prompt_len=6)
    assert sorted(run.steps.side.unique()) == ["native", "workbench"] and run.steps.step.max() == 1
    summary = run.summary()
    assert summary["loss_rel_diff_max"] < 1e-2 and summary["step_vs_native"] > 0
    assert run.coverage.set_index("aten_op").loc["aten::linear", "handled"] > 0


def test_run_model_train_replays_compiled_steps_where_graphs_exist(monkeypatch):
    """Training in run_model: compiled execution replays CUDA graphs where the backend captures them,
    unless cuda_graphs is False; asking for graphs where there are none (or eagerly) is an error."""
    from workbench.models import run as run_mod

    seen = []
    monkeypatch.setattr(run_mod, "train_both", lambda model, **kw: seen.append(kw) or kw)
    with pytest.raises(ValueError, match="cuda_graphs"):
        run_mod.run_model("tiny", train=True, cuda_graphs=True)  # the interpreter has no graph API
    monkeypatch.setattr(run_mod.measure, "graph_api", lambda backend: (object(), ""))
    run_mod.run_model("tiny", train=True, execution="compile")
    run_mod.run_model("tiny", train=True, execution="compile", cuda_graphs=False)
    run_mod.run_model("tiny", train=True)  # the interpreter's default execution: eager
    assert [(kw["execution"], kw["cudagraphs"]) for kw in seen] == [
        ("compile", True),
        ("compile", False),
        ("eager", False),
    ]
    with pytest.raises(ValueError, match="cuda_graphs"):
        run_mod.run_model("tiny", train=True, execution="eager", cuda_graphs=True)


def test_train_both_adds_native_compiled_as_a_third_side(monkeypatch):
    """The third side runs transformers' loss through what torch.compile returns, on the same data, and
    each side goes first in turn."""
    from workbench.models import build_model
    from workbench.models.train import train_both

    compiled = []
    monkeypatch.setattr(
        torch, "compile", lambda model: compiled.append(model) or model
    )  # inductor: slow here
    run = train_both(
        build_model("tiny", dtype=torch.float32, seed=0), steps=3, batch=1, seq=6, native_compiled=True
    )
    assert len(compiled) == 1 and compiled[0].training
    firsts = run.steps.groupby("step").side.first().tolist()
    assert firsts == ["native", "workbench", "native_compiled"]
    loss = run.steps.pivot(index="step", columns="side", values="loss")
    assert (loss.native_compiled == loss.native).all()  # the same model, weights and data
    assert run.summary()["step_vs_native_compiled"] > 0


def test_train_both_with_cudagraphs_replays_both_compiled_sides(monkeypatch):
    """cudagraphs: our side compiles with the backend's option, the native compiled side with
    mode="reduce-overhead", and each of their steps begins a new graph step; native eager does not."""
    from workbench.models import build_model
    from workbench.models.train import train_both

    compiled, marks = [], []

    def fake_compile(fn, backend=None, options=None, mode=None):  # inductor: slow here
        compiled.append((backend, (options or {}).get("cudagraphs"), mode))
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    run = train_both(
        build_model("tiny", dtype=torch.float32, seed=0),
        steps=2,
        batch=1,
        seq=6,
        execution="compile",
        native_compiled=True,
        cudagraphs=True,
    )
    assert sorted(compiled, key=str) == sorted(
        [(None, None, "reduce-overhead"), ("workbench", True, None)], key=str
    )
    assert len(marks) == 2 * 2  # two replaying sides, two steps
    assert run.summary()["loss_rel_diff_max"] < 1e-2


def test_compiled_graph_trains_through_the_custom_operators():
    """AOTAutograd traces forward and backward with fake tensors: both must reach our kernels only as
    custom operators (`.default` and the `workbench::*_backward` ones)."""
    ops = torch.ops.workbench
    target = torch.randint(0, 5, (4,), generator=torch.Generator().manual_seed(2))

    def loss(x, w, W, ours):
        if ours:
            h = ops.rms_norm.default(x, w, 1e-6)
            h = ops.silu.default(h) * ops.exp.default(0.1 * h)
            return ops.cross_entropy.default(ops.log_softmax.default(ops.linear.default(h, W), -1), target)
        h = F.rms_norm(x, (8,), w, 1e-6)
        h = F.silu(h) * torch.exp(0.1 * h)
        return F.cross_entropy(F.log_softmax(F.linear(h, W), -1), target)

    values = [torch.randn(4, 8), torch.randn(8), torch.randn(5, 8)]
    ours = [v.clone().requires_grad_() for v in values]
    ref = [v.double().requires_grad_() for v in values]
    torch.compile(loss, backend="aot_eager", fullgraph=True)(*ours, True).backward()
    loss(*ref, False).backward()
    for o, r in zip(ours, ref):
        assert _rel_err(o.grad, r.grad) < 1e-5


def _grads_of_a_quick_case(name: str) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
    """(outputs, input gradients) of the op's last quick case (fp32, fixed seed)
    through its custom operator."""
    spec = REGISTRY[name]
    args, kwargs = spec.case_list("quick")[-1].make(
        torch.float32, torch.device("cpu"), torch.Generator().manual_seed(3)
    )
    args = [
        a.detach().requires_grad_() if isinstance(a, torch.Tensor) and a.is_floating_point() else a
        for a in args
    ]
    outs = trainable(name)(*args, **kwargs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    dys = [torch.randn(o.shape, generator=torch.Generator().manual_seed(4)) for o in outs]
    return list(outs), list(torch.autograd.grad(outs, leaves, dys, allow_unused=True))


@pytest.mark.parametrize("device", ["mlu590", "mlu370"])
@pytest.mark.parametrize("name", sorted(n for n, s in REGISTRY.items() if s.backward is not None))
def test_backward_mlu_form_keeps_the_launch_rules(name, device):
    """The MLU form of an op's training step (the persistent launch style, sized for the device; ops with an
    MLU kernel of their own run it) gives the tile style's gradients, and every launch of its forward and
    backward keeps the device's MLU launch rules (grid within the cores, legal num_warps, tiles within
    NRAM, no float64, no 64-bit atomics)."""
    from workbench.ops.mlu.persistent import launch_style
    from workbench.ops.mlu.rules import LaunchRules

    if backends.active().policy.persistent:
        pytest.skip("the active backend launches persistently already")
    outs, grads = _grads_of_a_quick_case(name)
    rules = LaunchRules.for_device(device)
    with launch_style(True), rules:
        mlu_outs, mlu_grads = _grads_of_a_quick_case(name)
    assert rules.clean, rules.violations().to_string()
    assert not rules.launches().empty
    tol = GRAD_TOL_FACTOR * REGISTRY[name].tolerance[torch.float32]
    for got, expected in zip([*mlu_outs, *mlu_grads], [*outs, *grads]):
        assert (got is None) == (expected is None)
        if expected is not None:
            assert _rel_err(got, expected) <= tol


def test_train_run_summary_leaves_the_warm_up_step_out_of_speed_and_memory():
    import pandas as pd

    from workbench.models.train import TrainRun

    rows = [
        ("native", 0, 10.0, 2.0, 9.0, 900),
        ("workbench", 0, 10.0, 2.0, 30.0, 990),
        ("native", 1, 9.0, 1.0, 1.0, 800),
        ("workbench", 1, 9.09, 1.02, 0.5, 400),
        ("workbench", 2, 8.0, 1.0, 0.5, 500),
        ("native", 2, 8.0, 1.0, 1.0, 1000),
    ]
    steps = pd.DataFrame(rows, columns=["side", "step", "loss", "grad_norm", "seconds", "peak_mem"])
    s = TrainRun(steps, tokens_per_step=100, coverage=pd.DataFrame()).summary()
    assert s["tokens_per_s_native"] == 100.0 and s["tokens_per_s_workbench"] == 200.0
    assert s["step_vs_native"] == 2.0 and s["steps"] == 3
    assert (s["peak_mem_native"], s["peak_mem_workbench"], s["peak_mem_vs_native"]) == (1000, 500, 0.5)
    assert abs(s["loss_rel_diff_max"] - 0.01) < 1e-12 and abs(s["grad_norm_rel_diff_max"] - 0.02) < 1e-12
    assert "step_vs_native_compiled" not in s
    compiled = [
        ("native_compiled", i, 8.0, 1.0, seconds, 700) for i, seconds in enumerate((20.0, 0.25, 0.25))
    ]
    steps = pd.concat([steps, pd.DataFrame(compiled, columns=steps.columns)])
    s = TrainRun(steps, tokens_per_step=100, coverage=pd.DataFrame()).summary()
    assert s["tokens_per_s_native_compiled"] == 400.0 and s["step_vs_native_compiled"] == 0.5
    assert s["peak_mem_native_compiled"] == 700 and s["step_vs_native"] == 2.0
    # CUDA graphs: step 1 records them (slow), out of tokens/s; its peak counts (a replay allocates nothing)
    recording = (steps.side == "workbench") & (steps.step == 1)
    steps.loc[recording, ["seconds", "peak_mem"]] = 5.0, 900
    steps.loc[(steps.side == "workbench") & (steps.step == 2), "peak_mem"] = 0
    s = TrainRun(steps, tokens_per_step=100, coverage=pd.DataFrame(), warmup_steps=2).summary()
    assert s["tokens_per_s_workbench"] == 200.0 and s["tokens_per_s_native"] == 100.0
    assert s["tokens_per_s_native_compiled"] == 400.0 and s["peak_mem_workbench"] == 900


# The backwards that size their own launches (the rest run on the shared launchers, tested with them).
OWN_BACKWARD_LAUNCHES = [
    "cross_entropy",
    "embedding",
    "layer_norm",
    "log_softmax",
    "rms_norm",
    "silu_and_mul",
    "softmax",
]


@pytest.mark.parametrize("name", OWN_BACKWARD_LAUNCHES)
def test_backward_mlu_form_streams_rows_and_walks_every_run_on_a_small_device(name):
    """On a device of 4 cores and 8 KiB of NRAM, one program owns many rows and rows are streamed in
    chunks: paths the quick cases never take on a real MLU's figures; the gradients stay the tile
    style's and the launches keep the rules."""
    from workbench.ops.mlu.persistent import launch_style
    from workbench.ops.mlu.rules import LaunchRules

    if backends.active().policy.persistent:
        pytest.skip("the active backend launches persistently already")
    outs, grads = _grads_of_a_quick_case(name)
    rules = LaunchRules.for_device("mlu590", cores=4, nram_bytes=8 * 1024)
    with launch_style(True), rules:
        mlu_outs, mlu_grads = _grads_of_a_quick_case(name)
    assert rules.clean, rules.violations().to_string()
    assert set(rules.launches()["tasks"]) == {4}  # one program of 4 tasks
    tol = GRAD_TOL_FACTOR * REGISTRY[name].tolerance[torch.float32]
    for got, expected in zip([*mlu_outs, *mlu_grads], [*outs, *grads]):
        assert (got is None) == (expected is None)
        if expected is not None:
            assert _rel_err(got, expected) <= tol
