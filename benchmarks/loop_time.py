"""The porting loop's heartbeat: seconds from pressing Check (or Profile) to the verdict, warm worker ready.

The panel and `workbench.porting.worker.run` keep a spare worker process that has already imported torch,
triton and workbench and created its device context; each Check hands the candidate to it and gets a
fresh spare started for the next one. This script measures what an engineer waits for: it lets the spare
get ready (as it is while they edit), then times a quick-case Check and a Profile of one candidate, several
rounds, and reports the median. A cold run (no spare) is timed once for comparison. Each verdict must
pass, so that a broken worker cannot look fast.

From the repo root:
    WORKBENCH_COMMIT=$(git rev-parse HEAD) PYTHONPATH=$PWD python3 benchmarks/loop_time.py --out $OUT
Writes benchmarks/results/<device>/loop/summary.json (device, torch, triton, commit, command, check_s,
profile_s, ...) and raw.json under --out (default: this repo); prints a short table last.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(task: str, args, warm: bool = True) -> dict:
    from workbench.porting import worker

    if warm and not worker.prestart(wait=args.ready_timeout):
        raise RuntimeError(f"the spare worker was not ready within {args.ready_timeout} s")
    start = time.monotonic()
    result = worker.run(
        task,
        args.candidate,
        args.op,
        cases=["quick"],
        dtypes=args.dtypes,
        timeout=600,
        progress=False,
        warm=warm,
    )
    wall = time.monotonic() - start  # what the caller waits for, the run's own bookkeeping included
    ok = result.passed if task == "check" else result.ok and result.bench is not None
    if not ok:
        raise RuntimeError(f"{task}: {result.status}: {result.summary}\n{result.traceback}\n{result.log}")
    return {
        "task": task,
        "warm": result.warm,
        "seconds": round(wall, 3),
        "result_seconds": round(result.seconds, 3),
        "startup_s": round(result.startup_s, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=REPO, help="directory that receives benchmarks/results/..."
    )
    parser.add_argument("--candidate", type=Path, default=REPO / "tests" / "candidates" / "rms_norm_rows.py")
    parser.add_argument("--op", default="rms_norm")
    parser.add_argument("--dtypes", nargs="+", default=["fp32"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ready-timeout", type=float, default=120.0)
    args = parser.parse_args()

    from workbench.store.meta import results_dir, run_metadata

    meta = run_metadata()
    rows = [timed("check", args, warm=False)]  # cold, for comparison
    for _ in range(args.rounds):
        rows.append(timed("check", args))
        rows.append(timed("profile", args))

    def median(task: str) -> float:
        return round(statistics.median(r["seconds"] for r in rows if r["task"] == task and r["warm"]), 3)

    summary = {
        "device": meta["device"],
        "backend": meta["backend"],
        "torch": meta["torch"],
        "triton": meta["triton"],
        "commit": meta["commit"],
        "dirty": meta["dirty"],
        "command": " ".join([sys.executable, *sys.argv]),
        "candidate": str(
            args.candidate.relative_to(REPO) if args.candidate.is_relative_to(REPO) else args.candidate
        ),
        "op": args.op,
        "cases": "quick",
        "dtypes": args.dtypes,
        "rounds": args.rounds,
        "check_s": median("check"),
        "profile_s": median("profile"),
        "cold_check_s": rows[0]["seconds"],
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = results_dir(args.out, "loop", meta)
    (out / "raw.json").write_text(json.dumps(rows, indent=1) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"{'task':8s} {'warm':5s} {'seconds':>8s} {'startup_s':>9s}")
    for r in rows:
        print(f"{r['task']:8s} {str(r['warm']):5s} {r['seconds']:8.2f} {r['startup_s']:9.2f}")
    print(
        f"{meta['device']}: check {summary['check_s']} s, profile {summary['profile_s']} s "
        f"(cold check {summary['cold_check_s']} s) -> {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
