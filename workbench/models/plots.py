"""Figures of a full-model run (`ModelRun`): throughput side by side, token agreement per position,
and the per-op time breakdown of both sides; loss curves of a training run (`TrainRun`). Each function takes
the run and returns a matplotlib Figure."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd

from .run import ModelRun
from .train import TrainRun


def _title(run: ModelRun, what: str) -> str:
    c = run.config
    return (
        f"{what} — {c['model']}, batch {c['batch']}, prompt {c['prompt_len']}, {c['new_tokens']} new tokens\n"
        f"{c['device']}, commit {str(c['commit'])[:10]}"
    )


def throughput(run: ModelRun):
    """Tokens/s per phase, native beside workbench, with the workbench/native ratio on top (and its p20-p80
    spread over the alternated rounds, "unstable" where it exceeds 5%)."""
    r = run.ratios()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    x = range(len(r))
    ax.bar([i - 0.2 for i in x], r["native_tok_s"], width=0.4, label="native")
    ax.bar([i + 0.2 for i in x], r["workbench_tok_s"], width=0.4, label="workbench")
    for i, row in enumerate(r.itertuples()):
        if math.isnan(row.ratio):
            continue
        top = max(row.native_tok_s, row.workbench_tok_s)
        spread = "" if pd.isna(row.ratio_p20) else f"\n{row.ratio_p20:.2f}-{row.ratio_p80:.2f}"
        spread += "\nunstable" if pd.notna(row.unstable) and bool(row.unstable) else ""
        ax.annotate(f"{row.ratio:.2f}x{spread}", (i, top), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(x), r["phase"])
    ax.set_ylabel("tokens/s")
    ax.legend()
    ax.set_title(_title(run, "throughput"), fontsize=9)
    fig.tight_layout()
    return fig


def agreement(run: ModelRun):
    """Fraction of the batch whose workbench token equals the native one, per position and kind."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for kind, df in run.agreement.groupby("kind", sort=False):
        ax.plot(df["position"], df["agreement"], marker=".", label=kind)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("position")
    ax.set_ylabel("identical tokens (fraction of batch)")
    ax.legend(fontsize=8)
    ax.set_title(_title(run, "greedy token agreement"), fontsize=9)
    fig.tight_layout()
    return fig


def profile(run: ModelRun, phase: str | None = None, top: int = 15):
    """Horizontal bars of the `top` ATen ops by time, native beside workbench, for one profiled phase."""
    p = run.profile
    phase = phase or (p["phase"].iloc[0] if len(p) else "")
    df = p[(p["phase"] == phase) & (p["aten_op"] != "(total)")].head(top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(df) + 1.5))
    y = range(len(df))
    ax.barh([i + 0.2 for i in y], df["native_ms"], height=0.4, label="native")
    ax.barh([i - 0.2 for i in y], df["workbench_ms"], height=0.4, label="workbench")
    ax.set_yticks(list(y), df["aten_op"], fontsize=8)
    ax.set_xlabel(f"{df['time'].iloc[0] if len(df) else ''} time (ms)")
    ax.legend()
    ax.set_title(_title(run, f"per-op time, {phase}"), fontsize=9)
    fig.tight_layout()
    return fig


def train_loss(run: TrainRun):
    """Loss per training step of both sides (same initial weights and data), and their relative difference."""
    steps = run.steps.pivot(index="step", columns="side", values="loss")
    fig, (ax, diff) = plt.subplots(1, 2, figsize=(9, 3.2))
    for side in steps.columns:
        ax.plot(steps.index, steps[side], marker=".", label=side)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.set_title("training loss", fontsize=9)
    diff.plot(steps.index, (steps["workbench"] - steps["native"]).abs() / steps["native"].abs(), marker=".")
    diff.set_xlabel("step")
    diff.set_ylabel("|workbench - native| / native")
    diff.set_title("relative loss difference", fontsize=9)
    fig.tight_layout()
    return fig
