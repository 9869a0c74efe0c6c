"""Promotion writes a checked candidate into the package, all or nothing. Every test works on a fresh git
copy of this checkout, never on the checkout itself."""

import subprocess
import sys

import pytest
from helpers import CANDIDATES, git_status, repo_copy, shared_cache

from workbench import backends
from workbench.cli import main
from workbench.porting import PromotionError, promote
from workbench.store import ResultStore

FAST = dict(cases=["quick"], dtypes=["fp32"], bench_cases=["quick"], bench_dtypes=["fp32"], progress=False)


@pytest.fixture
def repo(tmp_path):
    return repo_copy(tmp_path / "repo")


@pytest.fixture(autouse=True)
def _cache(monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", shared_cache())


def test_failing_candidate_leaves_the_tree_clean(repo, tmp_path):
    with pytest.raises(PromotionError, match="correctness failed on 2 of 4 checks") as err:
        promote(CANDIDATES / "rms_norm_wrong.py", "rms_norm", root=repo, store=tmp_path / "s.db", **FAST)
    assert "nothing was written" in str(err.value) and "rel_err" in str(err.value)
    assert not err.value.promotion.written and err.value.promotion.check.check is not None
    assert git_status(repo) == ""
    assert not (tmp_path / "s.db").exists()


def test_variant_is_written_registered_and_baselined_then_guarded(repo, tmp_path, capsys):
    store = tmp_path / "s.db"
    backend = backends.active().name
    result = promote(CANDIDATES / "rms_norm_rows.py", "rms_norm", root=repo, store=store, **FAST)
    target = repo / "workbench" / "ops" / "variants" / f"rms_norm_{backend}.py"
    assert result.written and result.target == target and result.kind == "variant"
    assert git_status(repo) == f"?? workbench/ops/variants/rms_norm_{backend}.py\n"
    text = target.read_text()
    assert text.startswith((CANDIDATES / "rms_norm_rows.py").read_text().rstrip("\n"))
    assert f"_get_spec('rms_norm').variants['{backend}'] = rms_norm" in text
    baseline = ResultStore(store).history("baseline")
    assert set(baseline["impl"]) == {"native", backend} and set(baseline["op"]) == {"rms_norm"}

    # the target exists: refused before any work, nothing changes (here through the command line: exit 1)
    before = target.read_text()
    assert (
        main(
            [
                "promote",
                str(CANDIDATES / "rms_norm_rows.py"),
                "--op",
                "rms_norm",
                "--root",
                str(repo),
                "--store",
                str(store),
                "--no-progress",
            ]
        )
        == 1
    )
    assert f"workbench/ops/variants/rms_norm_{backend}.py exists" in capsys.readouterr().err
    assert (
        target.read_text() == before
        and git_status(repo) == f"?? workbench/ops/variants/rms_norm_{backend}.py\n"
    )

    # force replaces it and keeps a backup
    forced = promote(
        CANDIDATES / "rms_norm_rows.py", "rms_norm", root=repo, force=True, record_baseline=False, **FAST
    )
    assert forced.written and forced.backup is not None and forced.backup.read_text() == before


def test_new_op_module_is_picked_up_by_the_registry_tests(repo, tmp_path):
    result = promote(CANDIDATES / "logistic.py", "logistic", root=repo, store=tmp_path / "s.db", **FAST)
    assert result.kind == "op" and result.target == repo / "workbench" / "ops" / "logistic.py"
    assert "SPEC = _register(SPEC)" in result.target.read_text()
    collected = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_ops_correctness.py",
            "tests/test_registry.py",
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(repo)},
    )
    assert "test_op_matches_reference[logistic[generic]-quick-1000-fp32]" in collected.stdout, (
        collected.stdout[-2000:]
    )
    assert "test_declaration_is_complete[logistic]" in collected.stdout


def test_spec_for_a_registered_op_is_refused(repo, tmp_path):
    source = (CANDIDATES / "logistic.py").read_text().replace("logistic", "silu")
    (tmp_path / "silu.py").write_text(source)
    with pytest.raises(PromotionError, match="exists"):
        promote(tmp_path / "silu.py", "silu", root=repo, **FAST)
    assert git_status(repo) == ""
