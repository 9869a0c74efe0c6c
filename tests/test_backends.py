"""Backend selection, clear errors for unavailable backends, and one kernel mode per process."""

import os
import subprocess
import sys

import pytest

from workbench import backends
from workbench.backends import BackendUnavailable


def test_get_unknown_backend():
    with pytest.raises(ValueError, match=r"unknown backend 'tpu'; expected one of \['cpu', 'cuda', 'mlu'\]"):
        backends.get("tpu")


def test_unavailable_backends_say_what_is_missing():
    for name in ("cuda", "mlu"):
        b = backends.get(name)
        if b.is_available():
            continue
        with pytest.raises(BackendUnavailable, match=f"backend '{name}' is not available: .+"):
            b.require()
    if not backends.get("mlu").is_available():
        assert "torch_mlu" in backends.get("mlu").missing()


def test_detect_honours_the_environment(monkeypatch):
    monkeypatch.setenv("WORKBENCH_BACKEND", "cpu")
    assert backends.detect().name == "cpu"
    monkeypatch.setenv("WORKBENCH_BACKEND", "nope")
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        backends.detect()


def test_backend_cannot_change_once_kernels_exist():
    current = backends.active()
    other = "cuda" if current.name != "cuda" else "cpu"
    with pytest.raises(BackendUnavailable, match=f"bound to backend '{current.name}'"):
        backends.active(other)
    assert backends.active(current.name) is current


def _run(code, **env):
    full_env = {k: v for k, v in os.environ.items() if k not in ("WORKBENCH_BACKEND", "TRITON_INTERPRET")}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], env=full_env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.skipif(not backends.active().interpreted, reason="checks the interpreter guard")
def test_triton_imported_first_in_another_mode_is_refused():
    result = _run("import triton.language\nimport workbench.ops", WORKBENCH_BACKEND="cpu")
    assert result.returncode != 0
    assert "triton was imported in compiled mode before workbench chose backend 'cpu'" in result.stderr


def test_interpreter_flag_follows_the_backend():
    result = _run("import os, workbench.ops\nprint(os.environ['TRITON_INTERPRET'])", WORKBENCH_BACKEND="cpu")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"


def test_interpret_flag_with_a_compiling_backend_is_refused():
    result = _run("import workbench.ops", WORKBENCH_BACKEND="cuda", TRITON_INTERPRET="1")
    assert result.returncode != 0
    assert "TRITON_INTERPRET=1" in result.stderr or "not available" in result.stderr


def test_launch_policy_grid():
    policy = backends.LaunchPolicy(max_programs=48, num_warps=(1, 4))
    assert policy.grid(10) == 10
    assert policy.grid(1000) == 48
    assert policy.grid(1000, num_warps=4) == 12
    assert backends.LaunchPolicy().grid(10**6) == 10**6
