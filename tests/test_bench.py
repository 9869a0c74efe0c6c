"""bench(): the side-by-side table on the active backend, with error cells, store rows and plots."""

import contextlib

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from workbench import backends  # noqa: E402
from workbench.cli import main  # noqa: E402
from workbench.ops import REGISTRY  # noqa: E402
from workbench.profiling import bench, side_by_side  # noqa: E402
from workbench.profiling.roofline import Peaks, roofline  # noqa: E402
from workbench.reports import plots  # noqa: E402
from workbench.store import ResultStore  # noqa: E402


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))


def test_bench_table_and_store(tmp_path):
    store = ResultStore(tmp_path / "r.db")
    df = bench(ops=["add"], cases=["quick"], dtypes=["fp32"], store=store, rep_ms=5, progress=False)
    assert set(df["impl"]) == {"native", "generic"} and (df["error"] == "").all()
    assert (df["ms"] > 0).all() and (df["host_us"] > 0).all() and (df["gbps"] > 0).all()
    triton = df[df["impl"] == "generic"]
    assert triton["passed"].all() and (triton["speedup"] > 0).all()
    assert (df[df["impl"] == "native"]["speedup"] == 1.0).all()
    assert df["device"].iloc[0] == backends.active().properties().name
    stored = store.latest("bench")
    assert len(stored) == len(df) and store.runs("bench")["status"].tolist() == ["done"]
    table = side_by_side(df)
    assert len(table) == len(REGISTRY["add"].case_list("quick")) and {"ms_native", "ms", "speedup"} <= set(
        table.columns
    )


def test_a_crashing_variant_gets_an_error_cell(monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("illegal memory access (simulated)")

    monkeypatch.setitem(REGISTRY["exp"].variants, backends.active().name, crash)
    df = bench(ops=["exp", "silu"], cases=["quick"], dtypes=["fp32"], rep_ms=5, progress=False)
    bad = df[df["error"] != ""]
    assert set(bad["op"]) == {"exp"} and bad["error"].str.contains("illegal memory access").all()
    assert (df[df["op"] == "silu"]["error"] == "").all() and df[df["op"] == "silu"]["ms"].notna().all()


def test_roofline_flags_impossible_rates():
    p = Peaks(device="d", gbps=1000.0, tflops={"bf16": 100.0}, datasheet={"gbps": 1200.0, "bf16": 120.0})
    ok = roofline(bytes_moved=10**9, flops=0, ms=2.0, dtype="bf16", p=p)  # 500 GB/s
    assert ok["suspect"] == "" and abs(ok["roofline_pct"] - 50.0) < 1e-6 and ok["bound"] == "memory"
    bad = roofline(bytes_moved=10**9, flops=0, ms=0.5, dtype="bf16", p=p)  # 2000 GB/s > any peak
    assert "above the peak" in bad["suspect"]


def test_plots_and_cli(tmp_path, capsys):
    out = tmp_path / "plots"
    code = main(
        [
            "bench",
            "add",
            "--cases",
            "quick",
            "--dtype",
            "fp32",
            "--rep-ms",
            "5",
            "--no-progress",
            "--plot",
            str(out),
            "--csv",
            str(tmp_path / "b.csv"),
            "--store",
            str(tmp_path / "r.db"),
        ]
    )
    assert code == 0
    assert {p.name for p in out.iterdir()} == {"speedup_1.png", "roofline.png", "latency_add.png"}
    assert "median speedup" in capsys.readouterr().out
    hist = ResultStore(tmp_path / "r.db").history("bench", op="add", impl="generic")
    fig = plots.history(hist)
    assert fig.axes[0].lines


def test_dispatched_rows_time_our_kernels_through_use_ops_and_never_pass_native_off_as_ours():
    import dataclasses

    import torch

    from workbench.dispatch import through_use_ops
    from workbench.profiling.bench import DISPATCHED, bench_case, flag_gems_import, ours

    spec, peaks = REGISTRY["add"], Peaks(device="test", gbps=1000.0, tflops={"fp32": 1.0})
    case = spec.case_list("quick")[0]
    rows = bench_case(
        spec, case, torch.float32, 3, peaks, rep_ms=2, dispatched=through_use_ops, peers=["flaggems"]
    )
    by_impl = {r["impl"]: r for r in rows}
    assert list(by_impl) == ["native", DISPATCHED, "flaggems"]
    ours_row = by_impl[DISPATCHED]
    assert ours_row["error"] == "" and ours_row["passed"] and ours_row["ms"] > 0
    assert by_impl["native"]["rel_err"] < 1e-6  # native's own error against float64, for scale
    module, why = flag_gems_import()
    assert (module is None) == (by_impl["flaggems"]["error"] != "")
    assert module is not None or why in by_impl["flaggems"]["error"]
    import pandas as pd

    assert ours(pd.DataFrame(rows)).tolist() == [False, True, False]

    # a reference that never reaches add's kernels: an error cell, not native's time under our name
    elsewhere = dataclasses.replace(spec, reference=torch.sub)
    rows = bench_case(elsewhere, case, torch.float32, 3, peaks, rep_ms=2, dispatched=through_use_ops)
    assert "no call reached workbench's add kernels" in rows[1]["error"] and "ms" not in rows[1]


class _HeldBackend(backends.get("cpu").__class__):
    """The cpu backend with a device hold whose probe reports it ran out `runs_out` times, then holds."""

    def __init__(self, runs_out: int):
        self.runs_out, self.holds = runs_out, []

    def hold(self, us):
        self.holds.append(us)
        running = len(self.holds) > self.runs_out
        return lambda: running


def test_a_chunk_that_outran_its_hold_is_queued_again_behind_a_longer_one():
    from workbench.profiling import timing

    calls = []
    backend = _HeldBackend(runs_out=1)
    rounds = timing.alternated_rounds([lambda: calls.append(1)], backend, warmup_ms=0, rep_ms=0, min_rounds=5)
    first, second = (us - timing.HOLD_MARGIN_US for us in backend.holds)
    assert len(backend.holds) == 2 and second == pytest.approx(4 * first)
    assert rounds.host_gaps == 0 and len(rounds.times[0]) == 5  # the re-queued chunk's times only

    backend = _HeldBackend(runs_out=timing.HOLD_TRIES)
    rounds = timing.alternated_rounds([lambda: None], backend, warmup_ms=0, rep_ms=0, min_rounds=5)
    assert len(backend.holds) == timing.HOLD_TRIES and rounds.host_gaps == 1


def test_rows_timed_with_host_gaps_say_so(monkeypatch):
    import importlib

    from workbench.profiling import timing

    bench_module = importlib.import_module("workbench.profiling.bench")

    def gapped(fns, *args, **kwargs):
        return timing.Rounds([[1.0] * 5 for _ in fns], host_gaps=2)

    monkeypatch.setattr(bench_module, "alternated_rounds", gapped)
    df = bench(ops=["exp"], cases=["quick"], dtypes=["fp32"], rep_ms=1, progress=False)
    assert df["suspect"].str.contains("host gaps in 2 chunk").all()


def _gems_exp(x):
    """A FlagGems-like kernel for aten::exp: logs its call through its module's logger, as FlagGems' do."""
    import logging

    logging.getLogger(_gems_exp.__module__).debug("GEMS EXP")
    return torch.expm1(x) + 1


_gems_exp.__module__ = "flag_gems.ops.exp"


class _FakeGems:
    """The part of FlagGems the peer uses: `use_gems(include=...)` and its table of functions by name."""

    FULL_CONFIG_BY_FUNC = {"_gems_exp": [("exp", _gems_exp)]}

    def __init__(self):
        self.includes = []

    @contextlib.contextmanager
    def use_gems(self, include=None):
        self.includes.append(include)
        lib = torch.library.Library("aten", "IMPL")
        if include is None or "_gems_exp" in include:
            lib.impl("exp", _gems_exp, "CPU")
        try:
            yield
        finally:
            lib._destroy()


@pytest.mark.filterwarnings("ignore:.*(previously registered|Overriding a previously).*")
def test_flaggems_registers_only_what_the_first_call_ran_and_never_times_torch_as_flaggems(monkeypatch):
    import importlib

    bench_module = importlib.import_module("workbench.profiling.bench")
    gems = _FakeGems()
    monkeypatch.setattr(bench_module, "flag_gems_import", lambda: (gems, ""))
    x = torch.randn(64)
    exp = bench_module.peer(REGISTRY["exp"], "flaggems")
    torch.testing.assert_close(exp(x), torch.exp(x))
    torch.testing.assert_close(exp(x), torch.exp(x))
    assert gems.includes == [None, ["_gems_exp"]]  # the whole library once, then only what ran
    with pytest.raises(bench_module.PeerUnavailable, match="no FlagGems op ran for silu"):
        bench_module.peer(REGISTRY["silu"], "flaggems")(x)
