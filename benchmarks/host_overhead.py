"""Host cost per call of every op at its smallest `llm` case: native vs workbench under each launch path.

The host target: a Triton op call at decode size costs at most 10 µs more than the native op.
Each launch path runs in its own process, since ops/_launch.py reads WORKBENCH_FAST_LAUNCH at import:
  triton   WORKBENCH_FAST_LAUNCH=0  kernel[grid](...) every call (Triton binds and specialises)
  cached   WORKBENCH_FAST_LAUNCH=1  the launch cache of ops/_launch.py, the default
Host time = best-of-5 wall clock per call over back-to-back calls without a sync
(workbench.profiling.timing.host_time_us), on the same inputs for native and ours. Each mode's outputs are
compared with native's so that a broken launch path cannot look fast.

From the repo root on a GPU machine:
    WORKBENCH_COMMIT=$(git rev-parse HEAD) PYTHONPATH=$PWD python3 benchmarks/host_overhead.py --out $OUT
Writes benchmarks/results/<device>/host/host_overhead.csv (and host_overhead_rows.jsonl, the rows as the
children wrote them) under --out (default: the repo) and prints the table (µs per call, and ours minus
native).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

# (label, WORKBENCH_FAST_LAUNCH) per child process; the default runs first and last, so that a warm-up
# effect on the host shows as a gap between its two runs
RUNS = [("cached", "1"), ("triton", "0"), ("cached again", "1")]


def smallest_llm_case(spec):
    from workbench.profiling.correctness import make_inputs

    best = None
    for case in spec.cases["llm"]():
        args, kwargs = make_inputs(case, __import__("torch").bfloat16, 0)
        size = sum(a.numel() for a in args if hasattr(a, "numel"))
        if best is None or size < best[0]:
            best = (size, case, args, kwargs)
    return best[1:]


def measure(mode: str, ops: list[str], log: Path) -> None:
    """Runs in a child process with WORKBENCH_FAST_LAUNCH set for `mode`;
    appends a JSON line per op to log."""
    import torch

    from workbench import backends
    from workbench.ops import REGISTRY
    from workbench.profiling.correctness import verify
    from workbench.profiling.timing import host_time_us

    for op in ops:
        spec = REGISTRY[op]
        case, args, kwargs = smallest_llm_case(spec)
        fn = spec.implementation(backends.active().name)
        row = {"op": op, "case": case.name, "mode": mode}
        try:
            with torch.inference_mode():
                fn(*args, **kwargs)  # compiles; the next call is the first on the cached path
                row["passed"] = bool(verify(spec, fn, case, torch.bfloat16, args, kwargs)["passed"])
                row["native_us"] = host_time_us(lambda: spec.reference(*args, **kwargs), calls=500, repeats=3)
                row["workbench_us"] = host_time_us(lambda: fn(*args, **kwargs), calls=500, repeats=3)
        except Exception as e:  # noqa: BLE001 - a row per op, whatever happens
            row["error"] = f"{type(e).__name__}: {e}"[:300]
        with open(log, "a") as f:  # row by row: a run cut short keeps what it measured
            f.write(json.dumps(row) + "\n")
        print(
            f"{mode:7s} {op:30s} {row.get('native_us', 0):6.1f} {row.get('workbench_us', 0):6.1f} us "
            f"{row.get('error', '')}",
            file=sys.stderr,
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parents[1]),
        help="directory that receives benchmarks/results/...",
    )
    parser.add_argument("--ops", nargs="*", default=None)
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: measure this launch path
    parser.add_argument("--rows", type=Path, help=argparse.SUPPRESS)  # internal: the child's JSON lines
    args = parser.parse_args()
    if args.child:
        measure(args.child, args.ops, args.rows)
        return

    import pandas as pd

    from workbench.ops import REGISTRY
    from workbench.store.meta import results_dir, run_metadata

    ops = args.ops or sorted(REGISTRY)
    meta = run_metadata()
    out = results_dir(args.out, "host", meta)
    log = out / "host_overhead_rows.jsonl"
    log.unlink(missing_ok=True)
    for mode, env_value in RUNS:
        env = dict(os.environ, WORKBENCH_FAST_LAUNCH=env_value)
        child = subprocess.run(
            [sys.executable, __file__, "--child", mode, "--rows", str(log), "--ops", *ops],
            env=env,
            check=False,
        )
        if child.returncode != 0:
            raise SystemExit(f"mode {mode} failed with exit status {child.returncode}")
    df = pd.DataFrame([json.loads(line) for line in log.read_text().splitlines()])
    df["overhead_us"] = df["workbench_us"] - df["native_us"]
    df = df.assign(**{k: meta[k] for k in ("device", "torch", "triton", "commit")})
    path = out / "host_overhead.csv"
    df.to_csv(path, index=False)
    table = df.pivot_table(index=["op", "case"], columns="mode", values="overhead_us")
    table.insert(0, "native_us", df.groupby(["op", "case"])["native_us"].median())
    print(f"{meta['device']} · torch {meta['torch']} · triton {meta['triton']} · µs above native per call")
    print(table.round(1).to_string())
    bad = df[(df.get("passed") == False) | df.get("error", pd.Series(dtype=object)).notna()]  # noqa: E712
    if not bad.empty:
        print("FAILED or errored:\n" + bad.to_string())
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
