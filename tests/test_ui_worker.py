"""Candidate kernels run in a worker process: results come back, and crashes, hangs and memory
exhaustion are reported while this process (the caller) carries on."""

import os
import textwrap

import pandas as pd
import pytest

from workbench.porting import candidate, worker


def _write(tmp_path, body: str, name: str = "cand.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_abort_is_reported_as_a_crash(tmp_path):
    path = _write(
        tmp_path,
        """
        import os

        def rms_norm(x, weight=None, eps=1e-6):
            os.abort()  # what a fatal error in a native library looks like from outside
        """,
    )
    result = worker.run("check", path, "rms_norm", cases=["quick"], dtypes=["fp32"], progress=False)
    assert result.status == "crashed"
    assert "SIGABRT" in result.summary and result.returncode < 0


def test_hang_is_killed_at_the_timeout(tmp_path):
    path = _write(
        tmp_path,
        """
        import os, time

        with open(os.path.join(os.path.dirname(__file__), "pid"), "w") as f:
            f.write(str(os.getpid()))

        def rms_norm(x, weight=None, eps=1e-6):
            while True:
                time.sleep(1)
        """,
    )
    result = worker.run(
        "check", path, "rms_norm", cases=["quick"], dtypes=["fp32"], timeout=5, progress=False
    )
    assert result.status == "timeout" and "timed out after 5 s" in result.summary
    if (tmp_path / "pid").exists():  # the worker got as far as loading the candidate: it must be gone
        assert not _alive(int((tmp_path / "pid").read_text()))


def test_memory_exhaustion_is_reported(tmp_path):
    path = _write(
        tmp_path,
        """
        import torch

        def rms_norm(x, weight=None, eps=1e-6):
            hoard = []
            while True:
                hoard.append(torch.empty(256 << 20, dtype=torch.uint8))
        """,
    )
    result = worker.run(
        "check", path, "rms_norm", cases=["quick"], dtypes=["fp32"], memory_limit=2 << 30, progress=False
    )
    assert result.status == "oom", (result.status, result.summary)
    assert "out of memory" in result.summary and "can't allocate memory" in result.summary


def test_load_errors_are_short_and_keep_the_traceback(tmp_path):
    path = _write(tmp_path, "def rms_norm(x, weight=None, eps=1e-6)\n    return x\n")
    result = worker.run("check", path, "rms_norm", progress=False)
    assert result.status == "error"
    assert result.summary.startswith("SyntaxError") and "line 1" in result.summary
    assert "Traceback" in result.traceback


def test_device_context_loss_in_rows_counts_as_a_crash():
    rows = pd.DataFrame(
        [
            {"case": "a", "dtype": "bf16", "error": ""},
            {
                "case": "b",
                "dtype": "bf16",
                "error": "RuntimeError: CUDA error: an illegal memory access was encountered",
            },
        ]
    )
    status, summary = worker.classify_rows(rows)
    assert status == "crashed" and "device context was lost" in summary and "b bf16" in summary


def test_candidate_format_is_enforced(tmp_path):
    with pytest.raises(candidate.CandidateError, match="expected a function named 'rms_norm'"):
        candidate.load(_write(tmp_path, "def norm(x):\n    return x\n"), "rms_norm")
    with pytest.raises(candidate.CandidateError, match="registered signature"):
        candidate.load(_write(tmp_path, "def rms_norm(x, w=None):\n    return x\n", "b.py"), "rms_norm")
    with pytest.raises(candidate.CandidateError, match="must declare"):
        candidate.load(_write(tmp_path, "def not_an_op(x):\n    return x\n", "c.py"), "not_an_op")
    with pytest.raises(candidate.CandidateError, match="reserved"):
        candidate.check_op_name("spec")
