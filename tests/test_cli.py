"""The `workbench` command line."""

import pytest

from workbench import backends
from workbench.cli import main
from workbench.ops import REGISTRY


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "rms_norm" in out and "mlu" in out and f"active: {backends.active().name}" in out


def test_check_passes(capsys, tmp_path):
    csv = tmp_path / "check.csv"
    assert main(["check", "silu", "softmax", "--cases", "quick", "--dtype", "fp32,bf16", "--no-progress",
                 "--csv", str(csv)]) == 0
    out = capsys.readouterr().out
    assert "8 passed, 0 failed" in out
    assert csv.read_text().count("\n") == 9


def test_check_exits_1_on_failure(capsys, monkeypatch):
    monkeypatch.setitem(REGISTRY["exp"].variants, backends.active().name, lambda x: x)
    assert main(["check", "exp", "--cases", "quick", "--dtype", "fp32", "--no-progress"]) == 1


@pytest.mark.parametrize("argv", [["check", "nope"], ["check", "add", "--dtype", "int8"]])
def test_check_bad_arguments_exit_2(argv, capsys):
    assert main(argv + ["--no-progress"]) == 2
    assert "workbench: error:" in capsys.readouterr().err
