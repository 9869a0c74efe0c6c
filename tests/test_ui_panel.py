"""The porting panel, built in plain Python and driven with button.click(): its logic and the state it
keeps (widgets outside a kernel render nothing, so assertions read the panel's attributes and the
values of its widgets)."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
from helpers import CANDIDATES, git, git_status, repo_copy, shared_cache  # noqa: E402

from workbench import backends  # noqa: E402

pytest.importorskip("ipywidgets", minversion="8")

from workbench.ui import PortingPanel  # noqa: E402

GOOD = (CANDIDATES / "rms_norm_rows.py").read_text()
WRONG = (CANDIDATES / "rms_norm_wrong.py").read_text()


@pytest.fixture(autouse=True)
def _cache(monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", shared_cache())


def test_backend_row_shows_the_bound_backend_and_why_others_are_off():
    panel = PortingPanel(source=GOOD, background=False)
    bound = backends.active().name
    assert (
        not panel.backend_buttons[bound].disabled and panel.backend_buttons[bound].button_style == "success"
    )
    for name, button in panel.backend_buttons.items():
        if name != bound:
            assert button.disabled and button.tooltip
            assert f"<b>{name}</b>: {button.tooltip}" in panel.backend_note.value
    assert "rms_norm" in panel.op.options and panel.dtypes == ["fp32"]


def test_check_then_profile_side_by_side():
    panel = PortingPanel(op="rms_norm", source=GOOD, dtypes=["fp32"], cases="quick", background=False)
    panel.check_button.click()
    assert panel.error is None, panel.error
    # rms_norm has a backward: each case's forward row, then its backward row (the op's custom operator
    # training with the candidate as its forward)
    assert list(panel.check_table["result"]) == ["pass"] * 4
    assert list(panel.check_table["direction"]) == ["forward", "backward"] * 2
    assert "8x64" in panel.check_html.value and "pass" in panel.check_html.value
    assert panel.progress.value == panel.progress.max == 2

    panel.profile_button.click()
    assert panel.error is None, panel.error
    table = panel.comparison
    for col in ("native ms", "current ms", "candidate ms", "candidate speedup", "candidate vs current"):
        assert col in table and table[col].notna().all(), col
    assert table["candidate correct"].all() and len(table) == 2
    assert "candidate ms" in panel.comparison_html.value
    assert set(panel.figures) == {"speedup 1", "latency rms norm", "roofline"}
    images = panel.figure_tabs.children
    assert len(images) == 3 and all(bytes(img.value[:4]) == b"\x89PNG" for img in images)
    assert [h["action"] for h in panel.history] == ["check", "profile"]
    assert all(h["status"] == "ok" for h in panel.history)
    scope = f"profile rms_norm · {backends.active().name} · quick · fp32 · peers inductor: <b>ok</b>"
    assert scope in panel.history_html.value
    assert "worker up in" in panel.status.value and "promoted" not in panel.comparison_html.value


def test_profile_shows_the_ticked_peers_as_columns_and_why_one_did_not_run():
    panel = PortingPanel(op="rms_norm", source=GOOD, dtypes=["fp32"], cases="quick", background=False)
    assert panel.peers == ["inductor"]  # the default: FlagGems may not be installed
    panel.peer_boxes["flaggems"].value = True
    panel.profile_button.click()
    assert panel.error is None, panel.error
    table = panel.comparison
    columns = list(table.columns)
    assert (
        columns.index("native ms")
        < columns.index("inductor ms")
        < columns.index("flaggems ms")
        < columns.index("current ms")
        < columns.index("candidate ms")
    )
    for col in ("native rel_err", "inductor ms", "inductor speedup", "inductor rel_err", "candidate rel_err"):
        assert table[col].notna().all(), col
    assert (table["inductor rel_err"] < 1e-5).all() and table["inductor correct"].all()
    assert (table["native rel_err"] < 1e-5).all()
    try:
        import flag_gems  # noqa: F401
    except ImportError:  # not installed: a reason in every cell, no crash, the other columns filled
        assert table["flaggems error"].str.contains("flag_gems is not installed").all()
        assert table["flaggems ms"].isna().all()
        assert "<b>flaggems</b> is not installed here" in panel.peer_note.value
        assert "flag_gems is not installed" in panel.comparison_html.value
    assert "peers inductor,flaggems" in panel.history_html.value

    panel.peer_boxes["inductor"].value = panel.peer_boxes["flaggems"].value = False
    panel.profile_button.click()
    assert not any(c.startswith(("inductor", "flaggems")) for c in panel.comparison.columns)
    with pytest.raises(ValueError, match="peers"):
        PortingPanel(op="rms_norm", peers=["tvm"], background=False)


def test_a_failed_run_marks_the_earlier_tables_stale():
    panel = PortingPanel(op="rms_norm", source=GOOD, background=False)
    panel.check_button.click()
    assert not panel.stale["check"] and "STALE" not in panel.check_note.value
    assert "from the check at" in panel.check_note.value
    panel.source.value = GOOD.replace("def rms_norm(", "def rms_norm(:")  # a syntax error: no new table
    panel.check_button.click()
    assert panel.history[-1]["status"] == "error" and "SyntaxError" in panel.error["summary"]
    assert "the panel's editor" in panel.error["summary"]  # not the worker's file name
    assert panel.stale["check"] and "STALE" in panel.check_note.value
    assert "wb-stale" in panel.check_html._dom_classes
    panel.source.value = GOOD
    panel.check_button.click()  # the same candidate as the table's, checked again: fresh
    assert not panel.stale["check"] and "wb-stale" not in panel.check_html._dom_classes


def test_candidate_cell_magic_feeds_the_panel_and_tracebacks_name_the_cell(monkeypatch):
    from workbench.ui import magics

    panel = PortingPanel(op="silu", background=False)
    body = "import torch\n\n\ndef rms_norm(x, weight=None, eps=1e-6):\n    raise RuntimeError('boom')\n"
    magics.candidate("rms_norm", body)
    assert (
        panel.op.value == "rms_norm"
        and panel.source.value == body
        and "%%candidate rms_norm" in panel.candidate_note.value
    )
    panel.check_button.click()
    trace = panel.error["traceback"]
    # the raise is on line 5 of the cell body, i.e. line 6 of the cell (the magic's line is line 1)
    assert 'File "the candidate cell", line 6, in rms_norm' in trace, trace
    assert str(panel.workdir) not in trace
    panel.source.value = body + "# edited in the panel\n"
    assert "the editor (changed since the candidate cell" in panel.candidate_note.value


def test_picking_an_op_offers_its_current_kernel():
    panel = PortingPanel(op="rms_norm", background=False)
    assert panel.source.value == ""  # nothing offered until asked or the op changes
    panel.op.value = "silu"
    assert "def silu(" in panel.source.value and "SPEC" not in panel.source.value
    assert "from ." not in panel.source.value  # a candidate imports absolute names only
    panel.source.value += "\n# my edit\n"
    panel.op.value = "softmax"  # work of the user's own is never replaced
    assert "my edit" in panel.source.value


def test_failures_are_readable_and_earlier_results_stay():
    panel = PortingPanel(op="rms_norm", source=WRONG, background=True)
    panel.check_button.click()
    assert panel.busy and panel.check_button.disabled  # the caller is free while the worker runs
    panel.profile_button.click()  # ignored while busy, with a message
    assert "busy" in panel.status.value
    panel.wait(120)
    assert not panel.busy and [h["action"] for h in panel.history] == ["check"]
    assert panel.error["status"] == "failed" and "rel_err" in panel.error["summary"]
    shown = panel.check_html.value
    forward = panel.check_table[panel.check_table["direction"] == "forward"]
    assert len(forward) == 2 and (forward["result"] == "FAIL").all() and "FAIL" in shown

    panel.source.value = "def rms_norm(x, weight=None, eps=1e-6):\n    raise RuntimeError('boom')\n"
    panel.check_button.click()
    panel.wait(120)
    assert panel.error["status"] == "failed" and "RuntimeError: boom" in panel.error["summary"]
    assert "Traceback" in panel.error["traceback"] and "boom" in panel.traceback_html.value
    assert panel.traceback_fold.selected_index is None  # folded until opened
    assert "RuntimeError: boom" in panel.error_html.value
    assert panel.history[0]["result"].check is not None  # the first run is kept
    assert not panel.check_button.disabled  # usable again


def test_promote_refusal_is_shown_and_writes_nothing(tmp_path):
    repo = repo_copy(tmp_path / "repo")
    target = repo / "workbench" / "ops" / "variants" / f"rms_norm_{backends.active().name}.py"
    target.write_text((CANDIDATES / "rms_norm_rows.py").read_text())
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a promoted variant")
    panel = PortingPanel(op="rms_norm", source=GOOD, background=False, promote_root=repo)
    panel.promote_button.click()
    assert panel.error["status"] == "refused" and "exists" in panel.error["summary"]
    assert "refused" in panel.promotion_html.value and not panel.promotion.written
    assert git_status(repo) == ""


def test_missing_source_is_an_error_not_a_crash():
    panel = PortingPanel(op="rms_norm", background=False)
    panel.promote_button.click()
    assert panel.error["status"] == "error" and "source: expected" in panel.error["summary"]


def test_model_runs_the_candidate_inside_a_whole_model_and_says_what_it_served():
    panel = PortingPanel(op="rms_norm", source=GOOD, background=False)
    assert panel.model_preset.value == "tiny" and panel.execution.value in ("compile", "eager")
    panel.execution.value = "compile"  # the model's RMSNorm is a chain of ATen ops: a pattern makes it ours
    panel.model_button.click()
    result = panel.model_result
    assert result.ok, (result.summary, result.traceback)
    metrics = dict(zip(result.model["metric"], result.model["value"]))
    assert {"prefill_ratio", "logits_rel_err"} <= set(metrics) and metrics["logits_rel_err"] < 2e-2
    served = result.coverage.set_index("aten_op")
    assert served["handled"].sum() > 0 and set(served["op"]) == {"rms_norm"}
    assert "tiny (compile) with the candidate as rms_norm" in panel.model_html.value
    assert panel.history[-1]["action"] == "model" and panel.history[-1]["status"] == "ok"


def test_model_with_an_op_the_model_never_calls_says_so():
    panel = PortingPanel(op="gelu", background=False)  # Qwen3 uses silu
    panel.load_template()
    panel.execution.value = "eager"
    panel.model_button.click()
    assert panel.model_result.status == "error"
    assert "made no call that op 'gelu' takes" in panel.model_result.summary
