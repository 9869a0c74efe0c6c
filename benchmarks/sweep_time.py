"""`workbench regress` on one device vs `--devices all`: wall time and whether the verdicts agree.

Both runs are `workbench regress` subprocesses with the same ops, cases, dtypes and seed, each with a fresh
SQLite store (so neither has a baseline the other wrote: the verdicts are correctness, bench errors and wrong
results) and a fresh Triton cache (both compile from cold). Verdicts compared: the run's PASS/FAIL, every
check row's pass/fail/skip and every bench row's error/passed, keyed by (op, variant or impl, case, dtype).
Target: on a 2-GPU machine the sweep takes <= 0.6x the one-GPU time with equal verdicts.

    WORKBENCH_COMMIT=$(git rev-parse HEAD) PYTHONPATH=$PWD python3 benchmarks/sweep_time.py  # GPU
    PYTHONPATH=$PWD python benchmarks/sweep_time.py --smoke  # cpu: 2 workers

Writes summary.json (single_gpu_s, all_gpus_s, ratio, the CPU seconds of each run, rows, verdicts_equal,
device, workers, torch, triton, commit, command), verdicts.csv (both runs' verdict per row) and each
run's regress summary to benchmarks/results/<device>/sweep_x<workers>/ under --out (default: the repo);
the sweep's worker count is part of the topic, since one device kind runs it with 2, 4 or 8 workers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SMOKE_OPS = "add,mul,exp,silu,softmax,rms_norm,sum,cumsum,cat,gelu,layer_norm,where"


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def regress(label: str, args, devices: str | None, tmp: Path) -> tuple[float, float, dict, Path]:
    """One `workbench regress` run in a subprocess: (wall s, CPU s of it and its workers, its summary.json,
    its store)."""
    store, out = tmp / f"{label}.db", tmp / label
    command = [
        sys.executable,
        "-m",
        "workbench.cli",
        "regress",
        *(args.ops.split(",") if args.ops else []),
        "--store",
        str(store),
        "--out",
        str(out),
        "--seed",
        str(args.seed),
        "--no-progress",
    ]
    for flag, value in (
        ("--check-cases", args.check_cases),
        ("--cases", args.cases),
        ("--dtype", args.dtype),
        ("--check-dtype", args.check_dtype),
        ("--rep-ms", args.rep_ms),
    ):
        if value is not None:
            command += [flag, str(value)]
    command += ["--devices", devices] if devices else []
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRITON_CACHE_DIR": str(tmp / f"{label}-triton")}
    start, cpu = time.monotonic(), _children_cpu_s()
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds, cpu = time.monotonic() - start, _children_cpu_s() - cpu
    print(
        f"{label}: {seconds:.1f} s ({cpu:.1f} CPU s), exit {result.returncode}: "
        f"{result.stdout.strip().splitlines()[-1:]}"
    )
    summary_path = out / "summary.json"
    if not summary_path.exists():
        raise SystemExit(f"{label}: no summary.json; stderr:\n{result.stderr[-3000:]}")
    return seconds, cpu, json.loads(summary_path.read_text()), store


def verdicts(summary: dict, store_path: Path) -> pd.DataFrame:
    """One line per check / bench row: its key and verdict."""
    from workbench.store import ResultStore

    store = ResultStore(store_path, read_only=True)
    check = store.rows(summary["runs"]["check"])
    bench = store.rows(summary["runs"]["bench"])
    check_verdict = [
        "skip" if s else ("pass" if p is True else "fail")
        for s, p in zip(check["skipped"].fillna(""), check["passed"])
    ]
    bench_verdict = [
        "error" if e else ("wrong" if p is False else "ok")
        for e, p in zip(bench["error"].fillna(""), bench["passed"])
    ]
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "table": "check",
                    "op": check["op"],
                    "impl": check["variant"],
                    "case": check["case"],
                    "dtype": check["dtype"],
                    "verdict": check_verdict,
                }
            ),
            pd.DataFrame(
                {
                    "table": "bench",
                    "op": bench["op"],
                    "impl": bench["impl"],
                    "case": bench["case"],
                    "dtype": bench["dtype"],
                    "verdict": bench_verdict,
                }
            ),
        ],
        ignore_index=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="cpu: a few ops, quick cases, 2 workers")
    parser.add_argument("--devices", help="the sweep's --devices (default: all; cpu:2 with --smoke on cpu)")
    parser.add_argument("--ops", help="comma-separated ops (default: every op; a small set with --smoke)")
    parser.add_argument("--check-cases", help="default: quick on a GPU (regress's own default on cpu)")
    parser.add_argument("--cases", help="bench case sets (regress's default: llm on a GPU, quick on cpu)")
    parser.add_argument("--dtype", help="bench dtypes (regress's default)")
    parser.add_argument("--check-dtype", help="check dtypes (default: bf16 on a GPU)")
    parser.add_argument("--rep-ms", type=float, help="time budget per measurement (default: 10 on a GPU)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--out", default=str(REPO), help="directory that receives benchmarks/results/...")
    args = parser.parse_args()

    from workbench import backends
    from workbench.store.meta import results_dir, run_metadata

    backend = backends.active()
    meta = run_metadata()
    if backend.name == "cpu":
        args.devices = args.devices or "cpu:2"
        args.ops = args.ops or (SMOKE_OPS if args.smoke else None)
        args.check_dtype = args.check_dtype or "fp32"
    else:
        args.devices = args.devices or "all"
        args.check_cases = args.check_cases or "quick"
        args.check_dtype = args.check_dtype or "bf16"
        args.rep_ms = args.rep_ms or 10.0
    from workbench import sweep

    workers = len(sweep.slots(args.devices, backend))
    out = results_dir(args.out, f"sweep_x{workers}", meta)
    with tempfile.TemporaryDirectory(prefix="workbench-sweep-time-") as tmp:
        tmp = Path(tmp)
        warm = subprocess.run(
            [sys.executable, "-c", "from workbench.profiling import roofline; roofline.peaks()"],
            env={**os.environ, "PYTHONPATH": str(REPO)},
            check=False,
        )  # cached ceilings first
        if warm.returncode:
            print("warning: could not measure the roofline ceilings ahead of the runs", file=sys.stderr)
        single_s, single_cpu, single, single_store = regress("single", args, None, tmp)
        all_s, all_cpu, swept, swept_store = regress("all", args, args.devices, tmp)
        one, many = verdicts(single, single_store), verdicts(swept, swept_store)
        (out / "regress_single.json").write_text(json.dumps(single, indent=1, default=str))
        (out / "regress_all.json").write_text(json.dumps(swept, indent=1, default=str))
    key = ["table", "op", "impl", "case", "dtype"]
    joined = one.merge(many, on=key, how="outer", suffixes=("_single", "_all"), indicator=True)
    joined.to_csv(out / "verdicts.csv", index=False)
    equal = bool(
        (joined["_merge"] == "both").all()
        and (joined["verdict_single"] == joined["verdict_all"]).all()
        and single["verdict"] == swept["verdict"]
    )
    summary = {
        "single_gpu_s": round(single_s, 2),
        "all_gpus_s": round(all_s, 2),
        "ratio": round(all_s / single_s, 3),
        "single_cpu_s": round(single_cpu, 1),
        "all_cpu_s": round(all_cpu, 1),
        "host_cpus": os.cpu_count(),
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
        "rows": len(joined),
        "verdicts_equal": equal,
        "verdict_single": single["verdict"],
        "verdict_all": swept["verdict"],
        "device": "cpu" if backend.name == "cpu" else meta["device"],
        "workers": workers,
        "devices": args.devices,
        "ops": args.ops or "all",
        "torch": meta["torch"],
        "triton": meta["triton"],
        "commit": meta["commit"],
        "command": "python benchmarks/sweep_time.py " + " ".join(sys.argv[1:]),
        "note": (
            "cpu: Triton interpreter workers on a shared CPU, not GPUs; where *_cpu_s is far below "
            "*_s x workers the processes waited for a core and no sweep can be faster"
            if backend.name == "cpu"
            else ""
        ),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(
        pd.DataFrame(
            [
                {
                    k: summary[k]
                    for k in (
                        "device",
                        "workers",
                        "single_gpu_s",
                        "all_gpus_s",
                        "ratio",
                        "rows",
                        "verdicts_equal",
                    )
                }
            ]
        ).to_string(index=False)
    )
    print(f"-> {out}")
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
