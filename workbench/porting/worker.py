"""Isolated runs of candidate kernels: a warm worker process per run, a timeout, a memory cap.

A candidate kernel is the engineer's own code, trusted but possibly buggy: it may abort the process,
corrupt the device context (an illegal memory access), spin forever, exhaust memory, print without
end or write files. `run()` hands the candidate to a worker process and returns a `RunResult` with a
status, whatever the worker does:

* ``ok``      the worker finished; the tables say what passed (rows may still fail);
* ``error``   the candidate did not load or the task raised (summary + full traceback);
* ``oom``     out of host or device memory (a MemoryError / allocator error in the worker; on the
              cpu backend the worker's address space is capped so that it fails before the machine does);
* ``crashed`` the worker died from a signal (os.abort, a segfault, the OS OOM killer), or the device
              context was lost (illegal memory access) and the worker was thrown away with it;
* ``timeout`` it ran past the timeout and every process it started was killed.

How a run is isolated (docs/porting.md states the guarantees):

* Each worker runs against its own **staged copy** of the package (``RUNDIR/stage/workbench``) with
  RUNDIR as its working directory, so files it writes next to its modules never reach the installed
  tree, and RUNDIR is removed afterwards.
* The worker returns **data only**: outputs as tensors (``torch.save`` read with ``weights_only=True``)
  and JSON. Check verdicts are computed here, in the caller (`workbench.porting.judge`).
* The worker sits under a supervisor (`workbench.porting.supervise`) that enforces the timeout, kills
  every process the candidate started (also ones that called ``setsid``) and cleans up when this
  process dies. Directories left by a caller that was killed are removed by the next run.
* The log is streamed to a file and only its tail is read.

Warm start: importing torch, triton and workbench takes seconds, so a **spare** worker is started
ahead of time (`prestart`, and after every run): it has imported everything and bound its device,
then waits for one request. Each spare serves exactly one run (a fresh process per candidate); a
spare whose package tree changed since it started is discarded. ``RunResult.startup_s`` says how long
a run waited for its worker to be ready (about 0 when a spare was warm).

Tasks: ``check`` (correctness of the candidate on the case sets and dtypes), ``profile`` (bench of
native vs candidate vs the op's current promoted kernel, in one process) and ``verify`` (promotion:
import ``workbench.ops`` from a staged copy of the package that already holds the new module, so
that its registration footer runs as it will for everyone, then check it and bench it for the
baseline).
"""

from __future__ import annotations

import atexit
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback as tb
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd

STATUSES = ("ok", "error", "oom", "crashed", "timeout")
TASKS = ("check", "profile", "verify", "model")
JUDGED_HERE = ("check", "verify")  # tasks whose outputs this process judges against its plan
# Row errors that mean the device context is gone: every later launch in that process fails too.
_CONTEXT_LOST = (
    "illegal memory access",
    "device-side assert",
    "unspecified launch failure",
    "CUDA error: an illegal instruction",
    "misaligned address",
)
_OOM = ("out of memory", "can't allocate memory", "MemoryError", "OutOfMemoryError")
# Temporary directories of worker runs and promotions: <prefix><owner pid>-<random>
DIR_PREFIXES = ("workbench-run-", "workbench-promote-")
LOG_TAIL_CHARS = 4000
GRACE_S = 30.0  # past its timeout the supervisor itself must have ended the run

ProgressCallback = Callable[[str, int, "int | None"], None]


def package_root() -> Path:
    """The directory holding the `workbench` package this process imported."""
    return Path(__file__).resolve().parents[2]


@dataclass
class RunResult:
    task: str
    status: str
    summary: str
    check: pd.DataFrame | None = None
    bench: pd.DataFrame | None = None
    model: pd.DataFrame | None = None  # ``model``: the run's summary (metric, value, target, met, config)
    coverage: pd.DataFrame | None = None  # ``model``: the ATen overloads of the op, served or not, and why
    traceback: str = ""
    log: str = ""  # tail of the worker's stdout/stderr
    returncode: int | None = None
    seconds: float = 0.0  # from the call to the verdict
    startup_s: float = 0.0  # of which waiting for the worker to be ready (about 0 with a warm spare)
    warm: bool = False  # a spare worker was ready when the run was handed over
    info: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def passed(self) -> bool:
        """The worker finished and every case that ran passed."""
        from workbench.profiling.correctness import failures

        tables = [t for t in (self.check,) if t is not None]
        return self.ok and bool(tables) and all(failures(t).empty for t in tables)


# ---- caller side -----------------------------------------------------------------------------------


def default_memory_limit(backend) -> int | None:
    """Bytes of address space for a worker on `backend`: half the machine's memory on the interpreter.

    GPU runtimes reserve far more virtual address space than they use, so an address-space cap would
    break them; there the device allocator's own OutOfMemoryError and the OS's OOM killer remain.
    """
    if not backend.interpreted:
        return None
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2


class _TqdmRelay:
    """Mirror the worker's progress events in tqdm.auto bars (a widget in a kernel, text elsewhere)."""

    def __init__(self):
        self.bar = None
        self.desc = None

    def __call__(self, desc: str, n: int, total: int | None) -> None:
        from tqdm.auto import tqdm

        if self.bar is None or desc != self.desc:
            self.close()
            self.bar, self.desc = tqdm(total=total, desc=f"worker {desc}", leave=False), desc
        self.bar.total = total
        self.bar.n = n
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _read_progress(path: Path, seen: int, callback: ProgressCallback | None) -> int:
    """Feed new complete lines of the progress file to `callback`; returns the bytes consumed."""
    if callback is None or not path.exists():
        return seen
    with open(path, "rb") as f:
        f.seek(seen)
        data = f.read(1 << 20)
    end = data.rfind(b"\n") + 1
    for line in data[:end].splitlines():
        try:
            event = json.loads(line)
            callback(str(event.get("desc") or ""), int(event.get("n") or 0), event.get("total"))
        except (ValueError, TypeError, AttributeError):
            continue
    return seen + end


def tail(path: Path, limit: int = LOG_TAIL_CHARS) -> str:
    """The last `limit` characters of a log file, read without loading the rest of it."""
    if not path.exists():
        return ""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 4 * limit))
        text = f.read().decode(errors="replace")
    # tqdm redraws with carriage returns: keep the last state of each line
    text = "\n".join(line.rsplit("\r", 1)[-1] for line in text.splitlines())
    return text[-limit:]


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def classify_rows(table: pd.DataFrame | None) -> tuple[str, str] | None:
    """(status, summary) when row errors show lost device context or exhausted memory, else None."""
    if table is None or "error" not in table or table.empty:
        return None
    errors = table["error"].fillna("").astype(str)
    for status, needles, what in (
        ("crashed", _CONTEXT_LOST, "the device context was lost"),
        ("oom", _OOM, "out of memory"),
    ):
        hit = errors[[any(n in e for n in needles) for e in errors]]
        if len(hit):
            first = table.loc[hit.index[0]]
            return status, (
                f"{what} in {len(hit)} of {len(table)} rows (first: {first.get('case')} "
                f"{first.get('dtype')}: {hit.iloc[0][:200]}); the worker process was discarded"
            )
    return None


# ---- temporary directories ---------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def new_dir(prefix: str) -> Path:
    """A temporary directory whose name carries this process's pid (see `remove_stale_dirs`)."""
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))


def remove_stale_dirs(parent: str | Path | None = None) -> list[Path]:
    """Remove run and promotion directories whose owner process is dead (it was killed); returns them."""
    parent = Path(parent or tempfile.gettempdir())
    pattern = re.compile("^(?:" + "|".join(map(re.escape, DIR_PREFIXES)) + r")(\d+)-")
    removed = []
    for entry in parent.iterdir():
        match = pattern.match(entry.name)
        if match and entry.is_dir() and not _alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def stage_package(root: Path, dest: Path) -> Path:
    """Copy `root`'s workbench package into `dest` (no caches, backups or hidden state files)."""
    shutil.copytree(
        root / "workbench", dest / "workbench", ignore=shutil.ignore_patterns("__pycache__", "*.bak-*", ".*")
    )
    return dest


def tree_fingerprint(root: Path) -> tuple:
    """What changes when any module of `root`'s workbench package is added, removed or edited."""
    entries = []
    for folder, dirs, files in os.walk(root / "workbench"):
        dirs[:] = [d for d in dirs if d != "__pycache__" and not d.startswith(".")]
        for name in files:
            if name.endswith(".py"):
                st = os.stat(os.path.join(folder, name))
                entries.append((folder, name, st.st_size, st.st_mtime_ns))
    return tuple(sorted(entries))


# ---- spare workers -----------------------------------------------------------------------------------


@dataclass
class _Spare:
    """A supervisor + worker pair that has imported everything and waits for one request."""

    key: tuple
    rundir: Path
    proc: subprocess.Popen  # the supervisor (its own session)

    def ready(self) -> bool:
        return (self.rundir / "ready").exists()

    def stop(self, wait: float = 5.0) -> None:
        """Close its stdin (the supervisor kills the worker, removes RUNDIR); SIGKILL if it lingers."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        shutil.rmtree(self.rundir, ignore_errors=True)


_SPARES: dict[tuple, _Spare] = {}
_SPARES_LOCK = threading.Lock()


def _forget_spares() -> None:
    """In a forked child: the spares are the parent's, and the lock may have been held by a thread
    that does not exist here."""
    global _SPARES, _SPARES_LOCK
    _SPARES, _SPARES_LOCK = {}, threading.Lock()


os.register_at_fork(after_in_child=_forget_spares)


def _spawn(key: tuple, root: Path, backend: str) -> _Spare:
    remove_stale_dirs()
    rundir = new_dir(DIR_PREFIXES[0])
    stage_package(root, rundir / "stage")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(rundir / "stage")] + [p for p in [env.get("PYTHONPATH")] if p])
    env["WORKBENCH_BACKEND"] = backend
    env["PYTHONUNBUFFERED"] = "1"
    with open(rundir / "worker.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("supervise.py")), str(rundir)],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=rundir,
            start_new_session=True,
        )
    return _Spare(key, rundir, proc)


def _key(root: Path, backend: str) -> tuple:
    return (sys.executable, str(root), backend, tree_fingerprint(root))


def _take(key: tuple, root: Path, backend: str) -> _Spare:
    """The warm spare for `key` if there is a live one, else a freshly started worker."""
    with _SPARES_LOCK:
        spare = _SPARES.pop(key, None)
        stale = [_SPARES.pop(k) for k in list(_SPARES) if k[:3] == key[:3]]  # same tree, older contents
    for old in stale:
        old.stop()
    if spare is not None and spare.proc.poll() is None:
        return spare
    return _spawn(key, root, backend)


def prestart(root: str | Path | None = None, backend: str | None = None, wait: float = 0.0) -> bool:
    """Start a spare worker for `root`'s package on `backend`, so that the next run finds it warm.

    wait: seconds to wait for it to be ready. Returns whether it is ready.
    """
    from workbench import backends

    root = Path(root).resolve() if root else package_root()
    name = backend or backends.active().name
    key = _key(root, name)
    with _SPARES_LOCK:  # held while spawning (a fraction of a second), so that one spare starts per key
        spare = _SPARES.get(key)
        if spare is None or spare.proc.poll() is not None:
            spare = _SPARES[key] = _spawn(key, root, name)
    deadline = time.monotonic() + wait
    while not spare.ready() and spare.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return spare.ready()


def _prestart_quietly(root: Path, backend: str) -> None:
    try:
        prestart(root, backend)
    except OSError:  # no spare: the next run starts cold
        pass


@atexit.register
def shutdown() -> None:
    """Stop every spare worker of this process."""
    with _SPARES_LOCK:
        spares = list(_SPARES.values())
        _SPARES.clear()
    for spare in spares:
        spare.stop()


def run(
    task: str,
    candidate: str | Path,
    op: str,
    *,
    cases: Iterable[str] = ("quick",),
    dtypes: Iterable[str] = ("fp32",),
    seed: int | None = None,
    timeout: float = 300.0,
    memory_limit: int | None | str = "auto",
    backend: str | None = None,
    target_backend: str | None = None,
    module_name: str | None = None,
    root: str | Path | None = None,
    bench: bool = False,
    replacing: bool = False,
    rep_ms: float | None = None,
    peers: Iterable[str] = (),
    model: str = "tiny",
    execution: str | None = None,
    on_progress: ProgressCallback | None = None,
    progress: bool = True,
    warm: bool = True,
) -> RunResult:
    """Run `task` on the candidate file in a fresh worker process and return what happened.

    backend: the backend the worker binds to (default: this process's active backend; ``check`` and
      ``verify`` judge outputs here, so they need the active one).
    target_backend: the backend the candidate is a variant for (default: `backend`); ``verify`` only.
    module_name: ``verify`` only: the module name the new file has in the staged package (`candidate`
      is then that staged file).
    root: the tree whose ``workbench`` package the worker imports (a staged copy of it; default: the
      tree of this `workbench`).
    bench: ``verify`` only: also bench the op for a perf baseline.
    rep_ms: time budget of each bench measurement (default: what `workbench regress` uses on `backend`).
    peers: ``profile`` only: also time these peers (`workbench.profiling.bench.PEERS`) beside native.
    model, execution: ``model`` only: the preset run natively and with the candidate as the op's
      implementation (`workbench.models.run_model`, prefill and decode), "compile" or "eager" (None: the
      backend's default).
    replacing: ``check`` only: a candidate with SPEC may replace a registered op (promotion, force=True).
    memory_limit: bytes of address space, None for no cap, "auto" for `default_memory_limit`.
    on_progress(desc, n, total): called with the worker's progress; default: tqdm.auto bars.
    warm: use the spare worker if one is ready and start the next spare afterwards.
    """
    began = time.time()  # from here: a first call also pays for importing the judge's modules
    from workbench import backends
    from workbench.porting import judge
    from workbench.porting.candidate import declares_spec
    from workbench.profiling.bench import check_peers

    if task not in TASKS:
        raise ValueError(f"task: expected one of {TASKS}, got {task!r}")
    if timeout <= 0:
        raise ValueError(f"timeout: expected seconds > 0, got {timeout}")
    here = backends.active()
    bound = here if backend is None else backends.get(backend)
    if task in JUDGED_HERE and bound is not here:
        raise ValueError(
            f"backend: {task} judges the outputs in this process, bound to {here.name!r}; "
            f"got backend={backend!r}"
        )
    if rep_ms is None:
        from workbench.regression import default_params

        rep_ms = default_params(bound.name)["rep_ms"]
    if memory_limit == "auto":
        memory_limit = default_memory_limit(bound)
    candidate = Path(candidate).resolve()
    root = Path(root).resolve() if root else package_root()
    planned = None
    if task in JUDGED_HERE:
        from workbench.ops import spec as opspec
        from workbench.profiling import correctness

        try:
            new_op = replacing or declares_spec(candidate.read_text())
        except (OSError, SyntaxError, ValueError):
            new_op = False  # the worker reports why the file does not load
        if op in opspec.REGISTRY and not new_op:
            planned = correctness.plan([opspec.REGISTRY[op]], cases, dtypes, seed)
    request = {
        "task": task,
        "candidate": str(candidate),
        "op": op,
        "cases": list(cases),
        "dtypes": list(dtypes),
        "seed": seed,
        "backend": bound.name,
        "target_backend": target_backend or bound.name,
        "module_name": module_name,
        "bench": bench,
        "replacing": replacing,
        "rep_ms": rep_ms,
        "peers": check_peers(peers),
        "model": {"preset": model, "execution": execution},
        "memory_limit": memory_limit,
        "items": None if planned is None else [judge.item_request(i) for i in planned],
    }
    relay = _TqdmRelay() if on_progress is None and progress else None
    callback = on_progress or relay
    key = _key(root, bound.name)
    spare = _take(key, root, bound.name) if warm else _spawn(key, root, bound.name)
    was_ready = spare.ready()
    rundir = spare.rundir
    (rundir / "request.json").write_text(json.dumps(request))
    submitted = time.time()
    seen, gave_up = 0, False
    try:
        try:
            spare.proc.stdin.write(f"go {timeout}\n".encode())
            spare.proc.stdin.flush()
        except BrokenPipeError:  # the supervisor is gone already; its files say why
            pass
        while spare.proc.poll() is None:
            seen = _read_progress(rundir / "progress.jsonl", seen, callback)
            if time.time() - submitted > timeout + GRACE_S:  # the supervisor did not end it: end it here
                gave_up = True
                break
            time.sleep(0.05)
        _read_progress(rundir / "progress.jsonl", seen, callback)
        return _collect(task, spare, op, planned, began, submitted, was_ready, gave_up, timeout, root)
    finally:
        if spare.proc.poll() is None:  # interrupted or gave up: the supervisor cleans up, or is killed
            spare.stop()
        shutil.rmtree(rundir, ignore_errors=True)
        if relay is not None:
            relay.close()
        if warm:  # the next spare starts in the background: the caller has its verdict now
            threading.Thread(target=_prestart_quietly, args=(root, bound.name), daemon=True).start()


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _collect(
    task: str,
    spare: _Spare,
    op: str,
    planned,
    began: float,
    submitted: float,
    was_ready: bool,
    gave_up: bool,
    timeout: float,
    root: Path,
) -> RunResult:
    """The RunResult of a finished run: the supervisor's outcome, the worker's data, the verdict here."""
    from workbench.porting import judge

    rundir = spare.rundir
    sup = _read_json(rundir / "supervisor.json") or {}
    payload = _read_json(rundir / "result.json")
    started = payload.get("started") if payload else None
    timing = dict(
        startup_s=max(0.0, float(started) - submitted) if isinstance(started, (int, float)) else 0.0,
        warm=was_ready,
        log=tail(rundir / "worker.log"),
    )
    returncode = sup.get("returncode")

    def result(status: str, summary: str, **kw) -> RunResult:
        return RunResult(
            task, status, summary, returncode=returncode, seconds=time.time() - began, **timing, **kw
        )

    if gave_up or sup.get("outcome") == "timeout":
        return result(
            "timeout",
            f"{task} timed out after {timeout:g} s; the worker and every process it "
            "started were killed (a hang or an infinite loop in the candidate, or a timeout too short)",
        )
    if payload is None:
        if isinstance(returncode, int) and returncode < 0:
            name = _signal_name(returncode)
            hint = " (the OS kills a process that exhausts memory)" if name == "SIGKILL" else ""
            return result("crashed", f"the worker crashed: killed by {name}{hint}")
        return result("crashed", f"the worker exited with code {returncode} without a result")
    status = payload.get("status") if payload.get("status") in STATUSES else "error"
    info = payload.get("info") if isinstance(payload.get("info"), dict) else {}
    for k in ("registered_in", "variant_in"):  # worker paths are in its staged copy of `root`
        if isinstance(info.get(k), str) and not os.path.isabs(info[k]):
            info[k] = str(root / info[k])
    out = result(
        status, str(payload.get("summary", "")), traceback=str(payload.get("traceback", "")), info=info
    )
    if out.ok:
        try:
            for name in ("bench", "model", "coverage"):
                if isinstance(payload.get(name), dict):
                    setattr(out, name, pd.DataFrame(payload[name]["data"], columns=payload[name]["columns"]))
            if task in JUDGED_HERE:
                rows = payload.get("rows")
                if not isinstance(rows, list):
                    raise ValueError("no check rows")
                tensors = judge.load_outputs(rundir / judge.OUTPUTS)
                out.check = judge.verdicts(op, planned, rows, tensors, str(payload.get("variant", "")))
        except Exception as e:  # unreadable or forged result files
            out.status, out.summary = (
                "error",
                f"the worker's results could not be read: {type(e).__name__}: {e}",
            )
            out.traceback = tb.format_exc()
        verdict = classify_rows(out.check) or classify_rows(out.bench)
        if verdict:
            out.status, out.summary = verdict
    out.seconds = time.time() - began
    return out


# ---- worker side -----------------------------------------------------------------------------------


def _limit_memory(limit: int | None) -> None:
    if limit:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (int(limit), int(limit)))


def _report_progress(path: str) -> None:
    """Make every tqdm.auto bar in this process write its state to `path` (one JSON line per refresh)."""
    import tqdm.auto  # noqa: F401  (imported here so that a task finds it loaded)
    import tqdm.std

    class FileProgress(tqdm.std.tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.update(disable=False, file=io.StringIO(), mininterval=0.2)  # display() below writes
            super().__init__(*args, **kwargs)

        def display(self, msg=None, pos=None):
            with open(path, "a") as f:
                f.write(json.dumps({"desc": self.desc, "n": self.n, "total": self.total}) + "\n")
            return True

    tqdm.auto.tqdm = FileProgress


def _classify_exception(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}"
    return "oom" if isinstance(e, MemoryError) or any(n in text for n in _OOM) else "error"


def _summary(e: BaseException) -> str:
    """One line: the exception, and the candidate file's line where it was raised when there is one."""
    where = ""
    if isinstance(e, SyntaxError) and e.lineno:
        where = f" (line {e.lineno})"
    else:
        for frame in reversed(tb.extract_tb(e.__traceback__)):
            if "workbench" not in Path(frame.filename).parts:
                where = f" ({Path(frame.filename).name}, line {frame.lineno}, in {frame.name})"
                break
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}{where}"


def _defined_in(fn) -> str | None:
    """The file defining `fn`, relative to the staged tree this worker imports when it is inside it."""
    import inspect

    import workbench

    try:
        path = inspect.getsourcefile(fn)
    except TypeError:
        return None
    stage = Path(workbench.__file__).resolve().parents[1]
    try:
        return str(Path(path).resolve().relative_to(stage))
    except ValueError:
        return path


def _check_rows(req: dict, spec, fn) -> dict:
    """Run the planned items for the caller's judge (the caller's plan; a new op plans its own)."""
    import tqdm.auto

    from workbench.porting import judge
    from workbench.profiling import correctness

    items = req["items"]
    own_reference = items is None
    if own_reference:
        items = [
            judge.item_request(i) for i in correctness.plan([spec], req["cases"], req["dtypes"], req["seed"])
        ]
    rows, tensors = judge.run_items(
        spec, fn, items, own_reference, progress=lambda xs: tqdm.auto.tqdm(xs, desc="check", leave=False)
    )
    return {"rows": rows, "tensors": tensors, "variant": spec.variant_name(req["backend"])}


def _task_check(req: dict) -> dict:
    from workbench.ops import spec as opspec
    from workbench.porting import candidate

    cand = candidate.load(req["candidate"], req["op"], replacing=req.get("replacing", False))
    # what the package holds now, for promotion's "target exists" rule
    registered = opspec.REGISTRY.get(req["op"])
    info = {
        "new_op": cand.new_op,
        "registered_in": _defined_in(registered.impl) if registered else None,
        "variant_in": (
            _defined_in(registered.variants[req["target_backend"]])
            if registered and req["target_backend"] in registered.variants
            else None
        ),
    }
    spec = candidate.install(cand, req["backend"])
    return {**_check_rows(req, spec, spec.implementation(req["backend"])), "info": info}


def _bench_data(df: pd.DataFrame) -> dict:
    return json.loads(df.to_json(orient="split", index=False))


def _task_profile(req: dict) -> dict:
    from workbench.ops import spec as opspec
    from workbench.porting import candidate
    from workbench.profiling import bench as run_bench
    from workbench.profiling.bench import ours

    cand = candidate.load(req["candidate"], req["op"])
    kwargs = {
        "ops": [req["op"]],
        "cases": req["cases"],
        "dtypes": req["dtypes"],
        "rep_ms": req["rep_ms"],
        "seed": req["seed"],
    }
    peers = req.get("peers") or []
    frames = []
    if not cand.new_op:  # the op's current kernel first, in the same process, same device, with the peers
        promoted = run_bench(**kwargs, peers=peers)
        promoted.loc[ours(promoted), "impl"] = "promoted"
        frames.append(promoted)
    candidate.install(cand, req["backend"])
    mine = run_bench(**kwargs, peers=[] if frames else peers)
    mine.loc[ours(mine), "impl"] = "candidate"
    if frames:
        mine = mine[mine["impl"] != "native"]
    frames.append(mine)
    df = pd.concat(frames, ignore_index=True)
    return {
        "bench": _bench_data(df),
        "info": {"new_op": cand.new_op, "variant": opspec.REGISTRY[req["op"]].variant_name(req["backend"])},
    }


def _task_model(req: dict) -> dict:
    """A model run with the candidate as the op's implementation: native and ours on the same weights."""
    from workbench.models import run_model
    from workbench.porting import candidate

    cand = candidate.load(req["candidate"], req["op"])
    candidate.install(cand, req["backend"])
    run = run_model(
        req["model"]["preset"],
        backend=req["backend"],
        include=[req["op"]],
        execution=req["model"]["execution"],
        profile=False,
        progress=True,
    )
    coverage = run.coverage[run.coverage["op"] == req["op"]]
    if coverage.empty:
        raise RuntimeError(
            f"the model made no call that op {req['op']!r} takes: nothing of the candidate ran"
        )
    return {
        "model": _bench_data(run.summary()),
        "coverage": _bench_data(coverage),
        "info": {"new_op": cand.new_op, "execution": run.config.get("execution")},
    }


def _task_verify(req: dict) -> dict:
    """Import the staged package the way every later process will; the new module must register itself."""
    import importlib

    from workbench.ops import spec as opspec
    from workbench.porting.candidate import signature_problem

    op, active, target = req["op"], req["backend"], req["target_backend"]
    module = importlib.import_module(req["module_name"])  # already imported by workbench.ops' discovery
    fn = getattr(module, op, None)
    spec = opspec.REGISTRY.get(op)
    if spec is None or fn is None or spec.variants.get(target, spec.impl) is not fn:
        raise RuntimeError(
            f"importing workbench.ops did not make {req['module_name']}.{op}() the {target} "
            f"implementation of op {op!r}"
        )
    if target in spec.variants:
        problem = signature_problem(fn, spec.impl)
        if problem:
            raise RuntimeError(f"{op}() {problem}")
    if target != active:  # a variant for another backend is checked here, on the backend we have
        spec.variants[active] = fn
    out = _check_rows(req, spec, fn)
    if req["bench"]:
        from workbench.profiling import bench as run_bench

        out["bench"] = _bench_data(
            run_bench(
                ops=[op], cases=req["cases"], dtypes=req["dtypes"], rep_ms=req["rep_ms"], seed=req["seed"]
            )
        )
    return out


def _warm_up() -> None:
    """Import everything a task needs and create the device context, before any request comes."""
    import tqdm.auto  # noqa: F401  (loaded before a task needs it)

    from workbench import backends

    bound = backends.active()
    import torch

    import workbench.ops  # noqa: F401  (the imports a task needs, done before it comes)
    import workbench.porting.candidate  # noqa: F401
    import workbench.porting.judge  # noqa: F401
    import workbench.profiling.bench  # noqa: F401
    import workbench.profiling.correctness  # noqa: F401

    torch.empty(1, device=bound.device()).add_(1)  # the device context, in this fresh process only


def main(argv: list[str]) -> int:
    """Worker process: warm up, wait for ``go`` on stdin, run RUNDIR/request.json, write the results."""
    rundir = Path(argv[0])
    warm_up_error = None
    try:
        _warm_up()
    except BaseException as e:  # reported with the request, like any failure of the task
        warm_up_error = e
    (rundir / "ready").write_text(str(time.time()))
    if not sys.stdin.readline().startswith("go"):
        return 1  # the supervisor went away
    started = time.time()
    payload: dict = {"status": "ok", "summary": "", "started": started}
    tensors = None
    try:
        if warm_up_error is not None:
            raise warm_up_error
        req = json.loads((rundir / "request.json").read_text())
        _limit_memory(req["memory_limit"])
        _report_progress(str(rundir / "progress.jsonl"))
        task = {"check": _task_check, "profile": _task_profile, "verify": _task_verify, "model": _task_model}[
            req["task"]
        ]
        payload.update(task(req))
        tensors = payload.pop("tensors", None)
        payload["summary"] = f"{req['task']} finished"
    except BaseException as e:  # everything goes back to the caller, KeyboardInterrupt included
        payload.update(status=_classify_exception(e), summary=_summary(e), traceback=tb.format_exc())
    if tensors is not None:
        import torch

        from workbench.porting.judge import OUTPUTS

        torch.save(tensors, rundir / OUTPUTS)
    tmp = rundir / "result.json.tmp"
    tmp.write_text(json.dumps(payload, default=str))
    os.replace(tmp, rundir / "result.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
