"""A 2-rank gloo job using the Communicator exits cleanly every time: exit code 0 and no "terminate
called" (gloo threads outliving the interpreter abort the process in some runs), whether the script
closes its Communicators or leaves them to the exit hook.

Each run is two fresh processes, several runs at once; importing torch dominates their time. 20 runs
(10 per ending) take about 60 s on 2 cores with little else running (138 s on a machine loaded 5-fold).
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from test_comm import free_port, rank_env

WORKER = Path(__file__).with_name("_comm_exit_worker.py")
RUNS = 10  # per ending: 20 jobs of 2 processes in all
LIMIT_S = 120.0


def _job(ending: str) -> list[tuple[int, str]]:
    """One 2-rank run; (exit code, stderr) per rank."""
    port = free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), ending],
            env=rank_env(r, 2, port),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    out = []
    try:
        for p in procs:
            out.append((p.wait(timeout=LIMIT_S), p.stderr.read()))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        return [(-1, f"did not finish in {LIMIT_S} s (a hang)")]
    finally:
        for p in procs:
            p.stderr.close()
    return out


@pytest.mark.parametrize("ending", ["close", "no-close"])
def test_every_exit_is_clean(ending):
    with ThreadPoolExecutor(max_workers=max(2, min(4, (os.cpu_count() or 2) // 2))) as pool:
        runs = list(pool.map(_job, [ending] * RUNS))
    bad = [
        (i, rank, code, err[-2000:])
        for i, ranks in enumerate(runs)
        for rank, (code, err) in enumerate(ranks)
        if code != 0 or "terminate called" in err
    ]
    assert not bad, f"{len(bad)} of {2 * RUNS} rank exits were not clean; first: {bad[0]}"
