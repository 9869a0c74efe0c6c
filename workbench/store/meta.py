"""Run metadata stamped on every result: where, with what, from which commit."""

from __future__ import annotations

import datetime
import os
import platform
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
