"""Regression runs: correctness + side-by-side bench on one backend, compared with stored baselines.

`notebooks/regression.ipynb` calls these functions cell by cell (papermill parameters in; the store,
report.html, PNG plots and summary.json out; an exception at the end on any failure), and
`workbench regress` executes that notebook through papermill (`execute`).

Baselines live in the ResultStore as runs of kind ``"baseline"``. The baseline of a measurement
(op, impl, case, dtype) on a device is its newest row among those runs. They are written by
promotion (the promoted kernel's bench), by the first regression run that measures a key nobody
measured before on that device (only rows that passed), and by ``baseline="update"``.
A regression is a Triton row slower than its baseline by more than `threshold` (relative) and by
more than the measured spread (`workbench.store.compare`); native rows and the peers' rows
(``peers``: torch.compile of the native op, FlagGems; a peer that fails or is not installed says why in its
cell) are shown, not judged, and with ``threshold=None`` (the cpu default: interpreter timings are noise)
nothing is judged.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

# Defaults per backend. The interpreter's timings are numpy's: slow, and on a shared machine they move by
# several times between runs, so on cpu they are compared and shown but not judged (threshold None).
DEFAULTS = {
    "cpu": {
        "cases": ["quick"],
        "check_cases": ["quick", "edge"],
        "dtypes": ["fp32"],
        "check_dtypes": ["fp32", "bf16"],
        "threshold": None,
        "rep_ms": 20.0,
    },
    "gpu": {
        "cases": ["llm"],
        "check_cases": ["quick", "edge", "llm"],
        "dtypes": ["bf16"],
        "check_dtypes": ["fp32", "fp16", "bf16"],
        "threshold": 0.1,
        "rep_ms": 100.0,
    },
}
BASELINE_KIND = "baseline"
# Set by `execute` for the notebook's kernel: a file where run_check / run_bench append one JSON line per
# op started, which `execute` follows to show the op in hand (papermill itself only counts cells).
PROGRESS_ENV = "WORKBENCH_PROGRESS_FILE"


class RegressionFailed(AssertionError):
    """A regression run found correctness failures, bench errors or slowdowns beyond the threshold."""


def default_params(backend: str) -> dict:
    return dict(DEFAULTS["cpu" if backend == "cpu" else "gpu"])


def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


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
    peers: list[str] = field(default_factory=list)  # timed beside native in the bench, not judged
    started: str = field(
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    )


def _optional_float(value) -> float | None:
    return None if value is None else float(value)


def configure(
    backend: str | None = None,
    ops=None,
    cases=None,
    check_cases=None,
    dtypes=None,
    check_dtypes=None,
    baseline: str = "store",
    threshold: float | None = None,
    min_speedup: float | None = None,
    rep_ms: float | None = None,
    store: str | None = None,
    output_dir: str = ".",
    seed: int | None = None,
    devices: str | None = None,
    worker_timeout: float = 3600.0,
    peers=None,
) -> Config:
    """Bind the backend and fill what was left None with that backend's defaults."""
    from workbench import backends
    from workbench.profiling.bench import check_peers

    chosen = backends.active(backend)
    if isinstance(ops, str):
        ops = [o for o in ops.replace(",", " ").split() if o]
    if ops:
        from workbench.ops import spec as opspec

        for name in ops:
            opspec.get(name)  # unknown names fail here, before anything runs
    from workbench.store import ResultStore, default_store_path

    store = str(store or default_store_path())
    opened = ResultStore(store)  # an unreachable or newer store fails here, before anything runs
    if baseline not in ("store", "update", "none") and baseline not in set(opened.runs()["run_id"]):
        raise ValueError(
            f"baseline: expected 'store', 'update', 'none' or a run id in {store}, got {baseline!r}"
        )
    defaults = default_params(chosen.name)

    def listed(value, key):
        if value is None:
            return list(defaults[key])
        return [v for v in value.replace(",", " ").split() if v] if isinstance(value, str) else list(value)

    cfg = Config(
        backend=chosen.name,
        device=chosen.properties().name,
        ops=list(ops) if ops else None,
        cases=listed(cases, "cases"),
        check_cases=listed(check_cases, "check_cases"),
        dtypes=listed(dtypes, "dtypes"),
        check_dtypes=listed(check_dtypes, "check_dtypes"),
        baseline=str(baseline),
        threshold=_optional_float(defaults["threshold"] if threshold is None else threshold),
        min_speedup=_optional_float(min_speedup),
        rep_ms=float(defaults["rep_ms"] if rep_ms is None else rep_ms),
        store=store,
        output_dir=str(output_dir),
        seed=seed,
        devices=devices,
        worker_timeout=float(worker_timeout),
        peers=check_peers(peers.replace(",", " ").split() if isinstance(peers, str) else peers or ()),
    )
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    return cfg


def _swept(cfg: Config, kind: str, params: dict) -> pd.DataFrame:
    from workbench import sweep
    from workbench.store import ResultStore

    df, _ = sweep.run(kind, cfg.devices, params, store=ResultStore(cfg.store), timeout=cfg.worker_timeout)
    return df


def _per_op(cfg: Config, action: str, run) -> pd.DataFrame:
    """run(op) for every selected op, reporting each op as it starts to $WORKBENCH_PROGRESS_FILE."""
    from workbench.ops import REGISTRY

    ops = cfg.ops or list(REGISTRY)
    progress = os.environ.get(PROGRESS_ENV)
    parts = []
    for i, op in enumerate(ops):
        if progress:
            with open(progress, "a") as f:
                f.write(json.dumps({"action": action, "op": op, "n": i, "total": len(ops)}) + "\n")
        parts.append(run(op))
    return pd.concat(parts, ignore_index=True)


def run_check(cfg: Config) -> pd.DataFrame:
    from workbench.profiling import check

    if cfg.devices:
        return _swept(
            cfg,
            "check",
            {"ops": cfg.ops, "cases": cfg.check_cases, "dtypes": cfg.check_dtypes, "seed": cfg.seed},
        )
    return _per_op(
        cfg,
        "check",
        lambda op: check(
            ops=[op], cases=cfg.check_cases, dtypes=cfg.check_dtypes, seed=cfg.seed, progress=False
        ),
    )


def run_bench(cfg: Config) -> pd.DataFrame:
    from workbench.profiling import bench

    if cfg.devices:
        return _swept(
            cfg,
            "bench",
            {
                "ops": cfg.ops,
                "cases": cfg.cases,
                "dtypes": cfg.dtypes,
                "rep_ms": cfg.rep_ms,
                "seed": cfg.seed,
                "peers": cfg.peers,
            },
        )
    return _per_op(
        cfg,
        "bench",
        lambda op: bench(
            ops=[op],
            cases=cfg.cases,
            dtypes=cfg.dtypes,
            rep_ms=cfg.rep_ms,
            seed=cfg.seed,
            progress=False,
            peers=cfg.peers,
        ),
    )


def devices_summary(check_df: pd.DataFrame, bench_df: pd.DataFrame) -> pd.DataFrame:
    """Per worker device of a sweep: its ops, check rows failed, bench rows and errors (empty without one)."""
    from workbench.profiling import failures

    if "device_id" not in check_df or "device_id" not in bench_df:
        return pd.DataFrame()
    failed = check_df.index.isin(failures(check_df).index)
    checks = (
        check_df.assign(failed=failed)
        .groupby("device_id")
        .agg(ops=("op", "nunique"), check_rows=("op", "size"), check_failed=("failed", "sum"))
    )
    errors = (
        bench_df.assign(errors=bench_df["error"].fillna("") != "")
        .groupby("device_id")
        .agg(bench_rows=("op", "size"), bench_errors=("errors", "sum"))
    )
    return checks.join(errors, how="outer").fillna(0).astype(int).reset_index()


def correctness_summary(check_df: pd.DataFrame) -> pd.DataFrame:
    """Per op: rows passed / failed / skipped and the first failure, failing ops first."""
    from .reports.report import correctness_by_op

    return correctness_by_op(check_df)


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
    """The run joined with its baseline; `regressed` only for our rows (native and the peers are context)."""
    from workbench.profiling.bench import ours
    from workbench.store import ResultStore
    from workbench.store import compare as compare_runs

    base = baseline_rows(ResultStore(cfg.store), cfg.device, cfg.baseline)
    ok = bench_df[bench_df["ms"].notna()]
    if base.empty or ok.empty:
        return pd.DataFrame(columns=["op", "impl", "case", "dtype", "ms", "ms_base", "change", "regressed"])
    judged = cfg.threshold is not None
    out = compare_runs(ok, base[base["ms"].notna()], threshold=cfg.threshold if judged else float("inf"))
    out["regressed"] = out["regressed"] & ours(out) & judged
    return out.sort_values(["regressed", "change"], ascending=[False, False]).reset_index(drop=True)


def record(cfg: Config, check_df: pd.DataFrame, bench_df: pd.DataFrame) -> dict:
    """Append the check and bench runs; write baselines for new keys (or all, for baseline='update')."""
    from workbench.store import KEY, ResultStore

    store = ResultStore(cfg.store)
    ids = {
        "check": store.append(check_df.drop(columns=["traceback"], errors="ignore"), kind="check"),
        "bench": store.append(bench_df.drop(columns=["traceback"], errors="ignore"), kind="bench"),
    }
    good = bench_df[
        bench_df["ms"].notna()
        & (bench_df["error"].fillna("") == "")
        & (bench_df["passed"].isna() | bench_df["passed"].eq(True))
    ]
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


def problems(
    cfg: Config, check_df: pd.DataFrame, bench_df: pd.DataFrame, comparison: pd.DataFrame
) -> list[str]:
    """Everything that makes the run fail, one line each (the peers' rows never do: they are context)."""
    from workbench.profiling import failures
    from workbench.profiling.bench import PEERS, ours

    out = []
    from .profiling.correctness import failure_reason

    for _, row in failures(check_df).iterrows():
        out.append(f"check: {row['op']} {row['case']} {row['dtype']}: {failure_reason(row)}")
    triton = bench_df[ours(bench_df)]
    judged = bench_df[~bench_df["impl"].isin(PEERS)]
    for _, row in judged[judged["error"].fillna("") != ""].iterrows():
        out.append(f"bench: {row['op']} [{row['impl']}] {row['case']} {row['dtype']}: {row['error']}")
    for _, row in triton[triton["passed"].eq(False)].iterrows():
        out.append(
            f"bench: {row['op']} [{row['impl']}] {row['case']} {row['dtype']}: "
            "wrong result on the bench inputs"
        )
    for _, row in comparison[comparison["regressed"]].iterrows():
        out.append(
            f"regression: {row['op']} [{row['impl']}] {row['case']} {row['dtype']}: {row['ms']:.4g} ms vs "
            f"baseline {row['ms_base']:.4g} ms ({row['change']:+.0%}, threshold +{cfg.threshold:.0%})"
        )
    if cfg.min_speedup is not None:
        slow = triton[triton["speedup"].notna() & (triton["speedup"] < cfg.min_speedup)]
        for _, row in slow.iterrows():
            out.append(
                f"speedup: {row['op']} [{row['impl']}] {row['case']} {row['dtype']}: "
                f"{row['speedup']:.3g}x native < {cfg.min_speedup:g}"
            )
    return out


def figures(cfg: Config, bench_df: pd.DataFrame, comparison: pd.DataFrame) -> dict:
    """name.png -> Figure (`workbench.reports.figures.bench_figures`: the set CLI and panel show too)."""
    from .reports.figures import bench_figures

    return bench_figures(bench_df, comparison, cfg.threshold)


def save_figures(cfg: Config, figs: dict) -> list[Path]:
    """The figures as PNG files in <output_dir>/plots, beside the report that links them."""
    from .reports.figures import save_figures as save

    return save(figs, Path(cfg.output_dir) / "plots")


def _threshold_words(cfg: Config) -> str:
    if cfg.threshold is None:
        return (
            "timings not judged (threshold None: the cpu default, as interpreter timings move by several "
            "times between runs; pass a threshold to judge them)"
        )
    return f"threshold +{cfg.threshold:.0%} slower than the baseline and beyond the measured spread"


def write_report(
    cfg: Config,
    check_df: pd.DataFrame,
    bench_df: pd.DataFrame,
    comparison: pd.DataFrame,
    plot_paths: list[Path],
    run_ids: dict | None = None,
) -> Path:
    """report.html (`workbench.reports.report`; plots linked from plots/) and summary.json
    in the output dir."""
    from workbench.store.meta import run_metadata

    from .reports import report as html_report

    found = problems(cfg, check_df, bench_df, comparison)
    meta = run_metadata()
    verdict = "FAIL" if found else "PASS"
    dirty = " (dirty)" if meta["dirty"] else ""
    source = (
        f"{meta['device']} · backend {cfg.backend} · torch {meta['torch']} · triton {meta['triton']} · "
        f"commit {meta['commit'][:12]}{dirty} · {meta['timestamp']}"
    )
    scope = (
        f"bench cases {cfg.cases} × {cfg.dtypes}; check cases {cfg.check_cases} × {cfg.check_dtypes}; "
        f"ops {cfg.ops or 'all'}; peers {cfg.peers or 'none'}; baseline {cfg.baseline!r}; "
        f"store {cfg.store}; runs {json.dumps(run_ids or {})}"
    )
    report = html_report.write(
        Path(cfg.output_dir) / "report.html",
        verdict=verdict,
        source=source,
        scope=scope,
        threshold_words=_threshold_words(cfg),
        judged=cfg.threshold is not None,
        problems=found,
        check=check_df,
        devices=devices_summary(check_df, bench_df),
        bench=bench_df,
        comparison=comparison,
        plot_paths=plot_paths,
    )
    summary = {
        "verdict": verdict,
        "problems": found,
        "config": asdict(cfg),
        "runs": run_ids or {},
        "report": str(report),
        "plots": [str(p) for p in plot_paths],
        "meta": meta,
        "check_rows": len(check_df),
        "bench_rows": len(bench_df),
        "regressions": int(comparison["regressed"].sum()) if len(comparison) else 0,
    }
    (Path(cfg.output_dir) / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return report


def raise_on_failure(
    cfg: Config, check_df: pd.DataFrame, bench_df: pd.DataFrame, comparison: pd.DataFrame
) -> None:
    found = problems(cfg, check_df, bench_df, comparison)
    if found:
        raise RegressionFailed(
            f"{len(found)} problem(s):\n"
            + "\n".join(found[:30])
            + (f"\n... and {len(found) - 30} more" if len(found) > 30 else "")
        )


# ---- running the notebook ----------------------------------------------------------------------------


@dataclass
class Execution:
    ok: bool
    output_dir: Path
    notebook: Path
    summary: dict | None  # summary.json, when the notebook got that far
    error: str = ""


class _OpProgress:
    """Follows the notebook's progress file in a thread and shows the op in hand as a tqdm bar."""

    def __init__(self, path: Path):
        self.path, self.seen, self.bar = path, 0, None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._follow, name="workbench-regress-progress", daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        if self.bar is not None:
            self.bar.close()

    def _follow(self) -> None:
        while True:
            stopping = self.stop.wait(0.3)
            self._read()
            if stopping:
                return

    def _read(self) -> None:
        from tqdm.auto import tqdm

        lines = self.path.read_text().splitlines() if self.path.exists() else []
        for line in lines[self.seen :]:
            step = json.loads(line)
            if self.bar is None or self.bar.desc != step["action"]:
                if self.bar is not None:
                    self.bar.close()
                self.bar = tqdm(
                    total=step["total"], desc=step["action"], unit="op", leave=False, dynamic_ncols=True
                )
            self.bar.n = step["n"]
            self.bar.set_postfix_str(step["op"])
        self.seen = len(lines)


def execute(
    parameters: dict,
    output_dir: str | Path,
    notebook: str | Path | None = None,
    cell_timeout: int = 1800,
    progress: bool = False,
    kernel_name: str = "python3",
) -> Execution:
    """Run regression.ipynb through papermill; the executed notebook lands in `output_dir`.

    progress: a bar on stderr naming the op being checked or benched.
    """
    import papermill as pm

    notebook = Path(notebook) if notebook else default_notebook()
    if not notebook.is_file():
        raise FileNotFoundError(
            f"notebook: expected regression.ipynb, got {str(notebook)!r} (not found; "
            "pass --notebook when workbench is installed without its repo)"
        )
    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    executed = output_dir / notebook.name
    summary_path = output_dir / "summary.json"
    progress_path = output_dir / "progress.jsonl"
    for stale in (summary_path, progress_path):  # left by an earlier run, they would tell of it
        stale.unlink(missing_ok=True)
    params = {k: v for k, v in parameters.items() if v is not None}
    params["output_dir"] = str(output_dir)
    env = {PROGRESS_ENV: str(progress_path)}
    if params.get("backend"):  # the kernel process binds to it before anything else
        env["WORKBENCH_BACKEND"] = params["backend"]
    previous = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with _OpProgress(progress_path) if progress else contextlib.nullcontext():
            # The kernel's log level keeps its start-up warnings (TCP without encryption on a local
            # kernel) off the terminal; the cells' own output and errors land in the executed notebook.
            pm.execute_notebook(
                str(notebook),
                str(executed),
                parameters=params,
                kernel_name=kernel_name,
                execution_timeout=cell_timeout,
                cwd=str(output_dir),
                progress_bar=False,
                log_output=False,
                extra_arguments=["--IPKernelApp.log_level=ERROR"],
            )
        error = ""
    except pm.PapermillExecutionError as e:
        error = f"{e.ename}: {e.evalue}"
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    return Execution(ok=not error, output_dir=output_dir, notebook=executed, summary=summary, error=error)
