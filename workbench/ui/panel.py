"""The porting panel (ipywidgets 8): pick an op, write a candidate kernel,
Check / Profile / Model / Promote it.

The candidate comes from a notebook cell (`%%candidate OP`, see `workbench.ui.magics`), from the
panel's text area (a fallback; picking an op fills it with the op's current kernel as a template) or
from a file. "current" is the op's kernel in the package now; "promoted" only names what Promote wrote.

Profile also times the peers ticked in the panel (torch.compile of the native op, FlagGems) on the same
inputs with the same timer: their columns say ms, speedup, error against float64, or why they did not run.
Model runs a whole model (a preset with seeded random weights) natively and with the candidate as the op's
implementation, compiled with the workbench backend or eagerly under `use_ops`: throughput ratios, logits
error, token agreement, and the op's ATen calls or graph nodes, served or left native with the reason.

The panel holds no logic of its own: each button calls a package function (`worker.run` for Check,
Profile and Model, `promotion.promote` for Promote, `views` for tables and figures) and keeps what it
returned in attributes (`check_result`, `check_table`, `profile_result`, `comparison`, `figures`,
`model_result`, `promotion`, `error`, `history`) that tests and notebook cells can read.

Runs happen in a background thread (``background=True``, the default), so the notebook kernel stays
free while a worker process checks or profiles the candidate; `wait()` blocks until the current run
is over. Widgets are updated by setting their values (HTML strings, PNG bytes), which works from
that thread. A new result replaces the table of its own kind only; errors go to their own area, so
results already shown are never lost, and every run is kept in `history`. A table that no longer
belongs to the candidate (the last run of its kind failed, or another candidate ran since) is marked
stale and dimmed.
"""

from __future__ import annotations

import datetime
import hashlib
import html
import importlib.util
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Callable, Iterable

import ipywidgets as widgets

from workbench import backends
from workbench.models.presets import PRESETS
from workbench.models.side import EXECUTIONS, default_execution
from workbench.ops import spec as opspec
from workbench.porting import candidate as candidate_format
from workbench.porting import worker
from workbench.porting.promotion import PromotionError, promote
from workbench.profiling.bench import PEERS, check_peers
from workbench.reports import views

from . import magics

DTYPES = ("fp32", "fp16", "bf16")
# What each peer is, and the module it needs (None: torch alone).
PEER_LABELS = {
    "inductor": ("torch.compile of the native op", None),
    "flaggems": ("FlagGems under flag_gems.use_gems()", "flag_gems"),
}


class PortingPanel:
    """Widgets for porting one op; display it with `panel.widget` (or just `panel` as a cell's value)."""

    def __init__(
        self,
        op: str = "rms_norm",
        source: str | None = None,
        file: str | Path | None = None,
        cases: str = "quick",
        dtypes: Iterable[str] = ("fp32",),
        timeout: float = 300.0,
        background: bool = True,
        promote_root: str | Path | None = None,
        store=None,
        workdir: str | Path | None = None,
        peers: Iterable[str] = ("inductor",),
    ):
        """op: a registered op, or a new op's name (its candidate then declares SPEC).
        source / file: the candidate's source text (e.g. a notebook cell's string) or a file path.
        promote_root: the tree Promote writes into (default: the imported workbench package's).
        store: the ResultStore (or path) for the promotion baseline (default: the regression store).
        peers: the peers Profile times beside native at first (`workbench.profiling.bench.PEERS`; FlagGems
          is an optional extra, so it is off by default).
        """
        self.backend = backends.active()
        self.background = background
        self.promote_root = promote_root
        self.store = store
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="workbench-panel-"))
        self.check_result: worker.RunResult | None = None
        self.check_table = None
        self.profile_result: worker.RunResult | None = None
        self.comparison = None
        self.figures: dict = {}  # name -> matplotlib Figure of the last profile
        self.model_result: worker.RunResult | None = None
        self.promotion = None
        self.error: dict | None = None  # {"action", "status", "summary", "traceback"} of the last failure
        self.history: list[dict] = []
        self.cell: magics.CellCandidate | None = None  # the %%candidate cell that fed the editor last
        self.stale = {
            "check": False,
            "profile": False,
            "model": False,
        }  # tables shown that no longer fit the candidate
        self._made_from: dict[str, str] = {}  # table kind -> digest of the candidate it was made from
        self._file_labels: dict[str, str] = {}  # worker file path -> the name tracebacks should show
        self._template = ""
        self._thread: threading.Thread | None = None
        self._build(op, cases, dtypes, timeout, check_peers(peers))
        if file is not None:
            self.file.value = str(file)
            self.load_file()
        elif source is not None:
            self.source.value = source
        magics.attach(self)
        magics.register()

    # ---- layout ------------------------------------------------------------------------------------

    def _build(self, op, cases, dtypes, timeout, peers) -> None:
        w = widgets
        self.op = w.Combobox(
            value=op,
            options=sorted(opspec.REGISTRY),
            ensure_option=False,
            description="op",
            placeholder="registered op or a new name",
        )
        self.backend_buttons = {}
        reasons = []
        for name, b in backends.BACKENDS.items():
            if name == self.backend.name:
                why = "this process is bound to it"
            else:
                missing = b.missing()
                why = missing or (
                    f"available, but this process is bound to {self.backend.name!r}: "
                    f"start the kernel with WORKBENCH_BACKEND={name}"
                )
                reasons.append(f"<b>{name}</b>: {why}")
            self.backend_buttons[name] = w.Button(
                description=name,
                disabled=name != self.backend.name,
                tooltip=why,
                button_style="success" if name == self.backend.name else "",
                layout=w.Layout(width="80px"),
            )
        self.backend_note = w.HTML("<small>" + "; ".join(reasons) + "</small>")
        self.dtype_boxes = {
            d: w.Checkbox(value=d in dtypes, description=d, indent=False, layout=w.Layout(width="70px"))
            for d in DTYPES
        }
        self.peer_boxes, missing = {}, []
        for name in PEERS:
            what, module = PEER_LABELS[name]
            if module is not None and importlib.util.find_spec(module) is None:
                what += " (not installed here: pip install 'workbench[peers]')"
                missing.append(name)
            self.peer_boxes[name] = w.Checkbox(
                value=name in peers,
                description=name,
                indent=False,
                tooltip=what,
                layout=w.Layout(width="90px"),
            )
        self.peer_note = w.HTML(
            "<small>Profile also times the ticked peers on the same inputs"
            + "".join(f"; <b>{n}</b> is not installed here, its cells will say so" for n in missing)
            + "</small>"
        )
        self.cases = w.ToggleButtons(options=list(opspec.CASE_SETS), value=cases, description="cases")
        self.source = w.Textarea(
            placeholder="candidate source: the op's wrapper (named after the op), its "
            "kernels, and SPEC = OpSpec(...) for a new op",
            layout=w.Layout(width="100%", height="260px"),
        )
        self.source.add_class("wb-code")
        self.file = w.Text(
            description="file", placeholder="or a candidate .py file", layout=w.Layout(width="60%")
        )
        self.load_button = w.Button(description="Load file")
        self.template_button = w.Button(
            description="Current kernel",
            icon="file-code-o",
            tooltip="put the op's current kernel in the editor as a template",
        )
        self.candidate_note = w.HTML(
            "<small>candidate: the editor below, or a cell starting with <code>%%candidate OP</code></small>"
        )
        self.timeout = w.BoundedFloatText(
            value=timeout, min=1, max=86400, description="timeout s", layout=w.Layout(width="180px")
        )
        self.force = w.Checkbox(value=False, description="force (replace, keep a backup)", indent=False)
        self.check_button = w.Button(description="Check", button_style="primary", icon="check")
        self.profile_button = w.Button(description="Profile", button_style="info", icon="tachometer")
        self.promote_button = w.Button(description="Promote", button_style="warning", icon="upload")
        self.model_button = w.Button(
            description="Model",
            button_style="info",
            icon="cubes",
            tooltip="run a whole model natively and with the candidate as the op",
        )
        self.model_preset = w.Dropdown(
            options=sorted(PRESETS), value="tiny", description="model", layout=w.Layout(width="220px")
        )
        self.execution = w.ToggleButtons(
            options=list(EXECUTIONS),
            value=default_execution(self.backend),
            description="execution",
            tooltips=["torch.compile with the workbench backend", "use_ops"],
        )
        self.status = w.HTML("ready")
        self.progress = w.IntProgress(value=0, min=0, max=1, description="", layout=w.Layout(width="50%"))
        self.progress_label = w.Label("")
        self.check_note = w.HTML()
        self.check_html = w.HTML()
        self.comparison_note = w.HTML()
        self.comparison_html = w.HTML()
        self.figure_tabs = w.Tab()
        self.model_note = w.HTML()
        self.model_html = w.HTML()
        self.promotion_html = w.HTML()
        self.error_html = w.HTML()
        self.traceback_html = w.HTML()
        self.traceback_fold = w.Accordion(
            children=[self.traceback_html],
            titles=("full traceback",),
            selected_index=None,
            layout=w.Layout(display="none"),
        )
        self.history_html = w.HTML()

        self.load_button.on_click(lambda _: self.load_file())
        self.template_button.on_click(lambda _: self.load_template())
        self.op.observe(self._op_changed, names="value")
        self.source.observe(self._source_changed, names="value")
        self.check_button.on_click(lambda _: self.check())
        self.profile_button.on_click(lambda _: self.profile())
        self.promote_button.on_click(lambda _: self.promote())
        self.model_button.on_click(lambda _: self.model())

        def section(title, *children):
            return w.VBox([w.HTML(f"<h4 style='margin:6px 0 2px'>{title}</h4>"), *children])

        css = w.HTML(
            "<style>.wb-code textarea{font-family:monospace;font-size:12px}.wb-stale{opacity:.45}</style>"
        )
        self.widget = w.VBox(
            [
                css,
                w.HBox([self.op, w.Label("backend"), *self.backend_buttons.values()]),
                self.backend_note,
                w.HBox([w.Label("dtypes"), *self.dtype_boxes.values(), self.cases]),
                w.HBox([w.Label("peers"), *self.peer_boxes.values(), self.peer_note]),
                self.candidate_note,
                self.source,
                w.HBox([self.file, self.load_button, self.template_button]),
                w.HBox(
                    [
                        self.check_button,
                        self.profile_button,
                        self.model_button,
                        self.promote_button,
                        self.force,
                        self.timeout,
                    ]
                ),
                w.HBox([self.model_preset, self.execution]),
                w.HBox([self.status]),
                w.HBox([self.progress, self.progress_label]),
                self.error_html,
                self.traceback_fold,
                section("Correctness", self.check_note, self.check_html),
                section("Side by side", self.comparison_note, self.comparison_html),
                section("Figures", self.figure_tabs),
                section("Whole model", self.model_note, self.model_html),
                section("Promotion", self.promotion_html),
                section("History", self.history_html),
            ]
        )

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    # ---- inputs ------------------------------------------------------------------------------------

    @property
    def dtypes(self) -> list[str]:
        return [d for d, box in self.dtype_boxes.items() if box.value]

    @property
    def peers(self) -> list[str]:
        """The peers Profile times beside native."""
        return [p for p, box in self.peer_boxes.items() if box.value]

    def load_file(self) -> None:
        path = Path(self.file.value).expanduser()
        if not path.is_file():
            self._show_error(
                "load", "error", f"file: expected a candidate .py file, got {str(path)!r} (not found)"
            )
            return
        self.source.value = path.read_text()
        self.candidate_note.value = f"<small>candidate: file <code>{path}</code></small>"

    def load_template(self) -> None:
        """Put the op's current kernel (the module the package runs on this backend) in the editor."""
        op = self.op.value
        if op not in opspec.REGISTRY:
            self.candidate_note.value = (
                f"<small>{op!r} is a new op: write its wrapper and <code>SPEC = OpSpec(...)</code></small>"
            )
            return
        self._template = candidate_format.template(op, self.backend.name)
        self.source.value = self._template
        self.candidate_note.value = (
            f"<small>candidate: the editor, holding the current {op} on "
            f"{self.backend.name} as a template</small>"
        )

    def _op_changed(self, change) -> None:
        """A new op: offer its current kernel, unless the editor holds work of the user's own."""
        if not self.source.value.strip() or self.source.value == self._template:
            self.load_template()

    def _source_changed(self, change) -> None:
        if self.cell is not None and change["new"] != self.cell.source and change["old"] == self.cell.source:
            self.candidate_note.value = (
                f"<small>candidate: the editor (changed since {self.cell.label}; run "
                "that cell again to take it back)</small>"
            )

    def use_cell(self, cell: magics.CellCandidate) -> None:
        """Take a `%%candidate` cell as the candidate (called by the magic)."""
        self.cell = cell
        if self.op.value != cell.op:
            self.op.value = cell.op
        self.source.value = cell.source
        self.candidate_note.value = (
            f"<small>candidate: <b>{cell.label}</b> "
            f"({cell.source.count(chr(10)) + 1} lines, <code>%%candidate {cell.op}</code>)"
            "</small>"
        )

    def candidate_file(self) -> Path:
        """The file the worker loads: the chosen file if the editor still holds its text, else a copy
        (for a %%candidate cell, one whose line numbers are the cell's)."""
        if self.file.value:
            path = Path(self.file.value).expanduser()
            if path.is_file() and path.read_text() == self.source.value:
                return path
        if not self.source.value.strip():
            raise ValueError(
                "source: expected the candidate's source (a %%candidate cell, the editor, "
                "pass source=..., or load a file)"
            )
        op = self.op.value or "candidate"
        if self.cell is not None and self.cell.op == op and self.cell.source == self.source.value:
            path = self.workdir / f"{op}_cell.py"
            path.write_text(self.cell.file_text())
            self._file_labels[str(path)] = self.cell.label
        else:
            path = self.workdir / f"{op}_candidate.py"
            path.write_text(self.source.value)
            self._file_labels[str(path)] = "the panel's editor"
        return path

    def _digest(self) -> str:
        return hashlib.sha1(f"{self.op.value}\0{self.source.value}".encode()).hexdigest()

    def _scope(self, action: str) -> str:
        if action == "promote":  # promotion checks a fixed scope, whatever the panel's choice
            return f"{self.op.value} · {self.backend.name} · quick,edge · every dtype"
        if action == "model":
            return (
                f"{self.op.value} · {self.backend.name} · {self.model_preset.value} · {self.execution.value}"
            )
        scope = f"{self.op.value} · {self.backend.name} · {self.cases.value} · {','.join(self.dtypes) or '-'}"
        return scope + (f" · peers {','.join(self.peers)}" if action == "profile" and self.peers else "")

    # ---- actions -----------------------------------------------------------------------------------

    def check(self) -> None:
        """Correctness of the candidate on the chosen cases and dtypes, in a worker process."""
        self._start("check", self._do_check)

    def profile(self) -> None:
        """Native, the ticked peers, the op's current kernel and the candidate side by side, in a worker
        process."""
        self._start("profile", self._do_profile)

    def model(self) -> None:
        """A whole model natively and with the candidate as the op (the preset and execution chosen), in a
        worker process."""
        self._start("model", self._do_model)

    def promote(self) -> None:
        """Check the candidate on quick + edge cases and every dtype, then write it into the package."""
        self._start("promote", self._do_promote)

    def wait(self, timeout: float | None = None) -> None:
        """Block until the run in progress (if any) is over."""
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _start(self, action: str, fn: Callable[[], None]) -> None:
        if self.busy:
            self.status.value = f"<b>busy</b>: wait for the current run to finish before {action}"
            return
        self.status.value = f"<b>{action}</b>: starting worker…"
        self.error_html.value, self.traceback_fold.layout.display = "", "none"
        for b in self._buttons():
            b.disabled = True
        self.progress.value, self.progress_label.value = 0, ""
        self.error = None
        self._action, self._started, self._worker_up = action, time.monotonic(), None
        scope, digest = self._scope(action), self._digest()
        self._run_id = len(self.history)  # the history index this run's entry will have

        def body():
            try:
                fn()  # records its outcome in history
            except Exception as e:  # a bug of ours or bad input: show it, keep the panel alive
                self._record(action, "error", f"{type(e).__name__}: {e}", trace=traceback.format_exc())
            finally:
                for b in self._buttons():
                    b.disabled = False
                entry = self.history[-1]
                entry.update(scope=scope, seconds=round(time.monotonic() - self._started, 1))
                self._mark_stale(action, entry, digest)
                up = f", worker up in {self._worker_up:.1f} s" if self._worker_up is not None else ""
                self.status.value = f"<b>{action}</b> {entry['status']} ({entry['seconds']} s{up})"
                self._render_history()

        if self.background:
            self._thread = threading.Thread(target=body, name=f"workbench-{action}", daemon=True)
            self._thread.start()
        else:
            body()

    def _buttons(self) -> tuple[widgets.Button, ...]:
        return self.check_button, self.profile_button, self.model_button, self.promote_button

    def _on_progress(self, desc: str, n: int, total: int | None) -> None:
        if self._worker_up is None:  # the first word from the worker: it has started
            self._worker_up = time.monotonic() - self._started
            self.status.value = f"<b>{self._action}</b>: running (worker up in {self._worker_up:.1f} s)"
        self.progress.max = max(1, total or n or 1)
        self.progress.value = min(n, self.progress.max)
        self.progress_label.value = f"{desc} {n}/{total if total is not None else '?'}"

    def _run(self, task: str) -> worker.RunResult:
        result = worker.run(
            task,
            self.candidate_file(),
            self.op.value,
            cases=[self.cases.value],
            dtypes=self.dtypes,
            timeout=float(self.timeout.value),
            on_progress=self._on_progress,
            peers=self.peers if task == "profile" else (),
            model=self.model_preset.value,
            execution=self.execution.value,
        )
        self._worker_up = result.startup_s  # the worker's own account: about 0 when a warm spare took it
        return result

    def _do_check(self) -> None:
        result = self._run("check")
        self.check_result = result
        if result.check is not None:
            self._made_from["check"] = self._run_id
            self.check_table = views.correctness_table(result.check).assign(variant="candidate")
            counts = self.check_table["result"].value_counts()
            self.check_html.value = views.table_html(
                self.check_table,
                f"candidate {self.op.value} on {self.backend.name}: {counts.get('pass', 0)} "
                f"passed, {counts.get('FAIL', 0)} failed, {counts.get('skipped', 0)} skipped "
                f"({result.seconds:.1f} s)",
            )
        if result.ok and not result.passed:
            failed = views.failed_rows(result.check)
            first = failed.iloc[0]
            trace = first.get("traceback")
            self._record(
                "check",
                "failed",
                f"{len(failed)} of {len(result.check)} rows failed; first: "
                f"{first['case']} {first['dtype']}: {views.failure_reason(first)}",
                result,
                trace=trace if isinstance(trace, str) else "",
            )
            return
        self._record("check", result.status, result.summary, result)

    def _do_profile(self) -> None:
        result = self._run("profile")
        self.profile_result = result
        if result.bench is not None:
            self._made_from["profile"] = self._run_id
            self.comparison = views.comparison_table(result.bench)
            self.comparison_html.value = views.table_html(
                self.comparison,
                f"{self.op.value} on {self.backend.properties().name}: native, "
                + "".join(f"{p}, " for p in self.peers)
                + "current (the package's kernel) and candidate: ms, "
                "speedup vs native and error against float64",
            )
            self.figures = views.comparison_figures(result.bench)
            self.figure_tabs.children = [
                widgets.Image(
                    value=views.figure_png(f), format="png", layout=widgets.Layout(max_width="900px")
                )
                for f in self.figures.values()
            ]
            self.figure_tabs.titles = tuple(self.figures)
        self._record("profile", result.status, result.summary, result)

    def _do_model(self) -> None:
        result = self._run("model")
        self.model_result = result
        if result.model is not None:
            self._made_from["model"] = self._run_id
            summary = result.model[["metric", "value", "target", "met"]]
            self.model_html.value = views.table_html(
                summary,
                f"{self.model_preset.value} ({self.execution.value}) with the candidate "
                f"as {self.op.value}, against native on {self.backend.name}",
            ) + views.table_html(
                result.coverage, "the op's ATen overloads: served by the candidate, or left native and why"
            )
        self._record("model", result.status, result.summary, result)

    def _do_promote(self) -> None:
        try:
            self.promotion = promote(
                self.candidate_file(),
                self.op.value,
                force=self.force.value,
                root=self.promote_root,
                store=self.store,
                timeout=float(self.timeout.value),
                on_progress=self._on_progress,
            )
        except PromotionError as e:
            self.promotion = e.promotion
            run = e.promotion.verify or e.promotion.check
            if run is not None and run.check is not None:
                self._made_from["check"] = self._run_id
                self.check_result, self.check_table = run, views.correctness_table(run.check)
                self.check_html.value = views.table_html(self.check_table, "checked for promotion")
            self.promotion_html.value = views.error_summary_html(str(e), "refused")
            self._record("promote", "refused", str(e), run, trace=run.traceback if run is not None else "")
            return
        self.promotion_html.value = (
            f"<div style='color:#137333'><b>promoted</b>: {self.promotion.message}</div>"
        )
        self._record("promote", "ok", self.promotion.message)

    # ---- results -----------------------------------------------------------------------------------

    def _record(
        self,
        action: str,
        status: str,
        summary: str,
        result: worker.RunResult | None = None,
        trace: str | None = None,
    ) -> None:
        self.history.append(
            {
                "time": datetime.datetime.now().strftime("%H:%M:%S"),
                "action": action,
                "status": status,
                "summary": summary,
                "result": result,
            }
        )
        if status != "ok":
            self._show_error(
                action,
                status,
                summary,
                trace if trace is not None else (result.traceback if result else ""),
                result.log if result is not None and status != "refused" else "",
            )

    def _show_error(self, action: str, status: str, summary: str, trace: str = "", log: str = "") -> None:
        for path, label in self._file_labels.items():  # point at the cell's (or editor's) lines
            for name in (path, Path(path).name):  # full paths in tracebacks, file names in summaries
                trace, log, summary = (t.replace(name, label) for t in (trace or "", log or "", summary))
        self.error = {"action": action, "status": status, "summary": summary, "traceback": trace}
        self.error_html.value = views.error_summary_html(f"{action}: {summary}", status)
        self.traceback_html.value = views.traceback_html(trace, log)
        self.traceback_fold.selected_index = None
        self.traceback_fold.layout.display = "" if (trace or log) else "none"

    def _mark_stale(self, action: str, entry: dict, digest: str) -> None:
        """Say where each table comes from; dim those that no longer fit the candidate."""
        entry["digest"] = digest
        for kind, note, shown in (
            ("check", self.check_note, (self.check_html,)),
            ("profile", self.comparison_note, (self.comparison_html, self.figure_tabs)),
            ("model", self.model_note, (self.model_html,)),
        ):
            made = self._made_from.get(kind)
            if made is None:
                continue
            source = self.history[made]
            if made == self._run_id:
                stale, why = False, ""
            elif source["digest"] != digest:
                stale, why = (
                    True,
                    f"made from another candidate; the {action} at {entry['time']} ran this one",
                )
            elif kind == action:
                stale, why = True, f"the {action} at {entry['time']} ended: {entry['status']}"
            else:
                continue  # another kind of run on the same candidate: the table still fits
            self.stale[kind] = stale
            origin = f"from the {source['action']} at {source['time']} ({source['scope']})"
            if stale:
                note.value = f"<div style='color:#b26a00'><b>STALE</b>: {origin}; {html.escape(why)}</div>"
                for widget in shown:
                    widget.add_class("wb-stale")
            else:
                note.value = f"<small>{origin}</small>"
                for widget in shown:
                    widget.remove_class("wb-stale")

    def _render_history(self) -> None:
        lines = []
        for h in self.history[-10:]:
            summary = h["summary"] if len(h["summary"]) <= 120 else h["summary"][:117] + "..."
            lines.append(
                f"{h['time']} {h['action']} {h.get('scope', '')}: <b>{h['status']}</b> "
                f"({h.get('seconds', '?')} s) {html.escape(summary)}"
            )
        self.history_html.value = "<small>" + "<br>".join(lines) + "</small>"
