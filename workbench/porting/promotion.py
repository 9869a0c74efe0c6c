"""Promotion: write a checked candidate into the package, register it, record its perf baseline.

Where it goes (see `workbench.porting.candidate` for the candidate file format):

* a candidate that declares ``SPEC`` is a **new op**: ``workbench/ops/<op>.py``, found by the op
  package's module discovery, registered by a footer that calls ``register(SPEC)``;
* otherwise it is a **backend variant** of a registered op: ``workbench/ops/variants/<op>_<backend>.py``,
  whose footer sets ``OpSpec.variants[backend]`` (variants load after every op module, so a promoted
  variant takes precedence over one an op module declares).

Either way the registry-parametrized test suite picks it up on its next run, and the baseline bench
rows go to the ResultStore so that the next regression run compares against them.

A promotion is a transaction, in named steps (`STEPS`):

1. ``locked``: an exclusive lock per (package, op) (``out/promotion/<op>.lock`` under the root); a
   second promotion of the op meanwhile is refused with the holder's pid. A journal left by an
   interrupted promotion of the op is finished or rolled back first (`recover`).
2. ``checked``: the target must not exist (unless ``force``); the candidate is checked in a worker on
   every case of ``cases`` and every dtype, and one failing case refuses it.
3. ``verified``: the module as it will be installed is imported in a worker from a staged copy of the
   package (so its footer really registers it), checked and benched there.
4. ``journaled``: the new module text and the baseline rows are written beside a journal
   (``out/promotion/<op>.journal.json``); from here on the journal is the source of truth.
5. ``backed_up`` (``force`` only), ``installed`` (temp file + rename), ``baseline_started`` /
   ``baseline_recorded`` (the rows go to the store as one run, whose id the journal records), then the
   journal is removed (``done``).

Whatever stops it, a later `promote` of the op or ``workbench promote --recover`` leaves either the
old state (nothing installed past the journal: the backup is dropped) or the complete new one (the
module installed: the baseline is recorded from the journal's rows; a store run cut off mid-write is
marked ``aborted`` and written again in full). Tests stop the process at a step by setting
``WORKBENCH_PROMOTE_FAULT=<step>`` (the process kills itself with SIGKILL when it reaches that step).

A refusal raises `PromotionError`, whose message says why and whose ``promotion`` attribute holds
the check results; nothing has been written then.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import shutil
import signal
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from . import worker
from .candidate import CandidateError, check_file_name, check_op_name, declares_spec

STEPS = (
    "locked",
    "checked",
    "verified",
    "journaled",
    "backed_up",
    "installed",
    "baseline_started",
    "baseline_recorded",
    "done",
)
FAULT_ENV = "WORKBENCH_PROMOTE_FAULT"


class PromotionError(RuntimeError):
    """A promotion was refused or rolled back; nothing was left written. `.promotion` has the details."""

    def __init__(self, message: str, promotion: Promotion):
        super().__init__(message)
        self.promotion = promotion


@dataclass
class Promotion:
    op: str
    kind: str  # "op" (a new op module) or "variant" (a backend variant of a registered op)
    backend: str  # the backend the kernel is promoted for
    checked_on: str  # the backend its correctness was checked on
    target: Path
    written: bool = False
    backup: Path | None = None
    message: str = ""
    check: worker.RunResult | None = None
    verify: worker.RunResult | None = None
    baseline_run: object = None  # the ResultStore's run id of the baseline
    recovered: str = ""  # what was done about an earlier, interrupted promotion of the op


def target_path(root: Path, op: str, backend: str, new_op: bool) -> Path:
    ops_dir = root / "workbench" / "ops"
    return ops_dir / f"{op}.py" if new_op else ops_dir / "variants" / f"{op}_{backend}.py"


def module_name(op: str, backend: str, new_op: bool) -> str:
    return f"workbench.ops.{op}" if new_op else f"workbench.ops.variants.{op}_{backend}"


def state_dir(root: Path) -> Path:
    """Locks and journals of promotions into `root`'s package (ignored by git: under out/)."""
    return root / "out" / "promotion"


def _reached(step: str) -> None:
    """The fault-injection hook: die here, as from kill -9, when $WORKBENCH_PROMOTE_FAULT names this step."""
    if os.environ.get(FAULT_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def _footer(op: str, backend: str, checked_on: str, new_op: bool, source_name: str, checked: str) -> str:
    """Registration code appended to the module. Every name in it is an identifier or a repr()."""
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    status = "promoted" if backend == checked_on else "draft"
    lines = [
        "",
        "",
        f"# ---- promoted by `workbench promote` at {stamp} from {source_name!r} ----",
        f"# Checked on {checked_on!r}: {checked!r}."
        + ("" if backend == checked_on else f" Not checked on {backend!r}: its status stays draft."),
    ]
    if new_op:
        lines += [
            "from workbench.ops.spec import register as _register  # noqa: E402",
            "",
            f"SPEC.status[{checked_on!r}] = 'promoted'",
            "SPEC = _register(SPEC)",
        ]
    else:
        lines += [
            "from workbench.ops.spec import get as _get_spec  # noqa: E402",
            "",
            f"_get_spec({op!r}).variants[{backend!r}] = {check_op_name(op)}",
            f"_get_spec({op!r}).status[{backend!r}] = {status!r}",
        ]
    return "\n".join(lines) + "\n"


def _failure_lines(table, limit: int = 5) -> str:
    from workbench.profiling.correctness import failure_reason, failures

    failed = failures(table)
    shown = [
        f"  {row['case']} {row['dtype']} {row['direction']}: {failure_reason(row)}"
        for _, row in failed.head(limit).iterrows()
    ]
    more = [f"  ... and {len(failed) - limit} more"] if len(failed) > limit else []
    return "\n".join(shown + more)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.promote-tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _open_store(store):
    from workbench.store import ResultStore, default_store_path

    if store is None:
        return ResultStore(default_store_path())
    return ResultStore(store) if isinstance(store, (str, Path)) else store


def _store_location(store) -> str:
    """Where the journal finds the store again: a URL as given, a SQLite file as an absolute path."""
    from workbench.store.engine import is_url

    location = store.source
    return location if is_url(location) else str(Path(location).resolve())


# ---- the lock and the journal ------------------------------------------------------------------------


@contextlib.contextmanager
def _lock(root: Path, op: str, promo: Promotion) -> Iterator[None]:
    """Hold the (package, op) promotion lock; refuse at once when another process holds it."""
    folder = state_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f"{op}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            promo.message = (
                f"not promoted: another promotion of {op!r} into {root} is in progress ({holder}); "
                "nothing was written"
            )
            raise PromotionError(promo.message, promo) from None
        stamp = datetime.datetime.now().isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {stamp}".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock; a killed process releases it too


@dataclass
class _Journal:
    """An interrupted promotion's record: what it installs, where the old file went, its baseline run."""

    path: Path
    data: dict

    @property
    def pending(self) -> Path:  # the new module text and baseline rows, written before the journal
        return self.path.with_name(f"{self.data['op']}.pending")

    def save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(self.data, f, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        shutil.rmtree(self.pending, ignore_errors=True)


def _journal_path(root: Path, op: str) -> Path:
    return state_dir(root) / f"{op}.journal.json"


def _record_baseline(journal: _Journal) -> str:
    """Store the journal's baseline rows as one finished run; the journal keeps its id (see `recover`)."""
    from workbench.regression import BASELINE_KIND

    store = _open_store(journal.data["store"])
    rows = json.loads((journal.pending / "baseline.json").read_text())
    run_id = store.start_run(BASELINE_KIND, journal.data["meta"])
    journal.data["run_id"] = run_id
    journal.save()
    for i, row in enumerate(rows):
        store.add_row(run_id, row)
        if i == 0:
            _reached("baseline_started")
    store.finish_run(run_id)
    return run_id


def _baseline_done(journal: _Journal) -> bool:
    run_id = journal.data.get("run_id")
    if not run_id:
        return False
    from workbench.regression import BASELINE_KIND

    store = _open_store(journal.data["store"])
    runs = store.runs(BASELINE_KIND)
    status = runs.loc[runs["run_id"] == run_id, "status"]
    if len(status) and status.iloc[0] == "done":
        return True
    if len(status):  # cut off mid-write: keep its rows out of the way of the complete run that follows
        store.finish_run(run_id, "aborted")
    return False


def recover(root: str | Path | None = None, op: str | None = None) -> list[str]:
    """Finish or roll back interrupted promotions into `root` (every op, or `op`); one line per journal.

    Installed module (its text matches the journal): the baseline is recorded if it is not, and the
    promotion stands. Otherwise the package is as before: the backup copy and the journal are dropped.
    """
    root = Path(root).resolve() if root else worker.package_root()
    folder = state_dir(root)
    ops = (
        [check_op_name(op)]
        if op
        else sorted(p.name[: -len(".journal.json")] for p in folder.glob("*.journal.json"))
    )
    messages = []
    for name in ops:
        promo = Promotion(name, "", "", "", Path())
        try:
            with _lock(root, name, promo):
                message = _recover_locked(root, name)
        except PromotionError as e:
            message = str(e).replace("not promoted: ", "not recovered: ")
        if message:
            messages.append(message)
    return messages


def _recover_locked(root: Path, op: str) -> str:
    path = _journal_path(root, op)
    if not path.exists():
        shutil.rmtree(path.with_name(f"{op}.pending"), ignore_errors=True)  # cut off before the journal
        return ""
    journal = _Journal(path, json.loads(path.read_text()))
    target = root / journal.data["target"]
    target.with_name(f".{target.name}.promote-tmp").unlink(missing_ok=True)
    backup = root / journal.data["backup"] if journal.data.get("backup") else None
    if _sha256(target) == journal.data["sha256"]:
        if journal.data["store"] is not None and not _baseline_done(journal):
            _record_baseline(journal)
        journal.remove()
        return f"finished the interrupted promotion of {op!r}: {journal.data['target']} installed" + (
            f", baseline run {journal.data['run_id']} recorded" if journal.data["store"] is not None else ""
        )
    if backup is not None:
        backup.unlink(missing_ok=True)  # a copy of the file still in place
    journal.remove()
    return f"rolled back the interrupted promotion of {op!r}: {journal.data['target']} is as before"


# ---- the steps ---------------------------------------------------------------------------------------


def promote(
    candidate_file: str | Path,
    op: str,
    backend: str | None = None,
    force: bool = False,
    *,
    root: str | Path | None = None,
    cases: Iterable[str] = ("quick", "edge"),
    dtypes: Iterable[str] | None = None,
    bench_cases: Iterable[str] | None = None,
    bench_dtypes: Iterable[str] | None = None,
    store=None,
    record_baseline: bool = True,
    timeout: float = 1200.0,
    progress: bool = True,
    on_progress=None,
) -> Promotion:
    """Check the candidate and write it into the package (see the module docstring).

    backend: the backend a variant is for (default: the backend this process is bound to, which is
      where correctness is checked; a variant for another backend is checked here and stays draft).
    force: replace an existing target, keeping a backup beside it (``<file>.bak-<timestamp>``).
    root: the tree whose ``workbench/`` package receives the file (default: the one imported).
    cases, dtypes: what correctness must pass on (default: the test suite's quick + edge, every dtype).
    bench_cases, bench_dtypes: the baseline bench (default: what `workbench regress` runs here).
    store: a ResultStore or a path (default: the regression store); record_baseline=False skips it.
    """
    from workbench import backends

    check_op_name(op)
    candidate_file = check_file_name(candidate_file)
    if not candidate_file.is_file():
        raise FileNotFoundError(
            f"candidate_file: expected a Python file, got {str(candidate_file)!r} (not found)"
        )
    source = candidate_file.read_text()
    try:
        new_op = declares_spec(source)
    except SyntaxError as e:
        raise CandidateError(
            f"candidate {candidate_file.name}: SyntaxError: {e.msg} (line {e.lineno})"
        ) from None
    bound = backends.active()
    if backend is not None:
        backends.get(backend)  # a known name
        if new_op and backend != bound.name:
            raise ValueError(
                f"backend: a new op's kernel is its generic implementation, checked on {bound.name!r}; "
                f"got backend={backend!r} (promote it, then promote variants for other backends)"
            )
    target_backend = backend or bound.name
    root = Path(root).resolve() if root else worker.package_root()
    if not (root / "workbench" / "ops" / "variants").is_dir():
        raise FileNotFoundError(f"root: expected a tree holding workbench/ops/variants/, got {str(root)!r}")
    promo = Promotion(
        op,
        "op" if new_op else "variant",
        target_backend,
        bound.name,
        target_path(root, op, target_backend, new_op),
    )
    worker.remove_stale_dirs()
    with _lock(root, op, promo):
        promo.recovered = _recover_locked(root, op)
        _reached("locked")
        checked = _check(
            promo, candidate_file, root, new_op, force, list(cases), dtypes, timeout, progress, on_progress
        )
        _reached("checked")
        text = (
            source.rstrip("\n")
            + "\n"
            + _footer(op, target_backend, bound.name, new_op, candidate_file.name, checked)
        )
        _verify(
            promo,
            text,
            root,
            new_op,
            record_baseline,
            bench_cases,
            bench_dtypes,
            timeout,
            progress,
            on_progress,
        )
        _reached("verified")
        _commit(promo, text, root, store if record_baseline else None, record_baseline)
    what = f"new op {op!r}" if new_op else f"{target_backend} variant of {op!r}"
    promo.message = (
        f"promoted {what} to {promo.target.relative_to(root)}"
        + (f" (backup: {promo.backup.name})" if promo.backup else "")
        + f"; checked on {bound.name}: {checked}"
        + (f"; baseline run {promo.baseline_run} recorded" if record_baseline else "")
    )
    return promo


def _refuse(promo: Promotion, message: str):
    promo.message = f"not promoted: {message}; nothing was written"
    raise PromotionError(promo.message, promo)


def _check(
    promo: Promotion,
    candidate_file: Path,
    root: Path,
    new_op: bool,
    force: bool,
    cases: list[str],
    dtypes,
    timeout: float,
    progress: bool,
    on_progress,
) -> str:
    """Step ``checked``: the target is free (or forced) and the candidate passes every case.

    Returns what ran, in words."""
    from workbench.profiling.correctness import failures

    op, rel = promo.op, promo.target.relative_to(root)
    if promo.target.exists() and not force:
        _refuse(promo, f"{rel} exists (pass force=True / --force to replace it; a backup is kept)")
    dtypes = list(dtypes) if dtypes is not None else None
    promo.check = result = worker.run(
        "check",
        candidate_file,
        op,
        cases=cases,
        dtypes=dtypes or ("fp32", "fp16", "bf16"),
        timeout=timeout,
        target_backend=promo.backend,
        root=root,
        replacing=force and new_op,
        progress=progress,
        on_progress=on_progress,
    )
    if not result.ok:
        _refuse(promo, f"the candidate's check {result.status}: {result.summary}")
    registered_in, variant_in = result.info.get("registered_in"), result.info.get("variant_in")
    if new_op and registered_in and Path(registered_in).resolve() != promo.target.resolve():
        _refuse(
            promo,
            f"op {op!r} is defined in {registered_in}, not in {rel}; promote a variant instead (drop SPEC)",
        )
    if not new_op and variant_in and not force:
        _refuse(
            promo,
            f"op {op!r} already has a {promo.backend} variant (defined in {variant_in}); "
            "pass force=True to override it",
        )
    table = result.check
    ran = table[table["skipped"] == ""]
    if ran.empty:
        _refuse(
            promo,
            f"no case ran for {op!r} on {promo.checked_on} with cases {cases} and dtypes {dtypes or 'all'}",
        )
    if not failures(table).empty:
        _refuse(
            promo,
            f"correctness failed on {len(failures(table))} of {len(ran)} checks on {promo.checked_on}:\n"
            + _failure_lines(table),
        )
    return (
        f"{', '.join(cases)} x {', '.join(sorted(set(ran['dtype'])))}, {len(ran)} checks passed "
        f"(seed {int(table['seed'].min())})"
    )


def _verify(
    promo: Promotion,
    text: str,
    root: Path,
    new_op: bool,
    record_baseline: bool,
    bench_cases,
    bench_dtypes,
    timeout: float,
    progress: bool,
    on_progress,
) -> None:
    """Step ``verified``: import the package with the new module from a staged copy, check and bench it."""
    from workbench.profiling.correctness import failures

    if bench_cases is None or bench_dtypes is None:
        from workbench.regression import default_params

        defaults = default_params(promo.checked_on)
        bench_cases = bench_cases or defaults["cases"]
        bench_dtypes = bench_dtypes or defaults["dtypes"]
    stage = worker.new_dir(worker.DIR_PREFIXES[1])
    try:
        worker.stage_package(root, stage)
        staged = target_path(stage, promo.op, promo.backend, new_op)
        staged.write_text(text)
        promo.verify = worker.run(
            "verify",
            staged,
            promo.op,
            cases=list(bench_cases),
            dtypes=list(bench_dtypes),
            timeout=timeout,
            target_backend=promo.backend,
            root=stage,
            module_name=module_name(promo.op, promo.backend, new_op),
            bench=record_baseline,
            progress=progress,
            on_progress=on_progress,
            warm=False,
        )
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    verify = promo.verify
    if not verify.ok:
        _refuse(
            promo,
            f"importing the module as it would be installed ({promo.target.relative_to(root)}) "
            f"{verify.status}: {verify.summary}",
        )
    if not failures(verify.check).empty:
        _refuse(promo, f"the installed module failed its check:\n{_failure_lines(verify.check)}")


def _commit(promo: Promotion, text: str, root: Path, store, record_baseline: bool) -> None:
    """Steps ``journaled`` to ``done``: journal, backup, install, baseline. An exception rolls back."""
    from workbench.store.meta import run_metadata

    target = promo.target
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    backup = target.with_name(f"{target.name}.bak-{stamp}") if target.exists() else None
    store_path = _store_location(_open_store(store)) if record_baseline else None
    journal = _Journal(
        _journal_path(root, promo.op),
        {
            "id": uuid.uuid4().hex,
            "op": promo.op,
            "pid": os.getpid(),
            "target": str(target.relative_to(root)),
            "backup": str(backup.relative_to(root)) if backup else None,
            "sha256": hashlib.sha256(text.encode()).hexdigest(),
            "store": store_path,
            "run_id": None,
            "meta": run_metadata(),
        },
    )
    shutil.rmtree(journal.pending, ignore_errors=True)
    journal.pending.mkdir(parents=True)
    (journal.pending / "module.py").write_text(text)
    rows = promo.verify.bench.drop(columns=["traceback"], errors="ignore") if record_baseline else None
    (journal.pending / "baseline.json").write_text("[]" if rows is None else rows.to_json(orient="records"))
    journal.save()
    _reached("journaled")
    try:
        if backup is not None:
            shutil.copy2(target, backup)
            _reached("backed_up")
        _write_atomically(target, text)
        _reached("installed")
        if record_baseline:
            promo.baseline_run = _record_baseline(journal)
            _reached("baseline_recorded")
    except BaseException as e:
        if backup is not None and backup.exists():
            os.replace(backup, target)
        elif backup is None:
            target.unlink(missing_ok=True)
        if journal.data.get("run_id"):
            _open_store(store_path).finish_run(journal.data["run_id"], "aborted")
        journal.remove()
        promo.message = f"not promoted: {type(e).__name__}: {e}; the package was restored"
        raise PromotionError(promo.message, promo) from e
    journal.remove()
    _reached("done")
    promo.written, promo.backup = True, backup
