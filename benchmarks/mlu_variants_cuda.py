"""The MLU variants on a CUDA GPU: correctness, MLU launch rules, and speed next to the generic kernel.

Run from the repo root on a GPU machine (the device copy has no .git, so pass the commit):
    WORKBENCH_COMMIT=<commit> PYTHONPATH=$PWD python3 benchmarks/mlu_variants_cuda.py --out $OUT

Phases, most important first, each written as soon as it ends (a run cut short keeps them):
1. correctness of every op's mlu variant on the quick + llm cases in bf16, under the MLU launch-rules
   profile (default MLU figures; on cuda the profile reads each compiled kernel's TTIR);
2. kernel time of native vs generic vs mlu variant on the llm cases (the bench's kernel timer: median,
   L2 flushed, host gaps kept out);
3. the generic kernels under the same rules on the same cases (how far they are from the MLU's rules).
The mlu variants launch as many programs as the default MLU has cores (12 programs of 4 warps for 48
cores), so on a 132-SM H100 they are expected to be slower than the generic kernels: the column says
what the MLU style costs on a GPU, not how fast it is on an MLU. Work that would start past --budget-s
(counted from process start) is skipped and listed. Files, in benchmarks/results/<device>/mlu/ under --out
(default: the repo): mlu_variants_cuda_{check,violations,timing}.csv and mlu_variants_cuda_summary.json;
a summary table is printed last.
"""

from __future__ import annotations

import time

START = time.monotonic()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402

from workbench import backends  # noqa: E402
from workbench.ops import REGISTRY  # noqa: E402
from workbench.profiling import check_rules  # noqa: E402
from workbench.profiling.correctness import dtype_name, failures, make_inputs, parse_dtypes  # noqa: E402
from workbench.store.meta import results_dir, run_metadata  # noqa: E402

VARIANTS = ("mlu", "generic")
STEM = "mlu_variants_cuda"


def correctness(variant, ops, cases, dtype, deadline) -> tuple[list, list, list[str]]:
    frames, violations, skipped = [], [], []
    for op in ops:
        if time.monotonic() > deadline:
            skipped.append(f"check {variant} {op}")
            continue
        df, rules = check_rules(
            ops=[op], cases=cases, dtypes=[dtype], variant=variant, seed=0, progress=False
        )
        frames.append(df.drop(columns=["traceback"]))
        violations.append(rules.violations())
    return frames, violations, skipped


def median_ms(call, warmup_ms: float, rep_ms: float) -> float:
    """The bench's kernel timer: median device time, L2 flushed, host gaps kept out by a device-side hold."""
    from workbench.profiling.timing import kernel_time

    return kernel_time(call, warmup_ms=warmup_ms, rep_ms=rep_ms, min_reps=3).ms


def time_op(op, case_set, dtype, warmup_ms: float, rep_ms: float, deadline) -> tuple[list[dict], list[str]]:
    rows, skipped = [], []
    spec = REGISTRY[op]
    torch_dtype = parse_dtypes([dtype])[0]
    for i, case in enumerate(spec.case_list(case_set)):
        if case.big:
            continue
        if time.monotonic() > deadline:
            skipped.append(f"time {op} {case.name}")
            continue
        args, kwargs = make_inputs(case, torch_dtype, seed=i)
        impls = {"native": spec.reference, "generic": spec.impl, "mlu": spec.variant("mlu")}
        for impl, fn in impls.items():
            row = {"op": op, "case": case.name, "dtype": dtype_name(torch_dtype), "impl": impl, "error": ""}
            try:

                def call(fn=fn, args=args, kwargs=kwargs):
                    return fn(*args, **kwargs)

                call()  # compile / autotune outside the measurement
                row["ms"] = median_ms(call, warmup_ms, rep_ms)
            except Exception as e:  # an error cell; the table goes on
                row["error"] = f"{type(e).__name__}: {e}"
            rows.append(row)
    return rows, skipped


def speedups(times: pd.DataFrame) -> pd.DataFrame:
    if times.empty:
        return times.assign(speedup_vs_native=None)
    native = times[times["impl"] == "native"].set_index(["op", "case"])["ms"]
    ratio = [native.get((r.op, r.case)) / r.ms if r.ms == r.ms and r.ms else None for r in times.itertuples()]
    return times.assign(speedup_vs_native=ratio)


def summary(check: pd.DataFrame, violations: pd.DataFrame, times: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for op in dict.fromkeys(list(check["op"]) + list(times["op"])):
        row = {"op": op}
        for variant in VARIANTS:
            part = check[(check["op"] == op) & (check["variant"] == variant) & (check["skipped"] == "")]
            row[f"{variant}_correct"] = f"{int(part['passed'].sum())}/{len(part)}" if len(part) else "not run"
            v = violations[(violations["op"] == op) & (violations["variant"] == variant)]
            rules = "clean" if v.empty else ",".join(sorted(set(v["rule"])))
            row[f"{variant}_rules"] = rules if len(part) else "not run"
        for impl in VARIANTS:
            t = times[(times["op"] == op) & (times["impl"] == impl)]["speedup_vs_native"].dropna()
            row[f"{impl}_speedup_median"] = round(float(t.median()), 3) if len(t) else None
        rows.append(row)
    return pd.DataFrame(rows)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parents[1]),
        help="directory that receives benchmarks/results/...",
    )
    parser.add_argument("--ops", nargs="*", help="default: every op with an mlu variant")
    parser.add_argument("--cases", default="quick,llm", help="case sets for the correctness passes")
    parser.add_argument("--timing-cases", default="llm", help="case set timed")
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=95.0,
        help="start no work past this many seconds after process start",
    )
    parser.add_argument("--warmup-ms", type=float, default=10.0)
    parser.add_argument("--rep-ms", type=float, default=40.0)
    args = parser.parse_args()

    backend = backends.active()
    if backend.interpreted:
        print("warning: running on the cpu interpreter; timings say nothing about a GPU", file=sys.stderr)
    meta = run_metadata()
    out = results_dir(args.out, "mlu", meta)
    ops = args.ops or [name for name, spec in REGISTRY.items() if "mlu" in spec.variant_names()]
    cases = args.cases.split(",")
    check_frames, violation_frames, time_rows, skipped = [], [], [], []

    def tables():
        check = (
            pd.concat(check_frames, ignore_index=True)
            if check_frames
            else pd.DataFrame(
                columns=["op", "variant", "case", "dtype", "passed", "skipped", "rel_err", "error"]
            )
        )
        violations = (
            pd.concat(violation_frames, ignore_index=True)
            if violation_frames
            else pd.DataFrame(columns=["op", "variant", "rule"])
        )
        times = speedups(pd.DataFrame(time_rows, columns=["op", "case", "dtype", "impl", "ms", "error"]))
        return check, violations, times

    def write(phase: str):
        check, violations, times = tables()
        check.assign(**meta).to_csv(out / f"{STEM}_check.csv", index=False)
        violations.assign(**meta).to_csv(out / f"{STEM}_violations.csv", index=False)
        times.assign(**meta).to_csv(out / f"{STEM}_timing.csv", index=False)
        (out / f"{STEM}_summary.json").write_text(
            json.dumps(
                {
                    "meta": meta,
                    "done": phase,
                    "elapsed_s": round(time.monotonic() - START, 1),
                    "skipped": skipped,
                    "summary": summary(check, violations, times).to_dict(orient="records"),
                },
                indent=1,
                default=str,
            )
        )
        print(f"[{time.monotonic() - START:5.0f} s] {phase} written", flush=True)

    budget = START + args.budget_s
    frames, violations, skip = correctness("mlu", ops, cases, args.dtype, START + 0.45 * args.budget_s)
    check_frames += frames
    violation_frames += violations
    skipped += skip
    write("1 mlu correctness + rules")
    for op in ops:
        rows, skip = time_op(
            op, args.timing_cases, args.dtype, args.warmup_ms, args.rep_ms, START + 0.85 * args.budget_s
        )
        time_rows += rows
        skipped += skip
    write("2 timing")
    frames, violations, skip = correctness("generic", ops, cases, args.dtype, budget)
    check_frames += frames
    violation_frames += violations
    skipped += skip
    write("3 generic correctness + rules")

    check, violations, times = tables()
    bad = failures(check)
    for r in bad.itertuples():
        print(
            f"FAILED {r.op} [{r.variant}] {r.case} {r.dtype}: rel_err {r.rel_err} {r.error}", file=sys.stderr
        )
    for r in times[times["error"] != ""].itertuples():
        print(f"ERROR timing {r.op} {r.case} {r.impl}: {r.error}", file=sys.stderr)
    print(
        f"\n{meta['device']} · torch {meta['torch']} · triton {meta['triton']} · commit {meta['commit']} · "
        f"{time.monotonic() - START:.0f} s"
        + (f" · skipped (time budget): {', '.join(skipped)}" if skipped else "")
    )
    print(
        "speedup = native ms / impl ms (kernel timer median), llm cases; rules = MLU launch rules on the "
        "default MLU figures (docs/mlu.md)"
    )
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(summary(check, violations, times).to_string(index=False))
    return 1 if len(bad) else 0


if __name__ == "__main__":
    sys.exit(main())
