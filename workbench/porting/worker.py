"""Isolated runs of candidate kernels: one worker process per run, with a timeout and a memory cap.

A candidate kernel is untrusted: it may abort the process, corrupt the device context (an illegal
memory access), spin forever or exhaust memory. `run()` starts ``python -m workbench.porting.worker
REQUEST.json`` in its own session, follows its progress through a JSON-lines file, and reads its
result from a pickle it writes atomically at the end. Whatever the worker does, the caller gets a
`RunResult` with a status:

* ``ok``      the worker finished; the tables say what passed (rows may still fail);
* ``error``   the candidate did not load or the task raised (summary + full traceback);
* ``oom``     out of host or device memory (a MemoryError / allocator error in the worker; on the
              cpu backend the worker's address space is capped so that it fails before the machine does);
* ``crashed`` the worker died from a signal (os.abort, a segfault, the OS OOM killer), or the device
              context was lost (illegal memory access) and the worker was thrown away with it;
* ``timeout`` it ran past the timeout and its whole process group was killed.

Tasks: ``check`` (correctness of the candidate on the case sets and dtypes), ``profile`` (bench of
native vs candidate vs the op's current promoted kernel, in one process) and ``verify`` (promotion:
import ``workbench.ops`` from a staged copy of the package that already holds the new module, so
that its registration footer runs as it will for everyone, then check it and bench it for the
baseline).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
import traceback as tb
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd

STATUSES = ("ok", "error", "oom", "crashed", "timeout")
TASKS = ("check", "profile", "verify")
# Row errors that mean the device context is gone: every later launch in that process fails too.
_CONTEXT_LOST = ("illegal memory access", "device-side assert", "unspecified launch failure",
                 "CUDA error: an illegal instruction", "misaligned address")
_OOM = ("out of memory", "can't allocate memory", "MemoryError", "OutOfMemoryError")

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
    traceback: str = ""
    log: str = ""  # tail of the worker's stdout/stderr
    returncode: int | None = None
    seconds: float = 0.0
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
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    for line in data[seen:end].splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        callback(event.get("desc") or "", int(event.get("n") or 0), event.get("total"))
    return max(seen, end)


def _tail(path: Path, limit: int = 4000) -> str:
    if not path.exists():
        return ""
    text = path.read_text(errors="replace")
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
    for status, needles, what in (("crashed", _CONTEXT_LOST, "the device context was lost"),
                                  ("oom", _OOM, "out of memory")):
        hit = errors[[any(n in e for n in needles) for e in errors]]
        if len(hit):
            first = table.loc[hit.index[0]]
            return status, (f"{what} in {len(hit)} of {len(table)} rows (first: {first.get('case')} "
                            f"{first.get('dtype')}: {hit.iloc[0][:200]}); the worker process was discarded")
    return None


def run(task: str, candidate: str | Path, op: str, *, cases: Iterable[str] = ("quick",),
        dtypes: Iterable[str] = ("fp32",), seed: int | None = None, timeout: float = 300.0,
        memory_limit: int | None | str = "auto", backend: str | None = None,
        target_backend: str | None = None, module_name: str | None = None, root: str | Path | None = None,
        bench: bool = False, replacing: bool = False, rep_ms: float | None = None, on_progress: ProgressCallback | None = None, progress: bool = True) -> RunResult:
    """Run `task` on the candidate file in a fresh worker process and return what happened.

    backend: the backend the worker binds to (default: this process's active backend).
    target_backend: the backend the candidate is a variant for (default: `backend`); ``verify`` only.
    module_name: ``verify`` only: the module name the new file has in the staged package (`candidate`
      is then that staged file).
    root: directory put first on the worker's PYTHONPATH (default: the tree of this `workbench`).
    bench: ``verify`` only: also bench the op for a perf baseline.
    rep_ms: time budget of each bench measurement (default: what `workbench regress` uses on `backend`).
    replacing: ``check`` only: a candidate with SPEC may replace a registered op (promotion, force=True).
    memory_limit: bytes of address space, None for no cap, "auto" for `default_memory_limit`.
    on_progress(desc, n, total): called with the worker's progress; default: tqdm.auto bars.
    """
    from workbench import backends

    if task not in TASKS:
        raise ValueError(f"task: expected one of {TASKS}, got {task!r}")
    if timeout <= 0:
        raise ValueError(f"timeout: expected seconds > 0, got {timeout}")
    bound = backends.active() if backend is None else backends.get(backend)
    if rep_ms is None:
        from workbench.regression import default_params

        rep_ms = default_params(bound.name)["rep_ms"]
    if memory_limit == "auto":
        memory_limit = default_memory_limit(bound)
    relay = _TqdmRelay() if on_progress is None and progress else None
    callback = on_progress or relay
    rundir = Path(tempfile.mkdtemp(prefix=f"workbench-{task}-"))
    request = {
        "task": task, "candidate": str(Path(candidate).resolve()), "op": op, "cases": list(cases),
        "dtypes": list(dtypes), "seed": seed, "backend": bound.name,
        "target_backend": target_backend or bound.name, "module_name": module_name, "bench": bench,
        "replacing": replacing, "rep_ms": rep_ms, "memory_limit": memory_limit, "result": str(rundir / "result.pkl"),
        "progress": str(rundir / "progress.jsonl"),
    }
    (rundir / "request.json").write_text(json.dumps(request))
    env = dict(os.environ)
    root = Path(root).resolve() if root else package_root()
    env["PYTHONPATH"] = os.pathsep.join([str(root)] + [p for p in [env.get("PYTHONPATH")] if p])
    env["WORKBENCH_BACKEND"] = bound.name
    env["PYTHONUNBUFFERED"] = "1"
    log_path = rundir / "worker.log"
    start = time.monotonic()
    seen = 0
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "workbench.porting.worker", str(rundir / "request.json")],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=rundir, start_new_session=True)
        timed_out = False
        try:
            while proc.poll() is None:
                seen = _read_progress(Path(request["progress"]), seen, callback)
                if time.monotonic() - start > timeout:
                    timed_out = True
                    break
                time.sleep(0.1)
        finally:
            if proc.poll() is None:  # timeout, or the caller was interrupted: kill the whole group
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            if relay is not None:
                relay.close()
    seconds = time.monotonic() - start
    _read_progress(Path(request["progress"]), seen, callback)
    log_text = _tail(log_path)
    result_path = Path(request["result"])
    try:
        if timed_out:
            return RunResult(task, "timeout", f"{task} timed out after {timeout:g} s; the worker was killed "
                             "(a hang or an infinite loop in the candidate, or a timeout too short)",
                             log=log_text, returncode=proc.returncode, seconds=seconds)
        if not result_path.exists():
            if proc.returncode < 0:
                name = _signal_name(proc.returncode)
                hint = " (the OS kills a process that exhausts memory)" if name == "SIGKILL" else ""
                summary = f"the worker crashed: killed by {name}{hint}"
            else:
                summary = f"the worker exited with code {proc.returncode} without a result"
            return RunResult(task, "crashed", summary, log=log_text, returncode=proc.returncode, seconds=seconds)
        with open(result_path, "rb") as f:
            payload = pickle.load(f)
    finally:
        for p in rundir.iterdir():
            p.unlink()
        rundir.rmdir()
    result = RunResult(task, payload["status"], payload["summary"], check=payload.get("check"),
                       bench=payload.get("bench"), traceback=payload.get("traceback", ""), log=log_text,
                       returncode=proc.returncode, seconds=seconds, info=payload.get("info", {}))
    if result.ok:
        verdict = classify_rows(result.check) or classify_rows(result.bench)
        if verdict:
            result.status, result.summary = verdict
    return result


# ---- worker side -----------------------------------------------------------------------------------


def _limit_memory(limit: int | None) -> None:
    if limit:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (int(limit), int(limit)))


def _report_progress(path: str) -> None:
    """Make every tqdm.auto bar in this process write its state to `path` (one JSON line per refresh)."""
    import tqdm.auto
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
    import inspect

    try:
        return inspect.getsourcefile(fn)
    except TypeError:
        return None


def _task_check(req: dict) -> dict:
    from workbench.ops import spec as opspec
    from workbench.profiling import check
    from workbench.porting import candidate

    cand = candidate.load(req["candidate"], req["op"], replacing=req.get("replacing", False))
    # what the package holds now, for promotion's "target exists" rule
    registered = opspec.REGISTRY.get(req["op"])
    info = {"new_op": cand.new_op,
            "registered_in": _defined_in(registered.impl) if registered else None,
            "variant_in": (_defined_in(registered.variants[req["target_backend"]])
                           if registered and req["target_backend"] in registered.variants else None)}
    candidate.install(cand, req["backend"])
    df = check(ops=[req["op"]], cases=req["cases"], dtypes=req["dtypes"], seed=req["seed"])
    return {"check": df, "info": info}


def _task_profile(req: dict) -> dict:
    from workbench.ops import spec as opspec
    from workbench.profiling import bench as run_bench
    from workbench.porting import candidate

    cand = candidate.load(req["candidate"], req["op"])
    kwargs = {"ops": [req["op"]], "cases": req["cases"], "dtypes": req["dtypes"], "rep_ms": req["rep_ms"],
              "seed": req["seed"]}
    frames = []
    if not cand.new_op:  # the op's current kernel first, in the same process, same device
        promoted = run_bench(**kwargs)
        promoted.loc[promoted["impl"] != "native", "impl"] = "promoted"
        frames.append(promoted)
    candidate.install(cand, req["backend"])
    mine = run_bench(**kwargs)
    mine.loc[mine["impl"] != "native", "impl"] = "candidate"
    if frames:
        mine = mine[mine["impl"] != "native"]
    frames.append(mine)
    df = pd.concat(frames, ignore_index=True)
    return {"bench": df, "info": {"new_op": cand.new_op, "variant": opspec.REGISTRY[req["op"]].variant_name(req["backend"])}}


def _task_verify(req: dict) -> dict:
    """Import the staged package the way every later process will; the new module must register itself."""
    import importlib

    from workbench.ops import spec as opspec
    from workbench.profiling import check
    from workbench.porting.candidate import signature_problem

    op, active, target = req["op"], req["backend"], req["target_backend"]
    module = importlib.import_module(req["module_name"])  # already imported by workbench.ops' discovery
    fn = getattr(module, op, None)
    spec = opspec.REGISTRY.get(op)
    if spec is None or fn is None or spec.variants.get(target, spec.impl) is not fn:
        raise RuntimeError(f"importing workbench.ops did not make {req['module_name']}.{op}() the {target} "
                           f"implementation of op {op!r}")
    if target in spec.variants:
        problem = signature_problem(fn, spec.impl)
        if problem:
            raise RuntimeError(f"{op}() {problem}")
    if target != active:  # a variant for another backend is checked here, on the backend we have
        spec.variants[active] = fn
    out = {"check": check(ops=[op], cases=req["cases"], dtypes=req["dtypes"], seed=req["seed"])}
    if req["bench"]:
        from workbench.profiling import bench as run_bench

        out["bench"] = run_bench(ops=[op], cases=req["cases"], dtypes=req["dtypes"], rep_ms=req["rep_ms"],
                                 seed=req["seed"])
    return out


def main(argv: list[str]) -> int:
    req = json.loads(Path(argv[0]).read_text())
    payload: dict = {"status": "ok", "summary": ""}
    try:
        _limit_memory(req["memory_limit"])
        from workbench import backends

        backends.active(req["backend"])
        _report_progress(req["progress"])
        payload.update({"check": _task_check, "profile": _task_profile, "verify": _task_verify}[req["task"]](req))
        payload["summary"] = f"{req['task']} finished"
    except BaseException as e:  # everything goes back to the caller, KeyboardInterrupt included
        payload.update(status=_classify_exception(e), summary=_summary(e), traceback=tb.format_exc())
    tmp = Path(req["result"] + ".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(payload, f)
    os.replace(tmp, req["result"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
