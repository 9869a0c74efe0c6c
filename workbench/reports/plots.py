"""Single plots of bench tables (figures.py assembles the shown set from some of them); each function takes

Every figure's title carries the device (and the commit where the table has one), so a saved PNG says
where its numbers come from.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from workbench.profiling.roofline import Peaks


def _source(df: pd.DataFrame) -> str:
    parts = []
    if "device" in df and df["device"].notna().any():
        parts.append(str(df["device"].dropna().iloc[0]))
    if "commit" in df and df["commit"].notna().any():
        parts.append(f"commit {str(df['commit'].dropna().iloc[0])[:10]}")
    return " · ".join(parts)


def _finish(fig: Figure, ax, xlabel: str, ylabel: str, title: str, log: bool = False) -> Figure:
    """Label a one-axes figure with a legend (log: both axes logarithmic) and lay it out."""
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def roofline_scatter(df: pd.DataFrame, peaks: Peaks) -> Figure:
    """Achieved TFLOP/s against arithmetic intensity, under the measured bandwidth and compute roofs."""
    rows = df[df["ms"].notna() & (df["bytes"] > 0)]
    fig, ax = plt.subplots(figsize=(7, 5))
    intensity = (rows["flops"] / rows["bytes"]).tolist() or [0.1, 100.0]
    xs = np.logspace(np.log10(max(min(intensity) / 4, 1e-3)), np.log10(max(max(intensity) * 4, 10.0)), 100)
    for dtype in sorted(set(rows["dtype"])) or ["bf16"]:
        ax.plot(xs, np.minimum(xs * peaks.gbps / 1e3, peaks.flops_peak(dtype)), lw=1, label=f"roof {dtype}")
    for impl, group in rows.groupby("impl"):
        ax.scatter(
            group["flops"] / group["bytes"],
            group["tflops"],
            s=18,
            marker="o" if impl == "native" else "^",
            label=impl,
        )
    return _finish(
        fig,
        ax,
        "arithmetic intensity (FLOP / byte)",
        "TFLOP/s",
        f"Roofline ({peaks.gbps:.0f} GB/s measured) — {_source(df)}",
        log=True,
    )


def latency_vs_size(df: pd.DataFrame, op: str) -> Figure:
    """Kernel time of native and Triton against bytes moved, for one op (all its cases and dtypes)."""
    rows = df[(df["op"] == op) & df["ms"].notna()].sort_values("bytes")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (impl, dtype), group in rows.groupby(["impl", "dtype"]):
        ax.errorbar(
            group["bytes"],
            group["ms"] * 1e3,
            yerr=[(group["ms"] - group["ms_p20"]) * 1e3, (group["ms_p80"] - group["ms"]) * 1e3],
            marker="o",
            ms=4,
            capsize=2,
            label=f"{impl} {dtype}",
        )
    return _finish(
        fig,
        ax,
        "bytes moved (cost model)",
        "kernel time (µs, median with p20–p80)",
        f"{op}: latency vs size — {_source(df)}",
        log=True,
    )


def history(rows: pd.DataFrame, title: str = "") -> Figure:
    """Kernel time of one (op, case, dtype) across runs, one line per impl, labelled by commit."""
    rows = rows.sort_values("timestamp")
    fig, ax = plt.subplots(figsize=(8, 4))
    for impl, group in rows.groupby("impl"):
        ax.plot(np.arange(len(group)), group["ms"] * 1e3, marker="o", label=impl)
        ax.set_xticks(np.arange(len(group)), [str(c)[:8] for c in group["commit"]], rotation=45, fontsize=7)
    return _finish(
        fig, ax, "commit (oldest first)", "kernel time (µs)", title or f"history — {_source(rows)}"
    )
