"""Sweeps over every accelerator of a machine: `check` / `bench` split by op over one worker
process per device.

`run(kind, devices, ...)` starts one `python -m workbench.sweep` worker per device (`CUDA_VISIBLE_DEVICES` /
`MLU_VISIBLE_DEVICES` narrowed to it; `cpu:N` gives N workers on the interpreter, for testing), hands each a
group of ops balanced by cost, and merges what they return into one table with a `device_id` column.
Cost: the seconds each op took in earlier sweeps of this kind on this device (runs of kind "sweep" in the
store), else a static estimate (its number of cases x dtypes, scaled by the measured seconds per case where
some ops have a measurement). A worker writes one JSON line per finished op (rows encoded as the store
encodes them, so inf and NaN survive), so a worker that crashes or passes its timeout loses only its
unfinished ops: they come back as error rows naming the device and what happened, and the other workers
finish. The seconds per op go to the store for the next sweep's balance.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

SWEEP_KIND = "sweep"  # store runs that hold the seconds per op of earlier sweeps
VISIBLE = {"cuda": "CUDA_VISIBLE_DEVICES", "mlu": "MLU_VISIBLE_DEVICES"}


@dataclass
class Worker:
    device_id: str  # "cuda:1", "cuda:1/1" (a second worker there), "cpu#0", ...
    env: dict
    ops: list[str] = field(default_factory=list)
    estimate_s: float = 0.0
    status: str = "pending"  # ok, crashed, timeout
    detail: str = ""
    seconds: float = 0.0


def slots(devices: str, backend) -> list[Worker]:
    """One Worker per device named by `devices`: "all", "0,1,..." (an index twice: two workers on it) or,
    on cpu, "cpu:N"."""
    text = devices.strip().lower()
    if backend.name == "cpu":
        count = (
            int(text.split(":", 1)[1])
            if text.startswith("cpu:") and text[4:].isdigit()
            else 1
            if text in ("all", "cpu")
            else 0
        )
        if count < 1:
            raise ValueError(f"--devices: on cpu expected 'all' or cpu:N (N workers), got {devices!r}")
        return [Worker(f"cpu#{i}", {}) for i in range(count)]
    import torch

    available = getattr(torch, backend.device_type).device_count()
    if text == "all":
        indices = list(range(available))
    else:
        try:
            indices = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"--devices: expected all or device indices like 0,1, got {devices!r}") from None
    if not indices or any(not 0 <= i < available for i in indices):
        raise ValueError(
            f"--devices: expected indices below {available} ({backend.name} devices visible), got {devices!r}"
        )
    var = VISIBLE[backend.name]
    visible = [v for v in os.environ.get(var, "").split(",") if v.strip()]  # index i -> the parent's i-th
    workers = []
    for n, i in enumerate(indices):  # an index named twice gets two workers: cuda:0, cuda:0/1
        again = indices[:n].count(i)
        workers.append(
            Worker(
                f"{backend.name}:{i}" + (f"/{again}" if again else ""),
                {var: visible[i] if visible else str(i)},
            )
        )
    return workers


def static_cost(kind: str, op: str, params: dict) -> int:
    """Work items of `op` in a run of `kind`: case sets' cases x dtypes."""
    from workbench.ops import spec as opspec
    from workbench.profiling.correctness import parse_dtypes

    spec = opspec.get(op)
    dtypes = [
        d
        for d in parse_dtypes(params.get("dtypes") or (None if kind == "check" else ["bf16"]))
        if d in spec.dtypes
    ]
    cases = params.get("cases") or (["quick"] if kind == "check" else ["llm"])
    return max(1, sum(len(spec.case_list(c)) for c in cases) * len(dtypes))


def costs(kind: str, ops: list[str], params: dict, store, device: str) -> dict[str, float]:
    """Estimated seconds per op: the newest measurement in the store, else the scaled static estimate."""
    measured: dict[str, float] = {}
    if store is not None:
        past = store.history(SWEEP_KIND, device)
        if len(past):
            past = past[past["command"] == kind]
            measured = past.drop_duplicates("op", keep="last").set_index("op")["seconds"].to_dict()
    items = {op: static_cost(kind, op, params) for op in ops}
    known = [measured[op] / items[op] for op in ops if op in measured]
    per_item = float(pd.Series(known).median()) if known else 1.0
    return {op: float(measured[op]) if op in measured else items[op] * per_item for op in ops}


def balance(cost: dict[str, float], workers: list[Worker]) -> None:
    """Longest first, each op to the least loaded worker (the LPT rule: within 4/3 of the best split)."""
    for op in sorted(cost, key=lambda o: -cost[o]):
        least = min(workers, key=lambda w: w.estimate_s)
        least.ops.append(op)
        least.estimate_s += cost[op]


def _failure_row(kind: str, op: str, worker: Worker) -> dict:
    error = f"worker {worker.device_id} {worker.status}: {worker.detail}"
    if kind == "check":
        return {"op": op, "case": "", "dtype": "", "passed": False, "skipped": "", "error": error}
    return {"op": op, "impl": "native", "case": "", "dtype": "", "error": error}


def _tail(path: Path, lines: int = 1) -> str:
    text = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
    return " | ".join(t.strip() for t in text[-lines:]) or "no output"


def run(
    kind: str,
    devices: str,
    params: dict,
    store=None,
    timeout: float = 3600.0,
    log=print,
    worker_command: list[str] | None = None,
) -> tuple[pd.DataFrame, list[Worker]]:
    """Run `kind` ("check" or "bench") with `params` (ops, cases, dtypes, seed, ...) over `devices`.

    Returns the merged table (rows in op order, column `device_id`) and the workers with their status.
    store: a ResultStore that supplies and receives the seconds per op (None: static estimates only).
    worker_command: what starts a worker (default `python -m workbench.sweep`; it gets --job and --out, and
    $WORKBENCH_SWEEP_DEVICE names its device).
    """
    from workbench import backends
    from workbench.ops import spec as opspec

    if kind not in ("check", "bench"):
        raise ValueError(f"sweep: expected check or bench, got {kind!r}")
    backend = backends.active()
    workers = slots(devices, backend)
    ops = list(params.get("ops") or opspec.REGISTRY)
    for op in ops:
        opspec.get(op)  # unknown names fail here
    device = backend.properties().name
    balance(costs(kind, ops, params, store, device), workers)
    workers = [w for w in workers if w.ops]
    # No work, only the table's columns; bench measures the device's roofline ceilings here if they are not
    # cached yet, once, rather than in every worker at once.
    template = _measure(kind)(ops=ops[:1], cases=[], progress=False)
    base = {k: v for k, v in params.items() if k != "ops"}
    command = worker_command or [sys.executable, "-m", "workbench.sweep"]
    with tempfile.TemporaryDirectory(prefix="workbench-sweep-") as tmp:
        procs = []
        for i, w in enumerate(workers):
            out, err = Path(tmp) / f"{i}.jsonl", Path(tmp) / f"{i}.log"
            job = json.dumps({"kind": kind, "params": {**base, "ops": w.ops}})
            env = {
                **os.environ,
                **w.env,
                "WORKBENCH_BACKEND": backend.name,
                "WORKBENCH_SWEEP_DEVICE": w.device_id,
            }
            with open(err, "w") as log_file:
                proc = subprocess.Popen(
                    [*command, "--job", job, "--out", str(out)],
                    env=env,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            procs.append((proc, out, err, w))
        try:
            _wait(kind, procs, timeout, log)
        finally:
            for proc, _, _, _ in procs:
                if proc.poll() is None:  # the caller was interrupted: take the workers down with it
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        results = {op: (rows, seconds) for _, out, _, _ in procs for op, rows, seconds in _finished(out)}
    merged, timings = [], []
    for op in ops:
        w = next(w for w in workers if op in w.ops)
        if op in results:
            rows, seconds = results[op]
            timings.append({"command": kind, "op": op, "seconds": seconds, "device_id": w.device_id})
        else:
            rows = [_failure_row(kind, op, w)]
        merged += [{**r, "device_id": w.device_id} for r in rows]
    if store is not None and timings:
        store.append(timings, kind=SWEEP_KIND)
    df = pd.DataFrame(merged)
    columns = list(template.columns) + [c for c in df.columns if c not in template.columns]
    return df.reindex(columns=columns), workers


def _wait(kind: str, procs: list, timeout: float, log) -> None:
    """Until every worker has exited or passed `timeout` (then its process group is killed)."""
    start = time.monotonic()
    pending = list(procs)
    while pending:
        for item in list(pending):
            proc, _, err, w = item
            if proc.poll() is not None:
                w.status = "ok" if proc.returncode == 0 else "crashed"
                w.detail = "" if proc.returncode == 0 else f"exit {proc.returncode}: {_tail(err)}"
            elif time.monotonic() - start > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                w.status, w.detail = "timeout", f"no result within {timeout:g} s: {_tail(err)}"
            else:
                continue
            pending.remove(item)
            w.seconds = time.monotonic() - start
            log(
                f"sweep {kind}: {w.device_id} {w.status} after {w.seconds:.1f} s, {len(w.ops)} ops "
                f"(estimated {w.estimate_s:.1f} s){': ' + w.detail if w.detail else ''}"
            )
        time.sleep(0.1)


def _finished(out: Path) -> list[tuple[str, list[dict], float]]:
    """(op, rows, seconds) of each op a worker finished; a line cut short by a kill is the op in flight."""
    from workbench.store import schema

    done = []
    for line in out.read_text().splitlines() if out.exists() else []:
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        rows = [schema.decode(r, n) for r, n in zip(item["rows"], item["nonfinite"])]
        done.append((item["op"], rows, item["seconds"]))
    return done


def _measure(kind: str):
    from workbench.profiling import bench, check

    return check if kind == "check" else bench


def _work(kind: str, params: dict, out: Path) -> None:
    """Worker side: each op alone, one JSON line per finished op."""
    from workbench.store import schema

    measure = _measure(kind)
    ops = params.pop("ops")
    with open(out, "a") as f:
        for op in ops:
            start = time.monotonic()
            df = measure(ops=[op], progress=False, **params)
            encoded = [schema.encode(r) for r in df.to_dict("records")]
            f.write(
                json.dumps(
                    {
                        "op": op,
                        "seconds": time.monotonic() - start,
                        "rows": [e[0] for e in encoded],
                        "nonfinite": [e[1] for e in encoded],
                    },
                    allow_nan=False,
                    default=str,
                )
                + "\n"
            )
            f.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.sweep", description="one sweep worker")
    parser.add_argument("--job", required=True, help='JSON: {"kind": "check"|"bench", "params": {...}}')
    parser.add_argument("--out", required=True, help="JSON lines, one per finished op")
    args = parser.parse_args(argv)
    job = json.loads(args.job)
    _work(job["kind"], job["params"], Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
