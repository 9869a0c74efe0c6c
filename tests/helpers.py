"""Helpers shared by the ui, promotion and notebook tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CANDIDATES = Path(__file__).resolve().parent / "candidates"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def repo_copy(dest: Path) -> Path:
    """A fresh git repo holding this checkout's files (tracked and not ignored), committed, clean."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "copy")
    return dest


def git_status(repo: Path) -> str:
    return git(repo, "status", "--porcelain", "--untracked-files=all")


_CACHE = None


def shared_cache() -> str:
    """One WORKBENCH_CACHE for these tests, so the device peaks are measured once, not per test."""
    global _CACHE
    if _CACHE is None:
        _CACHE = tempfile.mkdtemp(prefix="workbench-test-cache-")
    os.environ["WORKBENCH_CACHE"] = _CACHE
    return _CACHE
