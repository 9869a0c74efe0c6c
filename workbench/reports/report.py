"""The regression report: report.html built from the run's tables with pandas Styler and a jinja2 template.

Order of the page: the verdict and a headline per backend (pass/fail counts, regressions, median and
worst speedup), the problems, the comparison with the baseline, the speedup figures, then the tables
sorted worst first with their full versions folded; when the bench timed peers (torch.compile of the
native op, FlagGems), a table with native, each peer and ours as columns (ms, speedup, error against
float64, or why a peer did not run). Figures are PNG files beside the report (in
plots/), shown as linked thumbnails, so the page stays small however many ops ran.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.profiling.bench import PEERS, ours
from workbench.profiling.correctness import failure_reason, failures

from .views import comparison_table

TEMPLATE = "report.html.j2"
COMPACT_ROWS = 15  # rows of each table shown before the fold


def _worst(rows: pd.DataFrame) -> str:
    if rows.empty:
        return "–"
    r = rows.loc[rows["speedup"].idxmin()]
    return f"{r['speedup']:.3g}x ({r['op']} {r['case']} {r['dtype']})"


def headline(check: pd.DataFrame, bench: pd.DataFrame, comparison: pd.DataFrame) -> pd.DataFrame:
    """One row per backend: checks passed / failed / skipped, bench errors, regressions, speedups."""
    failed = failures(check)
    skipped = check["skipped"].fillna("") != ""
    backends_seen = list(
        dict.fromkeys(
            list(check.get("backend", pd.Series(dtype=str)).dropna())
            + list(bench.get("backend", pd.Series(dtype=str)).dropna())
        )
    ) or ["?"]
    rows = []
    for name in backends_seen:

        def mine(df):
            return df if "backend" not in df or name == "?" else df[df["backend"] == name]

        c, b = mine(check), mine(bench)
        triton = b[ours(b) & b["speedup"].notna()] if len(b) else b
        regressions = int(mine(comparison)["regressed"].sum()) if len(comparison) else 0
        rows.append(
            {
                "backend": name,
                "device": str(b["device"].iloc[0]) if len(b) and "device" in b else "",
                "checks passed": int(len(c) - c.index.isin(failed.index).sum() - skipped[c.index].sum()),
                "checks failed": int(c.index.isin(failed.index).sum()),
                "skipped": int(skipped[c.index].sum()),
                "bench errors": int((b["error"].fillna("") != "").sum()) if len(b) else 0,
                "regressions": regressions,
                "median speedup": float(triton["speedup"].median()) if len(triton) else math.nan,
                "worst speedup": _worst(triton),
            }
        )
    return pd.DataFrame(rows)


def correctness_by_op(check: pd.DataFrame) -> pd.DataFrame:
    """Per op: rows, passed, failed, skipped and the first failure's reason; failing ops first."""
    failed = failures(check)
    df = check.assign(failed=check.index.isin(failed.index), skip=check["skipped"].fillna("") != "")
    out = df.groupby("op").agg(rows=("case", "size"), failed=("failed", "sum"), skipped=("skip", "sum"))
    out["passed"] = out["rows"] - out["failed"] - out["skipped"]
    first = {
        op: f"{r['case']} {r['dtype']}: {failure_reason(r)}"
        for op, r in failed.groupby("op").head(1).set_index("op").iterrows()
    }
    out["first failure"] = [first.get(op, "") for op in out.index]
    return out.reset_index().sort_values(["failed", "op"], ascending=[False, True])[
        ["op", "rows", "passed", "failed", "skipped", "first failure"]
    ]


def side_by_side_worst_first(bench: pd.DataFrame) -> pd.DataFrame:
    """The side-by-side table of our rows, errors and wrong results first, then by speedup (lowest first)."""
    from workbench.profiling import side_by_side

    table = side_by_side(bench[~bench["impl"].isin(PEERS)])
    bad = (table["error"].fillna("") != "") | table["passed"].eq(False)
    return (
        table.assign(_bad=bad)
        .sort_values(["_bad", "speedup"], ascending=[False, True], na_position="first")
        .drop(columns="_bad")
    )


def styled(df: pd.DataFrame, columns: list[str] | None = None, rows: int | None = None) -> str:
    """An HTML table (pandas Styler): compact numbers, failures in red, speedups coloured by the targets."""
    from .figures import PARITY, TARGET

    df = df[columns] if columns else df
    df = df.head(rows) if rows else df
    if df.empty:
        return "<p><i>none</i></p>"

    def verdict(v):
        if (isinstance(v, (bool, np.bool_)) and not v) or v in ("FAIL", "regression"):
            return "color:#b00020;font-weight:bold"
        return ""

    def speed(v):
        if not isinstance(v, (int, float)) or math.isnan(v):
            return ""
        return "color:#137333" if v >= PARITY else ("color:#b26a00" if v >= TARGET else "color:#b00020")

    floats = [c for c in df.columns if pd.api.types.is_float_dtype(df[c])]
    styler = df.style.hide(axis="index").format("{:.4g}", subset=floats, na_rep="")
    styler = styler.map(verdict)
    speed_cols = [c for c in df.columns if "speedup" in str(c) or c == "candidate vs current"]
    if speed_cols:
        styler = styler.map(speed, subset=speed_cols)
    if "change" in df.columns:
        styler = styler.format("{:+.0%}", subset=["change"], na_rep="")
    return styler.set_table_attributes('class="wb"').to_html()


def render(context: dict) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
    )
    return env.get_template(TEMPLATE).render(**context)


def write(
    path: Path,
    *,
    verdict: str,
    source: str,
    scope: str,
    threshold_words: str,
    judged: bool,
    problems: list[str],
    check: pd.DataFrame,
    bench: pd.DataFrame,
    comparison: pd.DataFrame,
    plot_paths: list[Path],
    devices: pd.DataFrame | None = None,
) -> Path:
    """Write report.html at `path`; plots are linked relative to it (they must lie beside it).

    judged: whether timings were judged against the baseline (a threshold was set).
    devices: per worker device of a `--devices` sweep (its ops, failures, errors); None or empty without one.
    """
    path = Path(path)

    def rel(p):
        return os.path.relpath(p, path.parent)

    plots = {Path(p).name: rel(p) for p in plot_paths}
    by_op = correctness_by_op(check)
    table = side_by_side_worst_first(bench)
    if (table["error"].fillna("") == "").all():
        table = table.drop(columns=["error"])
    compact = [
        c
        for c in [
            "op",
            "case",
            "dtype",
            "impl",
            "ms_native",
            "ms",
            "speedup",
            "roofline_pct",
            "passed",
            "error",
        ]
        if c in table.columns
    ]
    base_cols = ["op", "impl", "case", "dtype", "ms_base", "ms", "change", "noise_ms", "verdict"]
    if len(comparison):
        unflagged = "ok" if judged else "not judged"
        comparison = comparison.assign(
            verdict=comparison["regressed"].map({True: "regression", False: unflagged})
        )
    context = {
        "verdict": verdict,
        "source": source,
        "scope": scope,
        "threshold_words": threshold_words,
        "problems": problems,
        "headline": styled(headline(check, bench, comparison)),
        "devices": styled(devices) if devices is not None and len(devices) else "",
        "has_baseline": len(comparison) > 0,
        "baseline_compact": styled(comparison, base_cols, COMPACT_ROWS) if len(comparison) else "",
        "baseline_full": styled(comparison, base_cols) if len(comparison) > COMPACT_ROWS else "",
        "baseline_rows": len(comparison),
        "vs_baseline": plots.get("vs_baseline.png"),
        "speedup_pages": [v for k, v in plots.items() if k.startswith("speedup")],
        "roofline": plots.get("roofline.png"),
        "latency": {
            k.removeprefix("latency_").removesuffix(".png"): v
            for k, v in plots.items()
            if k.startswith("latency_")
        },
        "correctness_compact": styled(by_op, rows=COMPACT_ROWS),
        "correctness_full": styled(by_op) if len(by_op) > COMPACT_ROWS else "",
        "correctness_ops": len(by_op),
        "bench_compact": styled(table, compact, COMPACT_ROWS),
        "bench_full": styled(table),
        "bench_rows": len(table),
        "peers": styled(comparison_table(bench)) if bench["impl"].isin(PEERS).any() else "",
        "peer_names": [p for p in PEERS if (bench["impl"] == p).any()],
        "compact_rows": COMPACT_ROWS,
    }
    path.write_text(render(context))
    return path
