"""Numbers that reproduce: the persistent tuning cache, alternated rounds with their spread, and ops enabled
by measured wins (use_ops(policy="measured"))."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import workbench
from workbench import backends
from workbench.ops import _tuning  # binds the backend before triton is imported

# isort: split
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from workbench.profiling.timing import UNSTABLE_SPREAD, alternated_rounds, rounds_of  # noqa: E402
from workbench.store import ResultStore  # noqa: E402
from workbench.store.meta import run_metadata  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import _tuned_kernel  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class FixedChoice:
    """A timer stand-in that always keeps candidate `index` and counts its calls."""

    def __init__(self, index: int):
        self.index, self.calls = index, 0

    def choose(self, candidates) -> int:
        self.calls += 1
        for c in candidates:
            c()
        return self.index


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh store as the tuning cache and a FixedChoice keeping the second config; restored after."""
    store = ResultStore(tmp_path / "tuning.db")
    choice = FixedChoice(1)
    monkeypatch.setattr(_tuning, "_cache", store)
    monkeypatch.setattr(_tuning, "_measure", choice)
    monkeypatch.setattr(_tuning, "stats", _tuning.Stats())
    return store, choice


def _ident(t: _tuning.Tuner, n: int = 100) -> tuple:
    key = t.tuning_key({"x": torch.empty(0), "out": torch.empty(0), "n": n, "factor": 2.0})
    return (
        backends.active().properties().name,
        t.name,
        t.source_hash,
        key,
        triton.__version__,
        workbench.__version__,
    )


def test_cache_round_trip(cache):
    store, choice = cache
    first = _tuned_kernel.tuner()
    x, out = _tuned_kernel.run(first)
    assert torch.equal(out, 2 * x)
    assert (_tuning.stats.tuned, choice.calls, first.best_config.kwargs["BLOCK"]) == (1, 1, 64)
    assert store.get_tuning(*_ident(first)) == {**first.best_config.all_kwargs()}
    rows = store.tuning_rows()
    assert len(rows) == 1 and rows["kernel"].iloc[0] == "tests.scale_kernel"
    again = _tuned_kernel.tuner()  # a new Tuner has no memory: as in a new process
    x, out = _tuned_kernel.run(again)
    assert torch.equal(out, 2 * x)
    assert (_tuning.stats.tuned, _tuning.stats.cache_hits, choice.calls) == (1, 1, 1)
    assert again.best_config.kwargs["BLOCK"] == 64
    _tuned_kernel.run(again)  # the same key again: from memory, not even the cache
    assert _tuning.stats.cache_hits == 1
    _tuned_kernel.run(again, n=300)  # another key tunes
    assert _tuning.stats.tuned == 2
    store.clear_tuning()
    assert store.tuning_rows().empty


@triton.jit
def _half_kernel(x, out, n, factor, BLOCK: tl.constexpr, HALF: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    if HALF == 0:
        keep = i < n // 2
    else:
        keep = (i >= n // 2) & (i < n)
    tl.store(out + i, tl.load(x + i, mask=keep) * factor, mask=keep)


def test_a_call_of_several_launches_tunes_them_together(cache):
    """`launches`: each call launches the kernel once per dict of constexprs, all under the chosen config,
    and every candidate is timed as the whole call."""
    store, choice = cache
    t = _tuning.Tuner(
        _half_kernel,
        _tuned_kernel.CONFIGS,
        key=["n"],
        name="tests.half_kernel",
        launches=lambda meta: ({"HALF": 0}, {"HALF": 1}),
    )
    x, out = _tuned_kernel.run(t)
    assert torch.equal(out, 2 * x)  # both halves written
    assert (choice.calls, t.best_config.kwargs["BLOCK"]) == (1, 64)
    x, out = _tuned_kernel.run(t)  # from memory: still both launches
    assert torch.equal(out, 2 * x)


@triton.jit
def _other_scale_kernel(x, out, n, factor, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out + i, tl.load(x + i, mask=i < n) * factor + 0.0, mask=i < n)


def test_stale_entries_are_ignored(cache):
    store, choice = cache
    t = _tuned_kernel.tuner()
    device, name, source, key, tv, wv = _ident(t)
    picked = {**_tuned_kernel.CONFIGS[1].all_kwargs()}
    store.put_tuning(device, name, source, key, "0.0.1", wv, picked)  # another Triton
    changed = _tuned_kernel.tuner(_other_scale_kernel, name=name)  # same name, other source
    assert changed.source_hash != source
    not_offered = {"BLOCK": 32, "num_warps": 4}
    store.put_tuning(device, name, changed.source_hash, key, tv, wv, not_offered)
    _tuned_kernel.run(t)
    assert (_tuning.stats.tuned, _tuning.stats.cache_hits) == (1, 0)
    x, out = _tuned_kernel.run(changed)  # its entry names a config it does not offer: tuned again
    assert torch.equal(out, 2 * x) and (_tuning.stats.tuned, _tuning.stats.cache_hits) == (2, 0)
    assert store.get_tuning(device, name, changed.source_hash, key, tv, wv) == picked  # replaced


def test_two_processes_share_one_cache(tmp_path):
    db = tmp_path / "shared.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def child():
        out = subprocess.run(
            [sys.executable, str(Path(__file__).parent / "_tuned_kernel.py"), str(db)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    first, second = child(), child()
    assert first["correct"] and second["correct"]
    assert (first["tuned"], first["cache_hits"]) == (1, 0)
    assert (second["tuned"], second["cache_hits"]) == (0, 1) and second["block"] == first["block"]


_DEFAULT_CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
import _tuned_kernel
from workbench.ops import _tuning
if sys.argv[2] == "profiling":
    import workbench.profiling
if sys.argv[2] == "dispatch":  # use_ops (and the compile backend) hand in the same default
    import workbench.dispatch
t = _tuned_kernel.tuner()
_tuned_kernel.run(t)
print(json.dumps({"tuned": _tuning.stats.tuned, "hits": _tuning.stats.cache_hits,
                  "block": t.best_config.kwargs["BLOCK"]}))
"""


def test_importing_profiling_or_dispatch_makes_the_default_store_the_cache_and_bare_ops_take_the_first_config(
    tmp_path,
):
    db = tmp_path / "default.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WORKBENCH_STORE": str(db)}

    def child(imports: str) -> dict:
        args = [sys.executable, "-c", _DEFAULT_CHILD, str(Path(__file__).parent), imports]
        out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    bare = child("ops")  # nothing installed and no timer: the default config, no store opened
    assert (bare["tuned"], bare["hits"], bare["block"]) == (0, 0, 16) and not db.exists()
    first, second = child("profiling"), child("profiling")
    assert (first["tuned"], first["hits"]) == (1, 0) and db.exists()
    assert (second["tuned"], second["hits"]) == (0, 1) and second["block"] == first["block"]
    third = child("dispatch")
    assert (third["tuned"], third["hits"]) == (0, 1) and third["block"] == first["block"]


def test_not_measuring_takes_the_first_config_and_forgets_it(cache):
    _, choice = cache
    t = _tuned_kernel.tuner()
    _tuning.measuring = False
    try:
        _tuned_kernel.run(t)
        assert t.best_config.kwargs["BLOCK"] == 16 and choice.calls == 0
    finally:
        _tuning.measuring = True
    _tuned_kernel.run(t)
    assert t.best_config.kwargs["BLOCK"] == 64 and choice.calls == 1


def test_alternated_rounds_mark_a_noisy_pair_unstable():
    steady = iter([1.0] * 20)
    noisy = iter([1.0, 1.3, 0.8, 1.2, 0.9, 1.25, 0.85, 1.1, 0.95, 1.3] * 2)
    rounds = rounds_of([lambda: next(steady), lambda: next(noisy)], 20)
    ratio = rounds.ratio(1, reference=0)
    assert ratio.p80 - ratio.p20 > UNSTABLE_SPREAD * ratio.median and ratio.unstable
    assert not ratio.beyond_spread
    fast = rounds_of([lambda: 2.0, lambda: 1.0], 10).ratio(1, reference=0)
    assert (fast.median, fast.unstable, fast.beyond_spread) == (2.0, False, True)
    same = rounds_of([lambda: 1.0, lambda: 1.0], 10).ratio(1, reference=0)
    assert not same.unstable and not same.beyond_spread
    once = rounds_of([lambda: 2.0, lambda: 1.0], 2).ratio(1, reference=0)  # too few rounds for a spread
    assert once.median == 2.0 and once.unstable and not once.beyond_spread


def test_rounds_rotate_the_first_callable():
    calls = []
    rounds_of([lambda: calls.append("a") or 1.0, lambda: calls.append("b") or 1.0], 4)
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    order = []
    rounds = alternated_rounds(
        [lambda: order.append(0), lambda: order.append(1)], rep_ms=1, warmup_ms=0, min_rounds=3, max_rounds=3
    )
    assert order[-6:] == [0, 1, 1, 0, 0, 1] and [len(t) for t in rounds.times] == [3, 3]


def _bench_row(op, case, shape, speedup, p20, p80, passed=True, dtype="fp32"):
    return {
        "op": op,
        "impl": "generic",
        "case": case,
        "dtype": dtype,
        "shape": shape,
        "ms": 1.0 / speedup,
        "speedup": speedup,
        "speedup_p20": p20,
        "speedup_p80": p80,
        "passed": passed,
        "error": "",
    }


@pytest.fixture
def measured_store(tmp_path):
    store = ResultStore(tmp_path / "bench.db")
    rows = [
        _bench_row("add", "decode 1x4096", "1x4096 1x4096", 1.30, 1.25, 1.35),
        _bench_row("add", "prefill 2048x4096", "2048x4096 2048x4096", 0.87, 0.85, 0.90),
        _bench_row("mul", "decode 1x4096", "1x4096 1x4096", 1.02, 0.95, 1.10),  # within the spread
        _bench_row("neg", "decode 1x4096", "1x4096", 1.50, 1.45, 1.55, passed=False),
    ]
    run = store.append(rows, "bench", meta=run_metadata())
    return store, run


def test_measured_selection_decides_per_shape_class(measured_store):
    from workbench.profiling.selection import measured_selection

    store, run = measured_store
    device = backends.active().properties().name
    d = measured_selection(store, device)
    assert d[("add", "decode", "fp32")].enabled and not d[("add", "prefill", "fp32")].enabled
    assert d[("add", "prefill", "fp32")].reason.startswith("not enabled: 0.87x")
    assert device in d[("add", "prefill", "fp32")].reason and run in d[("add", "prefill", "fp32")].reason
    assert not d[("mul", "decode", "fp32")].enabled and "incorrect" in d[("neg", "decode", "fp32")].reason
    assert measured_selection(store, "another device") == {}


def test_policy_measured_enables_and_disables_with_reasons(measured_store):
    store, _ = measured_store
    small = torch.randn(1, 4096), torch.randn(1, 4096)
    large = torch.randn(512, 1024), torch.randn(512, 1024)
    expected = small[0] + small[1], large[0] + large[1]
    with (
        torch.inference_mode(),
        workbench.use_ops(include=["add", "mul", "neg"], policy="measured", store=store) as cov,
    ):
        got = torch.add(*small), torch.add(*large)  # decode class: ours; prefill class: native
        torch.mul(*small)
        torch.neg(small[0])
    torch.testing.assert_close(got, expected)
    table = cov.table().set_index("aten_op")
    assert table.loc["aten::add.Tensor", "handled"] == 1 and table.loc["aten::add.Tensor", "fallback"] == 1
    assert "not enabled: 0.87x" in table.loc["aten::add.Tensor", "reasons"]
    assert table.loc["aten::mul.Tensor", "calls"] == 0
    assert table.loc["aten::mul.Tensor", "reasons"].startswith("not enabled: 1.02x")
    assert "incorrect" in table.loc["aten::neg", "reasons"]
    with workbench.use_ops(include=["add"], store=store) as cov:  # the default policy serves everything
        torch.add(*large)
    assert cov.handled.get("aten::add.Tensor") == 1
    with pytest.raises(ValueError, match="policy"):
        with workbench.use_ops(policy="fastest"):
            pass


def test_enable_measured_with_an_empty_store_leaves_everything_native(tmp_path):
    cov = workbench.enable(include=["add"], policy="measured", store=ResultStore(tmp_path / "empty.db"))
    try:
        torch.add(torch.ones(3), torch.ones(3))
        assert workbench.dispatch.replaced() == []
        assert "no bench row" in cov.table().set_index("aten_op").loc["aten::add.Tensor", "reasons"]
    finally:
        workbench.disable()


def test_tune_command_shows_and_clears_the_cache(tmp_path, capsys):
    from workbench.cli import main

    store = ResultStore(tmp_path / "t.db")
    store.put_tuning("dev", "k", "h", "M=1", "3.6.0", "0.1.0", {"BLOCK": 16})
    assert main(["tune", "--show", "--store", str(tmp_path / "t.db")]) == 0
    assert "M=1" in capsys.readouterr().out
    assert main(["tune", "--clear", "--store", str(tmp_path / "t.db")]) == 0
    assert store.tuning_rows().empty
    assert (
        main(
            [
                "tune",
                "--model",
                "tiny",
                "--tokens",
                "4,32",
                "--dtype",
                "fp32",
                "--no-progress",
                "--store",
                str(tmp_path / "t.db"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "lm_head 32x64x512" in out and "prefill causal 1x4x32x16 kv2" in out


def test_model_run_reports_the_spread_of_its_ratios():
    import matplotlib

    matplotlib.use("Agg")
    from workbench.models import plots, run_model

    run = run_model(
        "tiny", mode="prefill", prompt_len=8, reps=3, profile=False, loss=False, fp32_reference=False
    )
    r = run.ratios().set_index("phase").loc["prefill"]
    assert r["ratio_p20"] <= r["ratio"] <= r["ratio_p80"] and r["unstable"] in (True, False)
    t = run.throughput.set_index("side")
    assert t.loc["native", "ratio_p20"] != t.loc["native", "ratio_p20"]  # only the workbench row has it
    texts = [t.get_text() for t in plots.throughput(run).axes[0].texts]
    assert any(f"{r['ratio_p20']:.2f}-{r['ratio_p80']:.2f}" in t for t in texts)


def test_bench_rows_carry_the_spread_of_the_speedup():
    from workbench.profiling import bench, side_by_side

    df = bench(ops=["add"], cases=["quick"], dtypes=["fp32"], rep_ms=5, progress=False)
    ours = df[df["impl"] != "native"]
    assert ((ours["speedup_p20"] <= ours["speedup"]) & (ours["speedup"] <= ours["speedup_p80"])).all()
    assert ours["unstable"].isin([True, False]).all()
    native = df[df["impl"] == "native"]
    assert (native["speedup_p20"] == 1.0).all() and not native["unstable"].any()
    assert {"speedup_p20", "speedup_p80", "unstable"} <= set(side_by_side(df).columns)


def test_peers_are_columns_with_their_error_against_float64():
    from workbench.profiling import bench, peer_table

    df = bench(
        ops=["add"],
        cases=["quick"],
        dtypes=["fp32"],
        rep_ms=5,
        progress=False,
        peers=["inductor", "flaggems"],
    )
    inductor = df[df["impl"] == "inductor"]
    assert len(inductor) and (inductor["error"] == "").all() and inductor["passed"].all()
    assert (inductor["rel_err"] < 1e-6).all() and inductor["speedup_p20"].notna().all()
    gems = df[df["impl"] == "flaggems"]
    try:
        import flag_gems  # noqa: F401
    except ImportError:
        assert gems["error"].str.contains("flag_gems is not installed").all() and gems["ms"].isna().all()
    table = peer_table(df)
    assert {"native_ms", "generic_ms", "inductor_ms", "inductor_rel_err", "flaggems_error"} <= set(
        table.columns
    )
    assert len(table) == len(df) // 4
    with pytest.raises(ValueError, match="peers"):
        bench(ops=["add"], cases=["quick"], dtypes=["fp32"], peers=["tvm"], progress=False)


_MM_CHILD = """
import json, sys, torch
from workbench import backends, ops
from workbench.ops import _tuning
from workbench.profiling import tuning
tuning.install(cache=sys.argv[1])
device = backends.active().device()
a, b = (torch.randn(s, device=device, dtype=torch.bfloat16) for s in ((256, 512), (512, 384)))
ok = torch.allclose(ops.mm(a, b).float(), a.float() @ b.float(), rtol=2e-2, atol=2e-1)
lin = ops.linear(torch.randn(8, 512, device=device, dtype=torch.bfloat16),
                 torch.randn(384, 512, device=device, dtype=torch.bfloat16))
print(json.dumps({"tuned": _tuning.stats.tuned, "hits": _tuning.stats.cache_hits, "ok": bool(ok)}))
"""


@pytest.mark.gpu
def test_matmul_keys_are_tuned_once_per_device(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def child():
        out = subprocess.run(
            [sys.executable, "-c", _MM_CHILD, str(tmp_path / "t.db")],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    first, second = child(), child()
    assert first["ok"] and second["ok"] and first["tuned"] >= 1 and first["hits"] == 0
    assert second["tuned"] == 0 and second["hits"] == first["tuned"]
