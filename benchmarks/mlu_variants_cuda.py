"""The MLU variants on a CUDA GPU: correctness, MLU launch rules, and speed next to the generic kernel.

Run from the repo root on a GPU machine (the device copy has no .git, so pass the commit):
    WORKBENCH_COMMIT=<commit> PYTHONPATH=$PWD python3 benchmarks/mlu_variants_cuda.py --out $OUT

1. correctness of each op's mlu variant and generic kernel on the quick + llm cases in bf16, both run
   under the MLU launch-rules profile (default MLU figures; the TTIR path of the profile);
2. kernel time of native vs generic vs mlu variant on the llm cases (triton.testing.do_bench median).
The mlu variants launch one program per MLU core (48 on the default figures, 12 for mm's 4-core
programs), so on a 132-SM H100 they are expected to be slower than the generic kernels: the column
says what the MLU style costs on a GPU, not how fast it is on an MLU.
Writes mlu_variants_cuda_{check,violations,timing}.csv and a summary JSON under --out; prints a summary
table last. Work past --budget-s is skipped (and reported) so that the run stays under ~2 minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

from workbench import backends
from workbench.ops import REGISTRY
from workbench.profiling.correctness import dtype_name, failures, make_inputs, parse_dtypes
from workbench.profiling.launch_rules import check_rules
from workbench.profiling.meta import run_metadata

VARIANTS = ("mlu", "generic")


def correctness(ops, cases, dtype, deadline) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    frames, violations, skipped = [], [], []
    for variant in VARIANTS:
        for op in ops:
            if time.monotonic() > deadline:
                skipped.append(f"check {variant} {op}")
                continue
            df, rules = check_rules(ops=[op], cases=cases, dtypes=[dtype], variant=variant, seed=0,
                                    progress=False)
            frames.append(df.drop(columns=["traceback"]))
            violations.append(rules.violations())
    return pd.concat(frames, ignore_index=True), pd.concat(violations, ignore_index=True), skipped


def median_ms(call, warmup_ms: float, rep_ms: float) -> float:
    """triton.testing.do_bench's median on a GPU; the workbench timer where Triton has no driver (cpu)."""
    if backends.active().interpreted:
        from workbench.profiling.timing import kernel_time

        return kernel_time(call, warmup_ms=warmup_ms, rep_ms=rep_ms, min_reps=3).ms
    import triton.testing

    return triton.testing.do_bench(call, warmup=warmup_ms, rep=rep_ms, return_mode="median")


def timing(ops, case_set, dtype, deadline, warmup_ms: float, rep_ms: float) -> tuple[pd.DataFrame, list[str]]:
    rows, skipped = [], []
    torch_dtype = parse_dtypes([dtype])[0]
    for op in ops:
        spec = REGISTRY[op]
        for i, case in enumerate(spec.case_list(case_set)):
            if time.monotonic() > deadline:
                skipped.append(f"time {op} {case.name}")
                continue
            args, kwargs = make_inputs(case, torch_dtype, seed=i)
            impls = {"native": spec.reference, "generic": spec.impl, "mlu": spec.variant("mlu")}
            for impl, fn in impls.items():
                row = {"op": op, "case": case.name, "dtype": dtype_name(torch_dtype), "impl": impl,
                       "error": ""}
                try:
                    fn(*args, **kwargs)  # compile / autotune outside the measurement
                    def call(fn=fn, args=args, kwargs=kwargs):
                        return fn(*args, **kwargs)

                    row["ms"] = median_ms(call, warmup_ms, rep_ms)
                except Exception as e:  # an error cell; the table goes on
                    row["error"] = f"{type(e).__name__}: {e}"
                rows.append(row)
    df = pd.DataFrame(rows, columns=["op", "case", "dtype", "impl", "ms", "error"])
    native = df[df["impl"] == "native"].set_index(["op", "case"])["ms"]
    df["speedup_vs_native"] = [native.get((r.op, r.case)) / r.ms if r.ms == r.ms and r.ms else None
                               for r in df.itertuples()]
    return df, skipped


def summary(check: pd.DataFrame, violations: pd.DataFrame, times: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for op in dict.fromkeys(check["op"]):
        row = {"op": op}
        for variant in VARIANTS:
            part = check[(check["op"] == op) & (check["variant"] == variant) & (check["skipped"] == "")]
            row[f"{variant}_correct"] = f"{int(part['passed'].sum())}/{len(part)}"
            v = violations[(violations["op"] == op) & (violations["variant"] == variant)]
            row[f"{variant}_rules"] = "clean" if v.empty else ",".join(sorted(set(v["rule"])))
        for impl in VARIANTS:
            t = times[(times["op"] == op) & (times["impl"] == impl)]["speedup_vs_native"].dropna()
            row[f"{impl}_speedup_median"] = round(float(t.median()), 3) if len(t) else None
        rows.append(row)
    return pd.DataFrame(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="out")
    parser.add_argument("--ops", nargs="*", help="default: every op with an mlu variant")
    parser.add_argument("--cases", default="quick,llm", help="case sets for the correctness pass")
    parser.add_argument("--timing-cases", default="llm", help="case set timed")
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--budget-s", type=float, default=110.0,
                        help="skip remaining work past this many seconds")
    parser.add_argument("--warmup-ms", type=float, default=10.0)
    parser.add_argument("--rep-ms", type=float, default=40.0)
    args = parser.parse_args()

    start = time.monotonic()
    backend = backends.active()
    if backend.interpreted:
        print("warning: running on the cpu interpreter; timings say nothing about a GPU", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = run_metadata()
    ops = args.ops or [name for name, spec in REGISTRY.items() if "mlu" in spec.variants]
    # correctness gets ~60% of the budget, timing the rest
    check, violations, skipped = correctness(ops, args.cases.split(","), args.dtype,
                                             start + 0.6 * args.budget_s)
    times, skipped_t = timing(ops, args.timing_cases, args.dtype, start + args.budget_s, args.warmup_ms,
                              args.rep_ms)
    skipped += skipped_t

    stem = "mlu_variants_cuda"
    check.assign(**meta).to_csv(out / f"{stem}_check.csv", index=False)
    violations.assign(**meta).to_csv(out / f"{stem}_violations.csv", index=False)
    times.assign(**meta).to_csv(out / f"{stem}_timing.csv", index=False)
    table = summary(check, violations, times)
    (out / f"{stem}_summary.json").write_text(json.dumps(
        {"meta": meta, "elapsed_s": round(time.monotonic() - start, 1), "skipped": skipped,
         "summary": table.to_dict(orient="records")}, indent=1, default=str))

    bad = failures(check)
    for r in bad.itertuples():
        print(f"FAILED {r.op} [{r.variant}] {r.case} {r.dtype}: rel_err {r.rel_err} {r.error}",
              file=sys.stderr)
    for r in times[times["error"] != ""].itertuples():
        print(f"ERROR timing {r.op} {r.case} {r.impl}: {r.error}", file=sys.stderr)
    print(f"\n{meta['device']} · torch {meta['torch']} · triton {meta['triton']} · commit {meta['commit']} · "
          f"{time.monotonic() - start:.0f} s"
          + (f" · skipped (time budget): {len(skipped)} items" if skipped else ""))
    print("speedup = native ms / impl ms (do_bench median), llm cases; rules = MLU launch rules "
          f"({', '.join(sorted(set(violations['rule']))) or 'none broken'}) on the default MLU figures")
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(table.to_string(index=False))
    return 1 if len(bad) else 0


if __name__ == "__main__":
    sys.exit(main())
