"""The regression run's logic, in process: baselines seeded and compared, problems found, report written."""

import json

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
from helpers import shared_cache  # noqa: E402

from workbench import regression  # noqa: E402
from workbench.store import ResultStore  # noqa: E402


@pytest.fixture(autouse=True)
def _cache(monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", shared_cache())


@pytest.fixture
def cfg(tmp_path):
    return regression.configure(
        ops=["silu"],
        cases=["quick"],
        check_cases=["quick"],
        dtypes=["fp32"],
        check_dtypes=["fp32"],
        rep_ms=1,
        store=str(tmp_path / "r.db"),
        output_dir=str(tmp_path / "out"),
        seed=1,
    )


def test_first_run_seeds_the_baseline_and_a_slowdown_is_flagged(cfg):
    check_df, bench_df = regression.run_check(cfg), regression.run_bench(cfg)
    assert regression.compare_with_baseline(cfg, bench_df).empty  # nothing stored yet
    ids = regression.record(cfg, check_df, bench_df)
    assert set(ids) == {"check", "bench", "baseline"}
    assert len(ResultStore(cfg.store).history("baseline")) == len(bench_df)

    slower = bench_df.copy()
    triton = slower["impl"] != "native"
    for col in ("ms", "ms_p20", "ms_p80"):  # 100x slower with no spread: beyond any measured noise
        slower.loc[triton, col] = bench_df.loc[triton, "ms"] * 100
    cfg.threshold = None  # the cpu default: compared, not judged
    assert not regression.compare_with_baseline(cfg, slower)["regressed"].any()
    cfg.threshold = 0.1
    comparison = regression.compare_with_baseline(cfg, slower)
    flagged = comparison[comparison["regressed"]]
    assert len(flagged) == triton.sum() and set(flagged["impl"]) == {"generic"}
    assert not comparison[comparison["impl"] == "native"]["regressed"].any()

    found = regression.problems(cfg, check_df, slower, comparison)
    assert len(found) == triton.sum() and all(p.startswith("regression: silu [generic]") for p in found)
    plots = regression.save_figures(cfg, regression.figures(cfg, slower, comparison))
    report = regression.write_report(cfg, check_df, slower, comparison, plots, ids)
    page = report.read_text()
    assert "FAIL" in page and "regression" in page
    from workbench.reports.report import headline

    head = headline(check_df, slower, comparison).iloc[0]
    assert (
        head["regressions"] == triton.sum() and head["checks failed"] == 0 and head["backend"] == cfg.backend
    )
    assert head["worst speedup"].startswith(f"{slower.loc[triton, 'speedup'].min():.3g}x (silu")
    assert page.index("Headline") < page.index("Against the baseline") < page.index("Side by side")
    assert "base64" not in page and all((report.parent / "plots" / p.name).is_file() for p in plots)
    assert 'src="plots/speedup_1.png"' in page and 'src="plots/vs_baseline.png"' in page
    assert json.loads((report.parent / "summary.json").read_text())["verdict"] == "FAIL"
    with pytest.raises(regression.RegressionFailed, match="problem"):
        regression.raise_on_failure(cfg, check_df, slower, comparison)

    # a second run records no new baseline rows (its keys are known); "update" replaces them
    assert "baseline" not in regression.record(cfg, check_df, bench_df)
    cfg.baseline = "update"
    assert "baseline" in regression.record(cfg, check_df, bench_df)


def test_cpu_defaults_do_not_judge_interpreter_timings(cfg):
    assert cfg.threshold is None and regression.default_params("cuda")["threshold"] == 0.1
    with pytest.raises(ValueError, match="baseline: expected"):
        regression.configure(baseline="no-such-run", store=cfg.store, output_dir=cfg.output_dir)


def test_failure_reasons_read_numpy_bools_and_missing_values():
    import numpy as np

    from workbench.profiling.correctness import failure_reason

    assert failure_reason({"error": "RuntimeError: x"}) == "RuntimeError: x"
    assert "dtype or shape" in failure_reason({"error": "", "dtype_match": np.False_})
    assert "NaN/Inf" in failure_reason(
        {"error": float("nan"), "dtype_match": True, "nonfinite_match": np.False_}
    )
    assert failure_reason(
        {
            "error": "",
            "dtype_match": None,
            "nonfinite_match": True,
            "rel_err": 0.5,
            "tol": 0.01,
            "elementwise_ok": False,
        }
    ).startswith("rel_err 0.5")


def test_report_shows_the_peers_as_columns_and_does_not_judge_them(tmp_path):
    cfg = regression.configure(
        ops=["silu"],
        cases=["quick"],
        check_cases=["quick"],
        dtypes=["fp32"],
        check_dtypes=["fp32"],
        rep_ms=1,
        store=str(tmp_path / "r.db"),
        output_dir=str(tmp_path / "out"),
        seed=1,
        peers="inductor,flaggems",
    )
    assert cfg.peers == ["inductor", "flaggems"]
    check_df, bench_df = regression.run_check(cfg), regression.run_bench(cfg)
    assert set(bench_df["impl"]) == {"native", "generic", "inductor", "flaggems"}
    gems = bench_df[bench_df["impl"] == "flaggems"]
    try:
        import flag_gems  # noqa: F401

        installed = True
    except ImportError:  # its cells say why, and that is no problem of ours
        installed = False
        assert gems["error"].str.contains("flag_gems is not installed").all()
    cfg.threshold = 0.1
    comparison = regression.compare_with_baseline(cfg, bench_df)
    ids = regression.record(cfg, check_df, bench_df)
    assert regression.problems(cfg, check_df, bench_df, comparison) == []
    report = regression.write_report(cfg, check_df, bench_df, comparison, [], ids).read_text()
    peers = report[report.index('id="peers"') :]
    peers = peers[: peers.index("</table>")]
    for column in (
        "native ms",
        "native rel_err",
        "inductor ms",
        "inductor speedup",
        "inductor rel_err",
        "flaggems ms",
        "generic ms",
        "generic rel_err",
    ):
        assert f">{column}</th>" in peers, column
    assert installed or "flag_gems is not installed" in peers
    side = report[report.index("Side by side") :]
    assert ">inductor<" not in side[: side.index("</table>")]  # our table holds our rows
    assert report.index("Side by side") < report.index("Beside the peers") < report.index("More figures")

    plain = regression.write_report(
        cfg, check_df, bench_df[bench_df["impl"].isin(["native", "generic"])], comparison, [], ids
    ).read_text()
    assert "Beside the peers" not in plain
    with pytest.raises(ValueError, match="peers"):
        regression.configure(store=cfg.store, output_dir=cfg.output_dir, peers=["tvm"])
