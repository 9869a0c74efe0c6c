"""The figures of a bench table, shared by `workbench bench --plot`, the regression report and the panel.

`bench_figures` returns name -> matplotlib Figure; `save_figures` writes them as PNG files. Speedups
are drawn on a log axis centred on 1 (a 2x win and a 2x loss look alike; the cpu interpreter's
0.001 shows as clearly as an H200's 1.3), one small panel per op, at most `OPS_PER_PAGE` ops per
figure, so that no figure grows with the number of ops.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

PARITY, TARGET = 1.0, 0.9  # the two reference lines of every speedup plot
OPS_PER_PAGE = 16
COLUMNS = 4


def _source(df: pd.DataFrame) -> str:
    parts = [
        str(df[c].dropna().iloc[0])[:n]
        for c, n in (("device", 60), ("commit", 10))
        if c in df and df[c].notna().any()
    ]
    return " · ".join(parts)


def _label(row) -> str:
    impl = "" if row.impl in ("generic", "candidate") else f" [{row.impl}]"
    return f"{row.case} {row.dtype}{impl}"


def speedup_limits(speedups: pd.Series) -> tuple[float, float]:
    """Symmetric log limits around 1 that hold every value (at least 0.5x .. 2x)."""
    finite = speedups[np.isfinite(speedups) & (speedups > 0)]
    span = max([abs(math.log10(s)) for s in finite] + [math.log10(2)]) * 1.15
    return 10**-span, 10**span


def speedup_pages(df: pd.DataFrame, title: str = "Triton vs native") -> list:
    """Speedup (native ms / Triton ms) per case, one panel per op, pages of OPS_PER_PAGE ops.

    Log x axis centred on 1; the solid line is parity (1.0), the dashed one the 0.9 target. Bars are
    green at or above parity, orange down to the target and red below it.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from workbench.profiling.bench import ours

    rows = df[ours(df) & df["speedup"].notna()]  # the judged rows: peers are context, in the tables
    if rows.empty:
        return []
    lo, hi = speedup_limits(rows["speedup"])
    ops = list(dict.fromkeys(rows["op"]))
    pages = []
    for start in range(0, len(ops), OPS_PER_PAGE):
        page_ops = ops[start : start + OPS_PER_PAGE]
        ncols = min(COLUMNS, len(page_ops))
        nrows = math.ceil(len(page_ops) / ncols)
        most = max(int((rows["op"] == op).sum()) for op in page_ops)
        height = 0.9 + 0.16 * max(most, 3)
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(max(3.3 * ncols, 9), height * nrows + 0.9), squeeze=False, sharex=True
        )
        for ax in axes.flat[len(page_ops) :]:
            ax.set_visible(False)
        for ax, op in zip(axes.flat, page_ops):
            part = rows[rows["op"] == op]
            s = part["speedup"].to_numpy(dtype=float)
            colors = ["tab:green" if v >= PARITY else "tab:orange" if v >= TARGET else "tab:red" for v in s]
            y = np.arange(len(part))
            ax.barh(
                y, s - PARITY, left=PARITY, color=colors, height=0.7
            )  # from parity: wins right, losses left
            ax.set_xscale("log")
            ax.set_xlim(lo, hi)
            ax.axvline(PARITY, color="black", lw=1)
            ax.axvline(TARGET, color="gray", lw=1, ls="--")
            ax.set_yticks(y, [_label(r) for r in part.itertuples()], fontsize=6)
            ax.invert_yaxis()
            ax.set_title(op, fontsize=8, loc="left")
            ax.tick_params(axis="x", labelsize=6)
        handles = [
            Line2D([], [], color="black", lw=1, label=f"{PARITY:.1f}: parity with native"),
            Line2D([], [], color="gray", lw=1, ls="--", label=f"{TARGET:.1f}: target"),
        ]
        page = (
            f" (page {start // OPS_PER_PAGE + 1} of {math.ceil(len(ops) / OPS_PER_PAGE)})"
            if len(ops) > OPS_PER_PAGE
            else ""
        )
        fig.suptitle(
            f"{title}: speedup = native time / Triton time, log axis{page} — {_source(df)}", fontsize=9
        )
        fig.legend(handles=handles, loc="lower center", ncols=2, fontsize=7, frameon=False)
        fig.tight_layout(rect=(0, 0.04, 1, 0.97))
        pages.append(fig)
    return pages


def change_bars(comparison: pd.DataFrame, threshold: float | None, source: str = "", limit: int = 40):
    """Change of kernel time against the baseline, the `limit` largest slowdowns first; red = regression."""
    import matplotlib.pyplot as plt

    rows = comparison.sort_values(["regressed", "change"], ascending=[False, False]).head(limit)
    labels = [f"{r.op} · {r.case} · {r.dtype} [{r.impl}]" for r in rows.itertuples()]
    fig, ax = plt.subplots(figsize=(8, 0.22 * max(len(rows), 4) + 1.2))
    colors = [
        "tab:red" if r else ("tab:gray" if i == "native" else "tab:blue")
        for r, i in zip(rows["regressed"], rows["impl"])
    ]
    ax.barh(np.arange(len(rows)), rows["change"] * 100, color=colors)
    ax.set_yticks(np.arange(len(rows)), labels, fontsize=6)
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=1)
    if threshold is not None:
        ax.axvline(threshold * 100, color="tab:red", lw=1, ls="--", label=f"threshold +{threshold:.0%}")
        ax.legend(fontsize=7)
    shown = (
        f"the {len(rows)} largest slowdowns of {len(comparison)}" if len(comparison) > limit else "every row"
    )
    ax.set_xlabel(f"kernel time vs baseline (%; right = slower; gray = native); {shown}", fontsize=8)
    ax.set_title(f"Against the baseline — {source}", fontsize=9)
    fig.tight_layout()
    return fig


def bench_figures(
    bench: pd.DataFrame,
    comparison: pd.DataFrame | None = None,
    threshold: float | None = None,
    latency: bool = True,
) -> dict:
    """name -> Figure: speedup pages, the baseline comparison, the roofline, latency vs size per op."""
    from workbench.profiling import roofline
    from workbench.reports import plots

    timed = bench[bench["ms"].notna()]
    figs = {}
    if comparison is not None and len(comparison):
        figs["vs_baseline.png"] = change_bars(comparison, threshold, _source(timed))
    if timed.empty:
        return figs
    for i, fig in enumerate(speedup_pages(timed), 1):
        figs[f"speedup_{i}.png"] = fig
    figs["roofline.png"] = plots.roofline_scatter(timed, roofline.peaks())
    if latency:
        for op in dict.fromkeys(timed["op"]):
            figs[f"latency_{op}.png"] = plots.latency_vs_size(timed, op)
    return figs


def save_figures(figs: dict, folder: str | Path, dpi: int = 100) -> list[Path]:
    """Write each Figure as folder/name (PNG) and close it; returns the paths in order."""
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figs.items():
        paths.append(folder / name)
        fig.savefig(paths[-1], dpi=dpi)
        plt.close(fig)
    return paths
