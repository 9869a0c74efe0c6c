"""Run metadata stamped on every result: where, with what, from which commit."""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
from pathlib import Path

import torch

from workbench import backends


def git_commit() -> tuple[str, bool]:
    """(commit, dirty). $WORKBENCH_COMMIT wins: device machines get a copy of the tree without .git."""
    if os.environ.get("WORKBENCH_COMMIT"):
        return os.environ["WORKBENCH_COMMIT"], os.environ.get("WORKBENCH_DIRTY", "0") == "1"
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
        )
        return commit, dirty
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


def run_metadata() -> dict:
    """What every result is tagged with: device, backend, versions, commit, time and host."""
    backend = backends.active()
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "none"
    commit, dirty = git_commit()
    return {
        "device": backend.properties().name,
        "backend": backend.name,
        "torch": torch.__version__,
        "triton": triton_version,
        "commit": commit,
        "dirty": dirty,
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
    }


def device_folder(meta: dict) -> str:
    """The short device name that results folders use: "cpu" for the interpreter, the chip model where the
    name carries one ("NVIDIA H100 80GB HBM3" -> "h100", "MLU590-M9" -> "mlu590"), else the whole name in
    lowercase with runs of other characters as "-". `meta` is `run_metadata()` (its device and backend)."""
    if meta["backend"] == "cpu":
        return "cpu"
    name = re.sub(r"nvidia|cambricon|geforce", "", meta["device"].lower())
    model = re.search(r"\b[a-z]+\d+[a-z]*\b", name)  # letters then digits: h100, a100, mlu590, mi300x
    return model.group(0) if model else re.sub(r"[^a-z0-9]+", "-", name).strip("-") or meta["backend"]


def results_dir(out: str | Path, topic: str, meta: dict) -> Path:
    """`<out>/benchmarks/results/<device>/<topic>`, created: where a benchmark writes its files. `out` is the
    root that receives `benchmarks/results/` (a benchmark's --out, the repo root by default)."""
    path = Path(out) / "benchmarks" / "results" / device_folder(meta) / topic
    path.mkdir(parents=True, exist_ok=True)
    return path
