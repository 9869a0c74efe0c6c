"""Regression runs: correctness + side-by-side bench on one backend, compared with stored baselines.

`notebooks/regression.ipynb` calls these functions cell by cell (papermill parameters in; the store,
report.html, PNG plots and summary.json out; an exception at the end on any failure), and
`workbench regress` executes that notebook through papermill (`execute`).

Baselines live in the ResultStore as runs of kind ``"baseline"``. The baseline of a measurement
(op, impl, case, dtype) on a device is its newest row among those runs. They are written by
promotion (the promoted kernel's bench), by the first regression run that measures a key nobody
measured before on that device (only rows that passed), and by ``baseline="update"``.
A regression is a Triton row slower than its baseline by more than `threshold` (relative) and by
more than the measured spread (`workbench.profiling.store.compare`); native rows are shown, not judged,
and with ``threshold=None`` (the cpu default: interpreter timings are noise) nothing is judged.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

# Defaults per backend. The interpreter's timings are numpy's: slow, and on a shared machine they move by
# several times between runs, so on cpu they are compared and shown but not judged (threshold None).
DEFAULTS = {
    "cpu": {"cases": ["quick"], "check_cases": ["quick", "edge"], "dtypes": ["fp32"],
            "check_dtypes": ["fp32", "bf16"], "threshold": None, "rep_ms": 20.0},
    "gpu": {"cases": ["llm"], "check_cases": ["quick", "edge", "llm"], "dtypes": ["bf16"],
            "check_dtypes": ["fp32", "fp16", "bf16"], "threshold": 0.1, "rep_ms": 100.0},
}
BASELINE_KIND = "baseline"
STORE_ENV = "WORKBENCH_STORE"


class RegressionFailed(AssertionError):
    """A regression run found correctness failures, bench errors or slowdowns beyond the threshold."""


def default_params(backend: str) -> dict:
    return dict(DEFAULTS["cpu" if backend == "cpu" else "gpu"])


def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def default_store_path() -> str:
    """$WORKBENCH_STORE (a SQLite path or a postgresql:// URL), else out/workbench.db in the repo root."""
    return os.environ.get(STORE_ENV) or str(repo_root() / "out" / "workbench.db")


def default_notebook() -> Path:
    return repo_root() / "notebooks" / "regression.ipynb"


@dataclass
class Config:
    backend: str
    device: str
    ops: list[str] | None
    cases: list[str]
    check_cases: list[str]
    dtypes: list[str]
    check_dtypes: list[str]
    baseline: str
    threshold: float | None
    min_speedup: float | None
    rep_ms: float
    store: str
    output_dir: str
    seed: int | None = None
    devices: str | None = None  # "all", "0,1", "cpu:2": check and bench over one worker per device
    worker_timeout: float = 3600.0
    started: str = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc)
                         .isoformat(timespec="seconds"))


def _optional_float(value) -> float | None:
    return None if value is None else float(value)


def configure(backend: str | None = None, ops=None, cases=None, check_cases=None, dtypes=None, check_dtypes=None,
              baseline: str = "store", threshold: float | None = None, min_speedup: float | None = None,
              rep_ms: float | None = None, store: str | None = None, output_dir: str = ".",
              seed: int | None = None, devices: str | None = None, worker_timeout: float = 3600.0) -> Config:
    """Bind the backend and fill what was left None with that backend's defaults."""
    from workbench import backends

    chosen = backends.active(backend)
    if isinstance(ops, str):
        ops = [o for o in ops.replace(",", " ").split() if o]
    if ops:
        from workbench.ops import spec as opspec

        for name in ops:
            opspec.get(name)  # unknown names fail here, before anything runs
    from workbench.store import ResultStore

    store = str(store or default_store_path())
    opened = ResultStore(store)  # an unreachable or newer store fails here, before anything runs
    if baseline not in ("store", "update", "none") and baseline not in set(opened.runs()["run_id"]):
        raise ValueError(f"baseline: expected 'store', 'update', 'none' or a run id in {store}, got {baseline!r}")
    defaults = default_params(chosen.name)

    def listed(value, key):
        if value is None:
            return list(defaults[key])
        return [v for v in value.replace(",", " ").split() if v] if isinstance(value, str) else list(value)

    cfg = Config(backend=chosen.name, device=chosen.properties().name, ops=list(ops) if ops else None,
                 cases=listed(cases, "cases"), check_cases=listed(check_cases, "check_cases"),
                 dtypes=listed(dtypes, "dtypes"), check_dtypes=listed(check_dtypes, "check_dtypes"),
                 baseline=str(baseline),
                 threshold=_optional_float(defaults["threshold"] if threshold is None else threshold),
                 min_speedup=_optional_float(min_speedup),
                 rep_ms=float(defaults["rep_ms"] if rep_ms is None else rep_ms),
                 store=store, output_dir=str(output_dir), seed=seed, devices=devices,
                 worker_timeout=float(worker_timeout))
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    return cfg


def _swept(cfg: Config, kind: str, params: dict) -> pd.DataFrame:
    from workbench import sweep
    from workbench.store import ResultStore

    df, _ = sweep.run(kind, cfg.devices, params, store=ResultStore(cfg.store), timeout=cfg.worker_timeout)
    return df


def run_check(cfg: Config) -> pd.DataFrame:
    from workbench.profiling import check

    params = {"ops": cfg.ops, "cases": cfg.check_cases, "dtypes": cfg.check_dtypes, "seed": cfg.seed}
    return _swept(cfg, "check", params) if cfg.devices else check(**params)


def run_bench(cfg: Config) -> pd.DataFrame:
    from workbench.profiling import bench

    params = {"ops": cfg.ops, "cases": cfg.cases, "dtypes": cfg.dtypes, "rep_ms": cfg.rep_ms, "seed": cfg.seed}
    return _swept(cfg, "bench", params) if cfg.devices else bench(**params)


def devices_summary(check_df: pd.DataFrame, bench_df: pd.DataFrame) -> pd.DataFrame:
    """Per worker device of a sweep: its ops, check rows failed, bench rows and errors (empty without one)."""
    from workbench.profiling import failures

    if "device_id" not in check_df or "device_id" not in bench_df:
        return pd.DataFrame()
    failed = check_df.index.isin(failures(check_df).index)
    checks = check_df.assign(failed=failed).groupby("device_id").agg(
        ops=("op", "nunique"), check_rows=("op", "size"), check_failed=("failed", "sum"))
    errors = bench_df.assign(errors=bench_df["error"].fillna("") != "").groupby("device_id").agg(
        bench_rows=("op", "size"), bench_errors=("errors", "sum"))
    return checks.join(errors, how="outer").fillna(0).astype(int).reset_index()


def correctness_summary(check_df: pd.DataFrame) -> pd.DataFrame:
    """Per op: rows passed / failed / skipped."""
    from workbench.profiling import failures

    failed = failures(check_df)
    df = check_df.assign(failed=check_df.index.isin(failed.index), skip=check_df["skipped"] != "")
    return df.groupby("op").agg(rows=("case", "size"), failed=("failed", "sum"), skipped=("skip", "sum")) \
        .assign(passed=lambda t: t["rows"] - t["failed"] - t["skipped"]).reset_index()


def baseline_rows(store, device: str, baseline: str) -> pd.DataFrame:
    """The rows to compare with: newest per key among baseline runs, or one run's rows, or none."""
    from workbench.store import KEY

    if baseline == "none":
        return pd.DataFrame()
    if baseline in ("store", "update"):
        rows = store.history(BASELINE_KIND, device)
        return rows.drop_duplicates(KEY, keep="last").reset_index(drop=True) if len(rows) else rows
    rows = store.rows(baseline)
    if rows.empty:
        raise ValueError(f"baseline: run {baseline!r} is not in the store {store.location}")
    return rows


def compare_with_baseline(cfg: Config, bench_df: pd.DataFrame) -> pd.DataFrame:
    """The run joined with its baseline; `regressed` only for Triton rows (native is context)."""
    from workbench.profiling import compare_runs
    from workbench.store import ResultStore

    base = baseline_rows(ResultStore(cfg.store), cfg.device, cfg.baseline)
    ok = bench_df[bench_df["ms"].notna()]
    if base.empty or ok.empty:
        return pd.DataFrame(columns=["op", "impl", "case", "dtype", "ms", "ms_base", "change", "regressed"])
    judged = cfg.threshold is not None
    out = compare_runs(ok, base[base["ms"].notna()], threshold=cfg.threshold if judged else float("inf"))
    out["regressed"] = out["regressed"] & (out["impl"] != "native") & judged
    return out.sort_values(["regressed", "change"], ascending=[False, False]).reset_index(drop=True)


def record(cfg: Config, check_df: pd.DataFrame, bench_df: pd.DataFrame) -> dict:
    """Append the check and bench runs; write baselines for new keys (or all, for baseline='update')."""
    from workbench.store import KEY, ResultStore

    store = ResultStore(cfg.store)
    ids = {"check": store.append(check_df.drop(columns=["traceback"], errors="ignore"), kind="check"),
           "bench": store.append(bench_df.drop(columns=["traceback"], errors="ignore"), kind="bench")}
    good = bench_df[bench_df["ms"].notna() & (bench_df["error"].fillna("") == "")
                    & (bench_df["passed"].isna() | bench_df["passed"].eq(True))]
    if cfg.baseline == "update":
        new = good
    else:
        known = store.history(BASELINE_KIND, cfg.device)
        if len(known):
            seen = set(map(tuple, known[KEY].astype(str).values))
            new = good[[tuple(k) not in seen for k in good[KEY].astype(str).values]]
        else:
            new = good
    if len(new):
        ids["baseline"] = store.append(new.drop(columns=["traceback"], errors="ignore"), kind=BASELINE_KIND)
    return ids


def problems(cfg: Config, check_df: pd.DataFrame, bench_df: pd.DataFrame, comparison: pd.DataFrame) -> list[str]:
    """Everything that makes the run fail, one line each."""
    from workbench.profiling import failures

    out = []
    from .profiling.correctness import failure_reason

    for _, row in failures(check_df).iterrows():
        out.append(f"check: {row['op']} {row['case']} {row['dtype']}: {failure_reason(row)}")
    triton = bench_df[bench_df["impl"] != "native"]
    for _, row in bench_df[bench_df["error"].fillna("") != ""].iterrows():
        out.append(f"bench: {row['op']} [{row['impl']}] {row['case']} {row['dtype']}: {row['error']}")
    for _, row in triton[triton["passed"].eq(False)].iterrows():
        out.append(f"bench: {row['op']} [{row['impl']}] {row['case']} {row['dtype']}: wrong result on the bench inputs")
    for _, row in comparison[comparison["regressed"]].iterrows():
        out.append(f"regression: {row['op']} [{row['impl']}] {row['case']} {row['dtype']}: {row['ms']:.4g} ms vs "
                   f"baseline {row['ms_base']:.4g} ms ({row['change']:+.0%}, threshold +{cfg.threshold:.0%})")
    if cfg.min_speedup is not None:
        slow = triton[triton["speedup"].notna() & (triton["speedup"] < cfg.min_speedup)]
        for _, row in slow.iterrows():
            out.append(f"speedup: {row['op']} [{row['impl']}] {row['case']} {row['dtype']}: "
                       f"{row['speedup']:.3g}x native < {cfg.min_speedup:g}")
    return out


def figures(cfg: Config, bench_df: pd.DataFrame, comparison: pd.DataFrame) -> dict:
    """name.png -> Figure: speedup bars, roofline, change vs baseline, latency vs size per op."""
    from workbench.profiling import plots, roofline

    from .reports.views import change_bars

    timed = bench_df[bench_df["ms"].notna()]
    figs = {}
    if len(timed):
        figs["speedup.png"] = plots.speedup_bars(timed)
        figs["roofline.png"] = plots.roofline_scatter(timed, roofline.peaks())
        for op in sorted(set(timed["op"])):
            figs[f"latency_{op}.png"] = plots.latency_vs_size(timed, op)
    if len(comparison):
        figs["vs_baseline.png"] = change_bars(comparison, cfg.threshold, cfg.device)
    return figs


def save_figures(cfg: Config, figs: dict) -> list[Path]:
    import matplotlib.pyplot as plt

    folder = Path(cfg.output_dir) / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figs.items():
        paths.append(folder / name)
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def _threshold_words(cfg: Config) -> str:
    if cfg.threshold is None:
        return ("timings not judged (threshold None: the cpu default, as interpreter timings move by several "
                "times between runs; pass a threshold to judge them)")
    return f"threshold +{cfg.threshold:.0%} slower than the baseline and beyond the measured spread"


def write_report(cfg: Config, check_df: pd.DataFrame, bench_df: pd.DataFrame, comparison: pd.DataFrame,
                 plot_paths: list[Path], run_ids: dict | None = None) -> Path:
    """report.html (self-contained: plots inlined) and summary.json in the output dir."""
    from workbench.profiling import side_by_side
    from workbench.profiling.meta import run_metadata

    from .reports.views import table_html

    found = problems(cfg, check_df, bench_df, comparison)
    meta = run_metadata()
    verdict = "FAIL" if found else "PASS"
    color = "#b00020" if found else "#137333"
    dirty = " (dirty)" if meta["dirty"] else ""
    source = (f"{html.escape(meta['device'])} · backend {cfg.backend} · torch {meta['torch']} · "
              f"triton {meta['triton']} · commit {meta['commit'][:12]}{dirty} · {meta['timestamp']}")
    scope = (f"bench cases {cfg.cases} × {cfg.dtypes}; check cases {cfg.check_cases} × {cfg.check_dtypes}; "
             f"ops {cfg.ops or 'all'}; baseline {cfg.baseline!r}, {_threshold_words(cfg)}; "
             f"store {html.escape(cfg.store)}; runs {html.escape(json.dumps(run_ids or {}))}")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>workbench regression</title></head>",
        "<body style='font-family:sans-serif;max-width:1400px;margin:auto'>",
        f"<h1>workbench regression: <span style='color:{color}'>{verdict}</span></h1>",
        f"<p>{source}</p>",
        f"<p><small>{scope}</small></p>",
    ]
    if found:
        parts.append("<h2>Problems</h2><ul>" + "".join(f"<li>{html.escape(p)}</li>" for p in found) + "</ul>")
    devices = devices_summary(check_df, bench_df)
    if len(devices):
        parts.append(table_html(devices, f"Devices (--devices {cfg.devices}: one worker each; a crashed or "
                                         "timed-out worker's ops show as errors)"))
    parts.append(table_html(correctness_summary(check_df), "Correctness (per op)"))
    table = side_by_side(bench_df)
    if (table["error"].fillna("") == "").all():
        table = table.drop(columns=["error"])
    parts.append("<h2>Side by side</h2>" + table_html(table))
    if len(comparison):
        shown = comparison[["op", "impl", "case", "dtype", "ms_base", "ms", "change", "noise_ms", "regressed"]]
        unflagged = "ok" if cfg.threshold is not None else "not judged"
        verdicts = shown["regressed"].map({True: "regression", False: unflagged})
        parts.append(f"<h2>Against the baseline</h2><p>{_threshold_words(cfg)}</p>" + table_html(
            shown.assign(change=shown["change"].map("{:+.0%}".format), regressed=verdicts)))
    else:
        parts.append("<h2>Against the baseline</h2><p>no baseline rows to compare with "
                     f"(baseline={cfg.baseline!r}); this run's passing rows seed the baseline.</p>")
    parts.append("<h2>Plots</h2>")
    for path in plot_paths:
        data = base64.b64encode(Path(path).read_bytes()).decode()
        parts.append(f"<figure><img src='data:image/png;base64,{data}' style='max-width:100%'>"
                     f"<figcaption>{html.escape(Path(path).name)}</figcaption></figure>")
    parts.append("</body></html>")
    report = Path(cfg.output_dir) / "report.html"
    report.write_text("\n".join(parts))
    summary = {"verdict": verdict, "problems": found, "config": asdict(cfg), "runs": run_ids or {},
               "report": str(report), "plots": [str(p) for p in plot_paths], "meta": meta,
               "check_rows": len(check_df), "bench_rows": len(bench_df),
               "regressions": int(comparison["regressed"].sum()) if len(comparison) else 0}
    (Path(cfg.output_dir) / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return report


def raise_on_failure(cfg: Config, check_df: pd.DataFrame, bench_df: pd.DataFrame, comparison: pd.DataFrame) -> None:
    found = problems(cfg, check_df, bench_df, comparison)
    if found:
        raise RegressionFailed(f"{len(found)} problem(s):\n" + "\n".join(found[:30])
                               + (f"\n... and {len(found) - 30} more" if len(found) > 30 else ""))


# ---- running the notebook ----------------------------------------------------------------------------

@dataclass
class Execution:
    ok: bool
    output_dir: Path
    notebook: Path
    summary: dict | None  # summary.json, when the notebook got that far
    error: str = ""


def execute(parameters: dict, output_dir: str | Path, notebook: str | Path | None = None,
            cell_timeout: int = 1800, progress: bool = False, kernel_name: str = "python3") -> Execution:
    """Run regression.ipynb through papermill; the executed notebook lands in `output_dir`."""
    import papermill as pm

    notebook = Path(notebook) if notebook else default_notebook()
    if not notebook.is_file():
        raise FileNotFoundError(f"notebook: expected regression.ipynb, got {str(notebook)!r} (not found; "
                                "pass --notebook when workbench is installed without its repo)")
    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    executed = output_dir / notebook.name
    summary_path = output_dir / "summary.json"
    if summary_path.exists():  # a stale one would tell of an earlier run
        summary_path.unlink()
    params = {k: v for k, v in parameters.items() if v is not None}
    params["output_dir"] = str(output_dir)
    env_backend = params.get("backend")
    previous = os.environ.get("WORKBENCH_BACKEND")
    if env_backend:  # the kernel process binds to it before anything else
        os.environ["WORKBENCH_BACKEND"] = env_backend
    try:
        pm.execute_notebook(str(notebook), str(executed), parameters=params, kernel_name=kernel_name,
                            execution_timeout=cell_timeout, cwd=str(output_dir), progress_bar=progress,
                            log_output=False)
        error = ""
    except pm.PapermillExecutionError as e:
        error = f"{e.ename}: {e.evalue}"
    finally:
        if env_backend:
            if previous is None:
                os.environ.pop("WORKBENCH_BACKEND", None)
            else:
                os.environ["WORKBENCH_BACKEND"] = previous
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    return Execution(ok=not error, output_dir=output_dir, notebook=executed, summary=summary, error=error)
