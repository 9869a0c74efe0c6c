"""The notebooks: committed without outputs, and each executes headless on this backend with small
parameters (papermill, kernel "python3"); `workbench regress` runs the regression notebook."""

import json
import subprocess
from pathlib import Path

import nbformat
import pytest
from helpers import CANDIDATES, REPO, shared_cache

from workbench.cli import main

pm = pytest.importorskip("papermill")

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_CACHE", shared_cache())
    monkeypatch.setenv("WORKBENCH_STORE", str(tmp_path / "store.db"))  # never the repo's out/
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the kernel imports this checkout


def _committed(path: Path) -> str:
    """The notebook as git stores it (the index: what a commit takes), else the file itself."""
    shown = subprocess.run(
        ["git", "-C", str(REPO), "show", f":{path.relative_to(REPO)}"], capture_output=True, text=True
    )
    return shown.stdout if shown.returncode == 0 else path.read_text()


def test_notebooks_pass_through_nbstripout():
    attrs = subprocess.run(
        ["git", "-C", str(REPO), "check-attr", "filter", "notebooks/port_kernel.ipynb"],
        capture_output=True,
        text=True,
    )
    if attrs.returncode != 0:
        pytest.skip("not a git checkout")
    assert attrs.stdout.strip().endswith("filter: nbstripout")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    nb = nbformat.reads(_committed(path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{path.name}: strip outputs before committing"
            )


def test_port_kernel_holds_the_tested_candidate():
    nb = nbformat.read(REPO / "notebooks" / "port_kernel.ipynb", as_version=4)
    candidate_cell = next(c.source for c in nb.cells if c.source.startswith("%%candidate "))
    assert candidate_cell == "%%candidate rms_norm\n" + (CANDIDATES / "rms_norm_rows.py").read_text().rstrip(
        "\n"
    )


def test_port_kernel_runs_headless(tmp_path):
    """Headless it builds the panel; the buttons are pressed in test_ui_panel.py and test_browser.py."""
    out = tmp_path / "port_kernel.ipynb"
    pm.execute_notebook(
        str(REPO / "notebooks" / "port_kernel.ipynb"),
        str(out),
        kernel_name="python3",
        execution_timeout=300,
        cwd=str(tmp_path),
        progress_bar=False,
    )
    cells = nbformat.read(out, as_version=4).cells
    text = json.dumps([c.get("outputs", []) for c in cells])
    assert "application/vnd.jupyter.widget-view+json" in text  # the panel was displayed
    assert "not promoted yet" in text
    number = next(c.execution_count for c in cells if c.source.startswith("%%candidate"))
    assert f"candidate for rms_norm: cell In[{number}]" in text  # the cell fed the panel, named as shown


def test_regress_passes_and_writes_its_report(tmp_path, capfd):
    out = tmp_path / "out"
    argv = [
        "regress",
        "silu",
        "--check-cases",
        "quick",
        "--check-dtype",
        "fp32",
        "--rep-ms",
        "2",
        "--out",
        str(out),
        "--store",
        str(tmp_path / "r.db"),
        "--peers",
        "flaggems",
    ]
    assert main(argv) == 0, capfd.readouterr()
    printed, err = capfd.readouterr()  # the file descriptors: the kernel process writes to them too
    assert "regress: PASS" in printed
    assert "check" in err and "silu" in err and "cell" not in err  # progress names the op, not cells
    assert "encryption" not in err and "WARNING" not in err  # the kernel's start-up warning stays out
    for name in (
        "regression.ipynb",
        "report.html",
        "summary.json",
        "plots/speedup_1.png",
        "plots/latency_silu.png",
    ):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "PASS" and summary["runs"]["baseline"]  # the first run seeds the baseline
    page = (out / "report.html").read_text()
    assert "Headline" in page and "Side by side" in page and "base64" not in page
    assert "Beside the peers" in page and summary["config"]["peers"] == ["flaggems"]  # shown, not judged

    # a failing notebook (here: a baseline run id the store lacks) exits 1 and leaves no stale summary
    assert main(argv + ["--baseline", "no-such-run"]) == 1
    assert "ValueError: baseline" in capfd.readouterr().err and not (out / "summary.json").exists()
