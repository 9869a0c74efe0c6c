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
    assert (
        main(
            [
                "check",
                "silu",
                "softmax",
                "--cases",
                "quick",
                "--dtype",
                "fp32,bf16",
                "--no-progress",
                "--csv",
                str(csv),
            ]
        )
        == 0
    )
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


def test_version_and_every_subcommand_has_a_description_and_an_example(capsys):
    from workbench import __version__
    from workbench.cli import build_parser

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"workbench {__version__}"
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert set(commands) >= {"list", "check", "bench", "model", "regress", "promote", "comm-bench"}
    for name, sub in commands.items():
        text = sub.format_help()
        assert sub.description and "examples:\n  " in text, name
        assert f"workbench {name}" in sub.epilog or "workbench.cli " + name in sub.epilog, name


def test_backend_choices_are_the_registered_backends():
    from workbench.cli import BACKEND_NAMES

    assert BACKEND_NAMES == tuple(backends.BACKENDS)


def test_multi_value_options_do_not_swallow_op_names():
    from workbench.cli import build_parser

    args = build_parser().parse_args(
        ["check", "--cases", "quick", "rms_norm", "--dtype", "fp32,bf16", "silu"]
    )
    assert args.ops == ["rms_norm", "silu"] and args.cases == ["quick"] and args.dtype == ["fp32", "bf16"]


def test_list_fits_100_columns(capsys):
    assert main(["list"]) == 0
    assert max(len(line) for line in capsys.readouterr().out.splitlines()) <= 100


def test_bench_on_the_interpreter_says_its_defaults(capsys, tmp_path):
    if not backends.active().interpreted:
        pytest.skip("the defaults said on stderr are the interpreter's")
    store = tmp_path / "s.db"
    assert main(["bench", "neg", "--no-progress", "--rep-ms", "1", "--store", str(store)]) == 0
    err = capsys.readouterr().err
    assert "--cases quick" in err and "--dtype fp32" in err and "--rep-ms" not in err
    from workbench.store import ResultStore

    assert len(ResultStore(store).runs("bench")) == 1  # one run for all ops


def _corrupt(tmp_path):
    bad = tmp_path / "corrupt.db"
    bad.write_text("not sqlite at all " * 10)
    return bad


@pytest.mark.parametrize(
    "argv, named",
    [
        (lambda t: ["bench", "neg", "--store", str(_corrupt(t))], "--store"),
        (lambda t: ["check", "neg", "--csv", str(t / "missing" / "x.csv")], "--csv"),
        (lambda t: ["check", "neg", "--csv", str(t)], "--csv"),
        (lambda t: ["bench", "neg", "--plot", str(_corrupt(t) / "plots")], "--plot"),
        (lambda t: ["regress", "--out", str(_corrupt(t))], "--out"),
        (lambda t: ["regress", "--notebook", str(t / "none.ipynb")], "--notebook"),
        (lambda t: ["promote", str(t / "none.py"), "--op", "neg"], "candidate file"),
        (lambda t: ["promote", str(_corrupt(t)), "--op", "neg", "--root", str(t)], "--root"),
    ],
)
def test_bad_paths_fail_on_one_line_before_the_run(argv, named, tmp_path, capsys, monkeypatch):
    import workbench.cli as cli

    for name in ("cmd_check", "cmd_bench", "cmd_regress", "cmd_promote"):  # nothing may start
        monkeypatch.setattr(cli, name, lambda args: pytest.fail("the run started"))
    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    for sub in parser._subparsers._group_actions[0].choices.values():
        sub.set_defaults(func=lambda args: pytest.fail("the run started"))
    assert main(argv(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"workbench: error: {named} "), err


def test_model_strict_exits_1_on_a_missed_target(monkeypatch, capsys):
    import pandas as pd

    import workbench.cli as cli
    from workbench import models

    class Run:
        accuracy = profile = pd.DataFrame({"metric": ["x"]})

        def ratios(self):
            return pd.DataFrame({"phase": ["prefill"]})

        def ops_served(self):
            return []

        def summary(self):
            return pd.DataFrame({"metric": ["prefill_ratio", "logits_rel_err"], "met": [False, True]})

    monkeypatch.setattr(models, "run_model", lambda *a, **k: Run())
    assert cli.main(["model", "--preset", "tiny"]) == 0
    assert "targets missed: prefill_ratio" in capsys.readouterr().out
    assert cli.main(["model", "--preset", "tiny", "--strict"]) == 1
