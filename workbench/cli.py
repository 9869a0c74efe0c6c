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


def add_sweep_options(p: argparse.ArgumentParser, store_help: str) -> None:
    """--devices and --worker-timeout (one worker process per device, workbench/sweep.py) and --store."""
    p.add_argument("--devices", help="all | 0,1,... | cpu:N: one worker process per device, ops balanced by their "
                                     "measured cost, results merged (docs/store.md)")
    p.add_argument("--worker-timeout", type=float, default=3600.0, help="with --devices: seconds per worker")
    p.add_argument("--store", help=store_help + "; a SQLite path or postgresql:// URL")


def _store(location: str | None):
    """The ResultStore at --store (None without it), opened now so that a bad one fails before the run."""
    from workbench.store import ResultStore

    return ResultStore(location) if location else None


def _sweep(args, kind: str, params: dict) -> pd.DataFrame:
    """`kind` over --devices; the store (--store, else the default one) keeps the seconds per op."""
    from workbench import sweep
    from workbench.regression import default_store_path

    df, _ = sweep.run(kind, args.devices, params, store=_store(args.store or default_store_path()),
                      timeout=args.worker_timeout, log=lambda line: print(line, file=sys.stderr))
    return df


def cmd_check(args) -> int:
    backend = _bind_backend(args.backend)
    from workbench.profiling import check, failures

    rules = _launch_rules(args)
    if args.devices and rules:
        raise ValueError("--devices: not with --profile (launch rules are collected in one process)")
    params = {"ops": _split(args.ops), "cases": _split(args.cases) or ["quick"], "dtypes": _split(args.dtype),
              "seed": args.seed, "variant": args.variant}
    store = _store(args.store)
    df = _sweep(args, "check", params) if args.devices else check(**params, progress=not args.no_progress,
                                                                    rules=rules)
    if store:
        store.append(df.drop(columns=["traceback"]), kind="check")
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

    params = {"ops": _split(args.ops), "cases": _split(args.cases) or ["llm"],
              "dtypes": _split(args.dtype) or ["bf16"], "all_variants": args.all_variants, "seed": args.seed,
              "rep_ms": args.rep_ms}
    store = _store(args.store)
    if args.devices:
        df = _sweep(args, "bench", params)
        if store:
            store.append(df.drop(columns=["traceback"]), kind="bench")
    else:
        df = bench(**params, store=store, progress=not args.no_progress)
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


def cmd_model(args) -> int:
    """`workbench model [run]`: a Qwen3 model native vs workbench; `workbench model bisect`: find culprits."""
    _bind_backend(args.backend)
    from workbench import models

    common = {"checkpoint": args.checkpoint, "seed": args.seed, "batch": args.batch, "prompt_len": args.prompt_len}
    wide = pd.option_context("display.width", 200, "display.max_colwidth", 80, "display.max_rows", 200)
    if args.action == "bisect":
        result = models.bisect(args.preset, metric=args.metric, threshold=args.threshold, ops=_split(args.ops),
                               phase=args.phase, reps=args.reps, fuse=not args.no_fuse, **common)
        with wide:
            print(result.steps.to_string(index=False))
        print()
        print(result.describe())
        return 0
    if args.train:
        run = models.run_model(args.preset, train=True, train_steps=args.steps, include=_split(args.include),
                               exclude=_split(args.exclude), **common)
        with wide:
            steps = run.steps.pivot(index="step", columns="side", values=["loss", "grad_norm", "seconds"])
            print(steps.to_string())
        print()
        for key, value in run.summary().items():
            print(f"{key}: {value}")
        return 0
    run = models.run_model(args.preset, mode=args.mode, new_tokens=args.new_tokens,
                           cuda_graphs=False if args.no_graphs else None, include=_split(args.include),
                           exclude=_split(args.exclude), warmup=args.warmup, reps=args.reps, store=args.store,
                           fuse=not args.no_fuse, progress=True, loss=not args.no_loss,
                           sample_tokens=args.sample_tokens, **common)
    if args.out:
        models.write_tables(run, args.out)
    with wide:
        print(run.ratios().to_string(index=False))
        print()
        print(run.accuracy.to_string(index=False))
        print()
        print(run.profile.head(args.top).to_string(index=False))
    served = run.ops_served()
    print(f"\n{len(served)} distinct ATen ops served by workbench: {', '.join(served)}")
    return 0


def cmd_regress(args) -> int:
    """Execute notebooks/regression.ipynb through papermill; exit 1 on any failure it reports."""
    import datetime

    from workbench import regression

    _store(args.store)  # a bad store fails here, before the notebook starts
    out = args.out or f"out/regress/{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    params = {"backend": args.backend, "ops": _split(args.ops), "cases": _split(args.cases),
              "check_cases": _split(args.check_cases), "dtypes": _split(args.dtype),
              "check_dtypes": _split(args.check_dtype), "baseline": args.baseline, "threshold": args.threshold,
              "min_speedup": args.min_speedup, "rep_ms": args.rep_ms, "store": args.store, "seed": args.seed,
              "devices": args.devices, "worker_timeout": args.worker_timeout}
    result = regression.execute(params, out, notebook=args.notebook, cell_timeout=args.timeout,
                                progress=not args.no_progress)
    summary = result.summary or {}
    for line in summary.get("problems", [])[:40]:
        print(f"  {line}")
    print(f"executed notebook: {result.notebook}")
    if summary.get("report"):
        print(f"report: {summary['report']} ({len(summary.get('plots', []))} plots in {result.output_dir / 'plots'})")
    if result.ok:
        print(f"regress: PASS ({summary.get('check_rows', '?')} check rows, {summary.get('bench_rows', '?')} "
              f"bench rows, {summary.get('regressions', 0)} regressions)")
        return 0
    print(f"regress: FAIL: {result.error.splitlines()[0] if result.error else 'see the executed notebook'}",
          file=sys.stderr)
    return 1


def cmd_promote(args) -> int:
    _bind_backend(None)
    from workbench.porting.promotion import PromotionError, promote

    try:
        result = promote(args.file, args.op, backend=args.backend, force=args.force, root=args.root,
                         store=args.store, record_baseline=not args.no_baseline, timeout=args.timeout,
                         progress=not args.no_progress)
    except PromotionError as e:
        print(f"workbench promote: {e}", file=sys.stderr)
        run = e.promotion.verify or e.promotion.check
        if run is not None and run.traceback:
            print(run.traceback, file=sys.stderr)
        return 1
    print(result.message)
    return 0

def cmd_comm_bench(args) -> int:
    """Run under torchrun: every rank measures, rank 0 writes the CSV / PNG / store rows and prints."""
    import os

    import torch
    import torch.distributed as dist

    from workbench.comm import Communicator
    from workbench.comm import bench as cb

    rank = int(os.environ.get("RANK", "0"))
    devices, clusters = _split(args.devices), _split(args.clusters)
    comm = Communicator(devices[rank % len(devices)] if devices else None,
                        cluster=clusters[rank % len(clusters)] if clusters else None, timeout=args.timeout)
    failed = 0
    if args.selfcheck:
        from workbench.comm.selfcheck import selfcheck

        checks = selfcheck(comm)
        bad = checks[~checks["passed"]]
        for row in bad.head(args.tracebacks).itertuples():
            print(f"selfcheck rank {row.rank}: {row.op} {row.reduce} {row.dtype} {row.mode}: {row.detail}",
                  file=sys.stderr)
        counts = torch.tensor([len(bad), len(checks)], dtype=torch.int64)
        dist.all_reduce(counts, group=comm.host_group)
        failed = int(counts[0])
        if rank == 0:
            print(f"selfcheck ({cb.describe_clusters(comm)}): {int(counts[1]) - failed} passed, {failed} failed")
    impls = (["raw"] if not args.no_raw else []) + ["comm"] + (["comm_checked"] if args.checked else [])
    df = cb.bench(comm, collectives=_split(args.collectives) or cb.COLLECTIVES,
                  sizes=cb.size_range(args.min_bytes, args.max_bytes, args.factor), dtype=args.dtype,
                  impls=impls, reps=args.reps, min_time_s=args.min_time, progress=not args.no_progress)
    if rank == 0:
        command = f"torchrun --nproc_per_node={comm.world_size} -m workbench.cli {' '.join(sys.argv[1:])}"
        df = df.assign(command=command)
        if args.csv:
            df.to_csv(args.csv, index=False)
        if args.png:
            import matplotlib.pyplot as plt

            fig = cb.plot_busbw(df, cb.plot_title(df, command))
            fig.savefig(args.png, dpi=110)
            plt.close(fig)
        if args.store:
            from workbench.store import ResultStore

            meta = df.iloc[0][["device", "backend", "torch", "triton", "commit", "dirty", "timestamp", "host"]]
            print(f"stored run {ResultStore(args.store).append(df, 'comm', meta=meta.to_dict())} in {args.store}")
        table = df.pivot_table(index=["op", "bytes", "case"], columns="impl",
                               values=["busbw_gbps", "overhead"], sort=False)
        table = table.dropna(axis=1, how="all")
        table.columns = [f"{value}[{impl}]" for value, impl in table.columns]
        with pd.option_context("display.width", 250, "display.max_rows", None, "display.float_format",
                               "{:.4g}".format):
            print(table.reset_index().drop(columns="bytes").to_string(index=False))
            print(f"\n{cb.describe_clusters(comm)}, {df['device'].iloc[0]}, commit {str(df['commit'].iloc[0])[:10]}")
            print(cb.summary(df).to_string(index=False))
    comm.close()
    return 1 if failed else 0


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
    add_sweep_options(p, "append the table to this ResultStore (kind 'check')")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("bench", help="native vs Triton side by side: kernel and host time, GB/s, roofline")
    p.add_argument("ops", nargs="*", help="op names (default: all)")
    p.add_argument("--backend", choices=["cpu", "cuda", "mlu"], help="default: detected (mlu > cuda > cpu)")
    p.add_argument("--cases", nargs="+", help="case sets (default: llm)")
    p.add_argument("--dtype", nargs="+", help="fp32, fp16, bf16 (default: bf16)")
    p.add_argument("--all-variants", action="store_true", help="also time every backend variant (e.g. mlu)")
    add_sweep_options(p, "append the rows to this ResultStore")
    p.add_argument("--csv", help="write the full table to this CSV file")
    p.add_argument("--plot", help="write PNG plots into this folder")
    p.add_argument("--rep-ms", type=float, default=100.0, help="time budget of timed reps per measurement")
    p.add_argument("--seed", type=int)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("model", help="a Qwen3 model native vs workbench ops (run), or find culprit ops (bisect)")
    p.add_argument("action", nargs="?", choices=["run", "bisect"], default="run")
    p.add_argument("--preset", default="tiny", help="qwen3-8b, qwen3-0.6b or tiny (random weights)")
    p.add_argument("--checkpoint", help="a local checkpoint directory instead of a preset (no downloads)")
    p.add_argument("--backend", choices=["cpu", "cuda", "mlu"], help="default: detected (mlu > cuda > cpu)")
    p.add_argument("--mode", choices=["prefill", "decode", "both"], default="both")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=8)
    p.add_argument("--no-graphs", action="store_true", help="eager decode only, even where graphs exist")
    p.add_argument("--include", nargs="+", help="only these workbench ops (default: all)")
    p.add_argument("--exclude", nargs="+", help="all workbench ops but these")
    p.add_argument("--no-fuse", action="store_true", help="ATen ops only: leave transformers' RMSNorm, rotary "
                                                           "and MLP code unfused")
    p.add_argument("--no-loss", action="store_true", help="skip the loss pass (labels -> cross_entropy) of prefill")
    p.add_argument("--sample-tokens", type=int, help="tokens of the top-k sampling decode (default: --new-tokens; "
                                                     "0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train", action="store_true", help="AdamW training steps native vs workbench instead "
                                                         "(batch x prompt-len tokens per step)")
    p.add_argument("--steps", type=int, default=20, help="--train: training steps per side")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions (prefill; bisect: every phase)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first (0: none, e.g. in the interpreter)")
    p.add_argument("--store", help="ResultStore path: append the run's summary rows (kind 'model')")
    p.add_argument("--out", help="directory for the run's tables as CSV")
    p.add_argument("--top", type=int, default=25, help="profile rows to print")
    p.add_argument("--metric", choices=["accuracy", "throughput"], default="accuracy", help="bisect: what to explain")
    p.add_argument("--threshold", type=float, help="bisect: loss threshold (default: the issue's target)")
    p.add_argument("--phase", choices=["prefill", "decode"], default="prefill", help="bisect: throughput phase")
    p.add_argument("--ops", nargs="+", help="bisect: candidate ops (default: every op that served a call)")
    p.set_defaults(func=cmd_model)
    p = sub.add_parser("regress", help="run notebooks/regression.ipynb (check + bench vs baseline) via papermill; "
                                       "exit 1 on failure")
    p.add_argument("ops", nargs="*", help="op names (default: all)")
    p.add_argument("--backend", choices=["cpu", "cuda", "mlu"], help="default: detected (mlu > cuda > cpu)")
    p.add_argument("--cases", nargs="+", help="bench case sets (default: quick on cpu, llm on a GPU)")
    p.add_argument("--check-cases", nargs="+", help="correctness case sets (default: quick,edge; +llm on a GPU)")
    p.add_argument("--dtype", nargs="+", help="bench dtypes (default: fp32 on cpu, bf16 on a GPU)")
    p.add_argument("--check-dtype", nargs="+", help="correctness dtypes (default: fp32,bf16 on cpu; all on a GPU)")
    p.add_argument("--baseline", default="store", help="store (default) | update | none | a run id")
    p.add_argument("--threshold", type=float, help="relative slowdown vs baseline that fails (default: 0.1 on "
                                                   "a GPU; on cpu interpreter timings are not judged)")
    p.add_argument("--min-speedup", type=float, help="fail when a Triton kernel is below this speedup vs native")
    p.add_argument("--rep-ms", type=float, help="time budget per measurement")
    add_sweep_options(p, "the ResultStore (default: $WORKBENCH_STORE or out/workbench.db)")
    p.add_argument("--out", help="output folder (default: out/regress/<timestamp>)")
    p.add_argument("--notebook", help="the regression notebook (default: notebooks/regression.ipynb)")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per notebook cell")
    p.add_argument("--seed", type=int)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_regress)

    p = sub.add_parser("promote", help="check a candidate kernel file and write it into the package")
    p.add_argument("file", help="candidate .py file (format: workbench/porting/candidate.py)")
    p.add_argument("--op", required=True, help="the op it implements (registered: a variant; new: needs SPEC)")
    p.add_argument("--backend", choices=["cpu", "cuda", "mlu"],
                   help="backend the variant is for (default: the detected one, where it is checked)")
    p.add_argument("--force", action="store_true", help="replace an existing target, keeping a backup")
    p.add_argument("--root", help="tree whose workbench/ package receives it (default: this one)")
    p.add_argument("--store", help="ResultStore for the baseline (default: $WORKBENCH_STORE or out/workbench.db)")
    p.add_argument("--no-baseline", action="store_true", help="do not bench and record a baseline")
    p.add_argument("--timeout", type=float, default=1200.0, help="seconds per worker run")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_promote)

    p = sub.add_parser("comm-bench", help="collective bus bandwidth, Communicator vs raw torch.distributed "
                                          "(run under torchrun)")
    p.add_argument("--collectives", nargs="+", help="default: all_reduce all_gather reduce_scatter broadcast "
                                                     "all_to_all")
    p.add_argument("--min-bytes", default="1K", help="smallest message, e.g. 1K (default 1K)")
    p.add_argument("--max-bytes", default="1G", help="largest message, e.g. 64M (default 1G)")
    p.add_argument("--factor", type=int, default=2, help="size step factor (default 2)")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16", "int32"])
    p.add_argument("--devices", nargs="+", help="device per rank, cycled: e.g. cuda,cuda,cpu for a "
                                                 "heterogeneous job (default: detected backend)")
    p.add_argument("--clusters", nargs="+", help="cluster key per rank, cycled (default: device type)")
    p.add_argument("--checked", action="store_true", help="also time the Communicator with validation on")
    p.add_argument("--no-raw", action="store_true", help="skip the raw torch.distributed baseline")
    p.add_argument("--selfcheck", action="store_true", help="first check every operation's results")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--min-time", type=float, default=0.02, help="seconds per timed loop (sets iterations)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds before a blocking call fails")
    p.add_argument("--csv", help="rank 0 writes the table here")
    p.add_argument("--png", help="rank 0 writes the busbw / overhead plot here")
    p.add_argument("--store", help="rank 0 appends the rows to this ResultStore (SQLite file), kind 'comm'")
    p.add_argument("--tracebacks", type=int, default=5, help="selfcheck failures to print per rank")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_comm_bench)
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
