"""The `workbench` command: list ops, check them against native references, and more."""

from __future__ import annotations

import argparse
import sys

import pandas as pd


def _split(values: list[str] | None) -> list[str] | None:
    """Accept both `--cases quick,edge` and `--cases quick edge`."""
    if not values:
        return None
    return [v for item in values for v in item.split(",") if v]


def _bind_backend(name: str | None):
    from workbench import backends

    return backends.active(name)


def cmd_list(args) -> int:
    from workbench import backends

    _bind_backend(args.backend)
    from workbench.ops import REGISTRY

    rows = []
    for spec in REGISTRY.values():
        row = {"op": spec.name, "aten": ", ".join(spec.aten)}
        for name in backends.BACKENDS:
            row[name] = f"{spec.status.get(name, '-')} ({spec.variant_name(name)})"
        rows.append(row)
    print(pd.DataFrame(rows).to_string(index=False))
    print()
    for name, b in backends.BACKENDS.items():
        why = b.missing()
        print(f"{name:5s} {'available' if why is None else 'unavailable: ' + why}")
    print(f"active: {backends.active().name}")
    return 0


def _launch_rules(args):
    """The MLU launch rules `--profile` asks for (None without it), with --cores / --nram-kib applied."""
    if not args.profile:
        if args.cores is not None or args.nram_kib is not None:
            raise ValueError("--cores / --nram-kib: only with --profile")
        return None
    from workbench.profiling.launch_rules import LaunchRules

    nram = args.nram_kib * 1024 if args.nram_kib is not None else None
    return LaunchRules.for_device(args.profile, cores=args.cores, nram_bytes=nram)


def cmd_check(args) -> int:
    backend = _bind_backend(args.backend)
    from workbench.profiling import check, failures

    rules = _launch_rules(args)
    df = check(ops=_split(args.ops), cases=_split(args.cases) or ["quick"], dtypes=_split(args.dtype),
               seed=args.seed, progress=not args.no_progress, variant=args.variant, rules=rules)
    columns = ["op", "variant", "case", "dtype", "shape", "rel_err", "max_abs_err", "tol", "passed"]
    columns += (["violations"] if rules else []) + ["skipped", "error"]
    with pd.option_context("display.width", 200, "display.max_colwidth", 60, "display.max_rows", None):
        print(df[columns].to_string(index=False))
    if args.csv:
        from workbench.profiling.meta import run_metadata

        df.drop(columns=["traceback"]).assign(**run_metadata()).to_csv(args.csv, index=False)
    failed = failures(df)
    skipped = int((df["skipped"] != "").sum())
    print(f"\nbackend {backend.name} ({backend.properties().name}), seed {int(df['seed'].min())}: "
          f"{len(df) - len(failed) - skipped} passed, {len(failed)} failed, {skipped} skipped")
    for tb in failed["traceback"].dropna().unique()[: args.tracebacks]:
        print(tb, file=sys.stderr)
    if rules is None:
        return 1 if len(failed) else 0
    violations = rules.violations()
    if len(violations):
        with pd.option_context("display.width", 250, "display.max_colwidth", 110, "display.max_rows", None):
            print("\nMLU launch-rule violations:")
            print(violations.to_string(index=False))
    if args.rules_csv:
        violations.to_csv(args.rules_csv, index=False)
    print(rules.summary())
    return 1 if len(failed) or len(violations) else 0


def cmd_bench(args) -> int:
    backend = _bind_backend(args.backend)
    from workbench.profiling import bench, side_by_side

    df = bench(ops=_split(args.ops), cases=_split(args.cases) or ["llm"], dtypes=_split(args.dtype) or ["bf16"],
               all_variants=args.all_variants, store=args.store, seed=args.seed, rep_ms=args.rep_ms,
               progress=not args.no_progress)
    table = side_by_side(df)
    with pd.option_context("display.width", 250, "display.max_colwidth", 40, "display.max_rows", None,
                           "display.float_format", "{:.4g}".format):
        print(table.to_string(index=False))
    if args.csv:
        df.drop(columns=["traceback"]).to_csv(args.csv, index=False)
    if args.plot:
        save_bench_plots(df, args.plot)
    errors = table[table["error"].fillna("") != ""]
    wrong = table[table["passed"].eq(False)]
    print(f"\nbackend {backend.name} ({df['device'].iloc[0]}): {len(table)} Triton rows, "
          f"{len(wrong)} incorrect, {len(errors)} errors; median speedup {table['speedup'].median():.3g}")
    return 1 if len(errors) or len(wrong) else 0


def save_bench_plots(df, folder: str) -> list[str]:
    """Speedup bars, roofline scatter and one latency-vs-size plot per op, as PNGs in `folder`."""
    import os

    import matplotlib.pyplot as plt

    from workbench.profiling import plots, roofline

    os.makedirs(folder, exist_ok=True)
    figures = {"speedup.png": plots.speedup_bars(df), "roofline.png": plots.roofline_scatter(df, roofline.peaks())}
    figures.update({f"latency_{op}.png": plots.latency_vs_size(df, op) for op in sorted(set(df["op"]))})
    paths = []
    for name, fig in figures.items():
        paths.append(os.path.join(folder, name))
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="ops x backends with their status")
    p.add_argument("--backend", choices=["cpu", "cuda", "mlu"])
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("check", help="correctness of ops against float64 references; exit 1 on failure")
    p.add_argument("ops", nargs="*", help="op names (default: all)")
    p.add_argument("--backend", choices=["cpu", "cuda", "mlu"], help="default: detected (mlu > cuda > cpu)")
    p.add_argument("--cases", nargs="+", help="case sets: quick, edge, llm (comma or space separated)")
    p.add_argument("--dtype", nargs="+", help="fp32, fp16, bf16 (default: all)")
    p.add_argument("--seed", type=int, help="seed for the random inputs (default: fresh)")
    p.add_argument("--csv", help="also write the full table to this CSV file")
    p.add_argument("--tracebacks", type=int, default=3, help="tracebacks of failures to print")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--variant", help="run this implementation (generic, mlu, ...), not the backend's own")
    p.add_argument("--profile", type=str.lower, choices=["mlu", "mlu370", "mlu590"],
                   help="also enforce the MLU launch rules for this device (mlu: $WORKBENCH_MLU_DEVICE "
                        "or MLU590); exit 1 on any violation")
    p.add_argument("--cores", type=int, help="with --profile: the device's core count")
    p.add_argument("--nram-kib", type=int, help="with --profile: NRAM per core in KiB")
    p.add_argument("--rules-csv", help="with --profile: write the violations to this CSV file")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("bench", help="native vs Triton side by side: kernel and host time, GB/s, roofline")
    p.add_argument("ops", nargs="*", help="op names (default: all)")
    p.add_argument("--backend", choices=["cpu", "cuda", "mlu"], help="default: detected (mlu > cuda > cpu)")
    p.add_argument("--cases", nargs="+", help="case sets (default: llm)")
    p.add_argument("--dtype", nargs="+", help="fp32, fp16, bf16 (default: bf16)")
    p.add_argument("--all-variants", action="store_true", help="also time every backend variant (e.g. mlu)")
    p.add_argument("--store", help="append the rows to this ResultStore (SQLite file)")
    p.add_argument("--csv", help="write the full table to this CSV file")
    p.add_argument("--plot", help="write PNG plots into this folder")
    p.add_argument("--rep-ms", type=float, default=100.0, help="time budget of timed reps per measurement")
    p.add_argument("--seed", type=int)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError) as e:
        print(f"workbench: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        from workbench.backends import BackendUnavailable

        if isinstance(e, BackendUnavailable):
            print(f"workbench: error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
