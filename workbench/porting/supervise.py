"""The supervisor of one worker run: a small trusted process between the caller and the candidate.

``python supervise.py RUNDIR`` (standard library only, so it starts in milliseconds) starts the worker
(``python -m workbench.porting.worker RUNDIR``), which imports torch, triton and workbench and then
waits, warm, for its request. The caller hands the request over by writing ``go`` to this process's
stdin; from then on the supervisor enforces the timeout. It never runs candidate code, so it stays
responsive whatever the candidate does, and it is the one place that ends the run:

* it is a child subreaper (PR_SET_CHILD_SUBREAPER): every process the candidate starts stays its
  descendant, even one that left the process group with ``setsid`` or whose parent exited, so
  killing all descendants (found through /proc) leaves nothing behind;
* the worker gets PR_SET_PDEATHSIG, so it dies with the supervisor even if the supervisor is killed;
* end of file on stdin means the caller is gone (killed, crashed or interrupted): the supervisor
  kills every descendant, removes RUNDIR and exits;
* when the worker exits or the timeout passes it kills the remaining descendants (daemons a candidate
  left running) and writes ``supervisor.json`` (``outcome``: exited or timeout, ``returncode``).
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}, {value}) failed")


def descendants(root: int) -> list[int]:
    """Pids of every process below `root`, zombies included, read from /proc (parents before children)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # exited meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces and ')'
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_descendants() -> None:
    """SIGKILL every descendant of this process and reap it (we are the subreaper of them all), until none
    is left, not even a zombie: when this returns, no process of the run exists any more."""
    for _ in range(250):
        pids = descendants(os.getpid())
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _reap()
        if not pids:
            return
        time.sleep(0.02)


def _reap() -> dict[int, int]:
    """Collect every exited child (ours or adopted); returns pid -> wait status."""
    done = {}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return done
        if pid == 0:
            return done
        done[pid] = status


def _worker_setup() -> None:  # runs in the worker between fork and exec
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def main(rundir: Path) -> int:
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    log = open(rundir / "worker.log", "ab", buffering=0)
    worker = subprocess.Popen(
        [sys.executable, "-m", "workbench.porting.worker", str(rundir)],
        stdin=subprocess.PIPE,
        stdout=log,
        stderr=log,
        cwd=rundir,
        preexec_fn=_worker_setup,
    )
    caller = sys.stdin.buffer.raw
    deadline = None
    outcome, returncode = "exited", None
    while True:
        readable, _, _ = select.select([caller], [], [], 0.05)
        if readable:
            line = caller.readline()
            if not line:  # the caller is gone: leave nothing behind
                kill_descendants()
                shutil.rmtree(rundir, ignore_errors=True)
                return 1
            if line.startswith(b"go") and deadline is None:
                deadline = time.monotonic() + float(line.split()[1])
                try:
                    worker.stdin.write(b"go\n")
                    worker.stdin.flush()
                except BrokenPipeError:  # it already died; its exit status says how
                    pass
        status = _reap().get(worker.pid)
        if status is not None:
            returncode = os.waitstatus_to_exitcode(status)
            worker.returncode = returncode  # reaped here, not by Popen
            break
        if deadline is not None and time.monotonic() > deadline:
            outcome = "timeout"
            break
    kill_descendants()
    tmp = rundir / "supervisor.json.tmp"
    tmp.write_text(json.dumps({"outcome": outcome, "returncode": returncode}))
    os.replace(tmp, rundir / "supervisor.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
