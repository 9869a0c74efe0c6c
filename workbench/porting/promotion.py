"""Promotion: write a checked candidate into the package, register it, record its perf baseline.

Where it goes (see `workbench.porting.candidate` for the candidate file format):

* a candidate that declares ``SPEC`` is a **new op**: ``workbench/ops/<op>.py``, found by the op
  package's module discovery, registered by a footer that calls ``register(SPEC)``;
* otherwise it is a **backend variant** of a registered op: ``workbench/ops/variants/<op>_<backend>.py``,
  whose footer sets ``OpSpec.variants[backend]`` (variants load after every op module, so a promoted
  variant takes precedence over one an op module declares).

Either way the registry-parametrized test suite picks it up on its next run, and the baseline bench
rows go to the ResultStore so that the next regression run compares against them.

All-or-nothing. In order: the target must not exist (unless ``force``); the candidate is checked in
a worker process on every case of ``cases`` and every dtype, and one failing case refuses it; the
module as it will be installed is imported in a worker from a staged copy of the package (so its
footer really registers it) and benched there; only then is the file written (temp file + rename,
with a backup of what it replaces) and the baseline appended. If appending the baseline fails, the
file is rolled back. A refusal raises `PromotionError`, whose message says why and whose
``promotion`` attribute holds the check results; nothing has been written at that point.
"""

from __future__ import annotations

import ast
import datetime
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from . import worker
from .candidate import CandidateError, check_op_name


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


def declares_spec(source: str) -> bool:
    """Whether the module source assigns SPEC at top level (a new op), read without executing it."""
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else [])
        if any(isinstance(t, ast.Name) and t.id == "SPEC" for t in targets):
            return True
    return False


def target_path(root: Path, op: str, backend: str, new_op: bool) -> Path:
    ops_dir = root / "workbench" / "ops"
    return ops_dir / f"{op}.py" if new_op else ops_dir / "variants" / f"{op}_{backend}.py"


def module_name(op: str, backend: str, new_op: bool) -> str:
    return f"workbench.ops.{op}" if new_op else f"workbench.ops.variants.{op}_{backend}"


def _footer(op: str, backend: str, checked_on: str, new_op: bool, source_name: str, checked: str) -> str:
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    status = "promoted" if backend == checked_on else "draft"
    lines = [
        "",
        "",
        f"# ---- promoted by `workbench promote` at {stamp} from {source_name} ----",
        f"# Checked on {checked_on}: {checked}."
        + ("" if backend == checked_on else f" Not checked on {backend}: its status stays draft."),
    ]
    if new_op:
        lines += [
            "from workbench.ops.spec import register as _register  # noqa: E402",
            "",
            f'SPEC.status["{checked_on}"] = "promoted"',
            "SPEC = _register(SPEC)",
        ]
    else:
        lines += [
            "from workbench.ops.spec import get as _get_spec  # noqa: E402",
            "",
            f'_get_spec("{op}").variants["{backend}"] = {op}',
            f'_get_spec("{op}").status["{backend}"] = "{status}"',
        ]
    return "\n".join(lines) + "\n"


def _failure_lines(table, limit: int = 5) -> str:
    from workbench.profiling.correctness import failures

    from workbench.profiling.correctness import failure_reason

    failed = failures(table)
    shown = [f"  {row['case']} {row['dtype']}: {failure_reason(row)}" for _, row in failed.head(limit).iterrows()]
    more = [f"  ... and {len(failed) - limit} more"] if len(failed) > limit else []
    return "\n".join(shown + more)


def _staged_copy(root: Path, dest: Path) -> Path:
    shutil.copytree(root / "workbench", dest / "workbench",
                    ignore=shutil.ignore_patterns("__pycache__", "*.bak-*", ".*"))
    return dest


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


def _default_store():
    from workbench.profiling import ResultStore
    from workbench.regression import default_store_path

    return ResultStore(default_store_path())


def promote(candidate_file: str | Path, op: str, backend: str | None = None, force: bool = False, *,
            root: str | Path | None = None, cases: Iterable[str] = ("quick", "edge"),
            dtypes: Iterable[str] | None = None, bench_cases: Iterable[str] | None = None,
            bench_dtypes: Iterable[str] | None = None, store=None, record_baseline: bool = True,
            timeout: float = 1200.0, progress: bool = True, on_progress=None) -> Promotion:
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
    from workbench.profiling.correctness import failures

    check_op_name(op)
    candidate_file = Path(candidate_file)
    if not candidate_file.is_file():
        raise FileNotFoundError(f"candidate_file: expected a Python file, got {str(candidate_file)!r} (not found)")
    source = candidate_file.read_text()
    try:
        new_op = declares_spec(source)
    except SyntaxError as e:
        raise CandidateError(f"candidate {candidate_file.name}: SyntaxError: {e.msg} (line {e.lineno})") from None
    bound = backends.active()
    if backend is not None:
        backends.get(backend)  # a known name
        if new_op and backend != bound.name:
            raise ValueError(f"backend: a new op's kernel is its generic implementation, checked on {bound.name!r}; "
                             f"got backend={backend!r} (promote it, then promote variants for other backends)")
    target_backend = backend or bound.name
    root = Path(root).resolve() if root else worker.package_root()
    if not (root / "workbench" / "ops" / "variants").is_dir():
        raise FileNotFoundError(f"root: expected a tree holding workbench/ops/variants/, got {str(root)!r}")
    target = target_path(root, op, target_backend, new_op)
    promo = Promotion(op, "op" if new_op else "variant", target_backend, bound.name, target)
    rel = target.relative_to(root)

    def refuse(message: str):
        promo.message = f"not promoted: {message}; nothing was written"
        raise PromotionError(promo.message, promo)

    if target.exists() and not force:
        refuse(f"{rel} exists (pass force=True / --force to replace it; a backup is kept)")

    cases, dtypes = list(cases), list(dtypes) if dtypes is not None else None
    promo.check = worker.run("check", candidate_file, op, cases=cases, dtypes=dtypes or ("fp32", "fp16", "bf16"),
                             timeout=timeout, target_backend=target_backend, root=root,
                             replacing=force and new_op, progress=progress, on_progress=on_progress)
    result = promo.check
    if not result.ok:
        refuse(f"the candidate's check {result.status}: {result.summary}")
    registered_in, variant_in = result.info.get("registered_in"), result.info.get("variant_in")
    if new_op and registered_in and Path(registered_in).resolve() != target.resolve():
        refuse(f"op {op!r} is defined in {registered_in}, not in {rel}; promote a variant instead (drop SPEC)")
    if not new_op and variant_in and not force:
        refuse(f"op {op!r} already has a {target_backend} variant (defined in {variant_in}); "
               "pass force=True to override it")
    table = result.check
    ran = table[table["skipped"] == ""]
    if ran.empty:
        refuse(f"no case ran for {op!r} on {bound.name} with cases {cases} and dtypes {dtypes or 'all'}")
    if not failures(table).empty:
        refuse(f"correctness failed on {len(failures(table))} of {len(ran)} cases on {bound.name}:\n"
               + _failure_lines(table))

    checked = f"{', '.join(cases)} x {', '.join(sorted(set(ran['dtype'])))}, {len(ran)} cases passed " \
              f"(seed {int(table['seed'].min())})"
    text = source.rstrip("\n") + "\n" + _footer(op, target_backend, bound.name, new_op, candidate_file.name, checked)
    if bench_cases is None or bench_dtypes is None:
        from workbench.regression import default_params

        defaults = default_params(bound.name)
        bench_cases = bench_cases or defaults["cases"]
        bench_dtypes = bench_dtypes or defaults["dtypes"]
    with tempfile.TemporaryDirectory(prefix="workbench-promote-") as tmp:
        stage = _staged_copy(root, Path(tmp))
        staged = target_path(stage, op, target_backend, new_op)
        staged.write_text(text)
        promo.verify = worker.run("verify", staged, op, cases=list(bench_cases), dtypes=list(bench_dtypes),
                                  timeout=timeout, target_backend=target_backend, root=stage,
                                  module_name=module_name(op, target_backend, new_op), bench=record_baseline,
                                  progress=progress, on_progress=on_progress)
    verify = promo.verify
    if not verify.ok:
        refuse(f"importing the module as it would be installed ({rel}) {verify.status}: {verify.summary}")
    if not failures(verify.check).empty:
        refuse(f"the installed module failed its check:\n{_failure_lines(verify.check)}")

    # Commit: the file first (atomic rename), then the baseline; a failing baseline rolls the file back.
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    backup = target.with_name(f"{target.name}.bak-{stamp}") if target.exists() else None
    if backup is not None:
        shutil.copy2(target, backup)
    try:
        _write_atomically(target, text)
        if record_baseline:
            if store is None:
                store = _default_store()
            elif isinstance(store, (str, Path)):
                from workbench.profiling.store import ResultStore

                store = ResultStore(store)
            from workbench.regression import BASELINE_KIND

            promo.baseline_run = store.append(verify.bench.drop(columns=["traceback"], errors="ignore"),
                                              kind=BASELINE_KIND)
    except BaseException as e:
        if backup is not None:
            os.replace(backup, target)
        elif target.exists():
            target.unlink()
        promo.message = f"not promoted: {type(e).__name__}: {e}; the package was restored"
        raise PromotionError(promo.message, promo) from e
    promo.written, promo.backup = True, backup
    what = f"new op {op!r}" if new_op else f"{target_backend} variant of {op!r}"
    promo.message = (f"promoted {what} to {rel}" + (f" (backup: {backup.name})" if backup else "")
                     + f"; checked on {bound.name}: {checked}"
                     + (f"; baseline run {promo.baseline_run} recorded" if record_baseline else ""))
    return promo
