"""The `workbench` command: list ops, check and bench them, run models, regressions and promotions.

Every subcommand imports what it needs when it runs, so `--help`, `--version` and `list` start fast.
Options that take several values take them comma-separated in one word (`--cases quick,edge`), so
they never swallow the op names that follow. Paths are checked before a run starts: a bad one is
reported on one line and the command exits 2.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from workbench import __version__

# The backend names a user may pass; `workbench.backends.BACKENDS` holds the same names (a test keeps
# them equal) but importing it loads torch, which `--help` and the parser should not wait for.
BACKEND_NAMES = ("cpu", "cuda", "mlu")
LIST_WIDTH = 100  # `workbench list` fits a terminal this wide


class PathError(ValueError):
    """A path given on the command line cannot serve: printed as one line, exit status 2."""


# ---- small helpers ---------------------------------------------------------------------------------


def comma_list(text: str) -> list[str]:
    """The type of every multi-value option: one word, values separated by commas."""
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated values, got {text!r}")
    return values


def _bind_backend(name: str | None):
    from workbench import backends

    return backends.active(name)


def _progress_over(ops: list[str], action: str, enabled: bool):
    """An iterator over op names that shows a tqdm bar naming the op in hand (on stderr)."""
    from tqdm.auto import tqdm

    bar = tqdm(ops, desc=action, unit="op", disable=not enabled, leave=False, dynamic_ncols=True)
    for op in bar:
        bar.set_postfix_str(op, refresh=True)
        yield op


def _sweep(args, kind: str, params: dict):
    """`kind` over --devices, one worker process per device (workbench/sweep.py); the store (--store, else
    the default one) keeps each op's seconds, which balance the next sweep."""
    from workbench import sweep
    from workbench.store import ResultStore, default_store_path

    df, _ = sweep.run(
        kind,
        args.devices,
        params,
        store=ResultStore(args.store or default_store_path()),
        timeout=args.worker_timeout,
        log=lambda line: print(line, file=sys.stderr),
    )
    return df


def _selected_ops(names: list[str] | None) -> list[str]:
    from workbench.ops import spec as opspec

    return [opspec.get(n).name for n in names] if names else list(opspec.REGISTRY)


def _say_defaults(command: str, backend, chosen: dict) -> None:
    """Tell on stderr which defaults were filled in for this backend, so a short run is no surprise."""
    if chosen:
        given = " ".join(
            f"--{k.replace('_', '-')} {','.join(v) if isinstance(v, list) else v}" for k, v in chosen.items()
        )
        print(
            f"workbench {command}: on {backend.name}{' (interpreter)' if backend.interpreted else ''}: "
            f"{given} (pass them to choose)",
            file=sys.stderr,
        )


# ---- checking paths before a run -------------------------------------------------------------------


def _probe_dir(folder: Path) -> str | None:
    """None when a file can be created in `folder` (tried for real: root ignores permission bits)."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".workbench-probe-"):
            return None
    except OSError as e:
        return f"cannot write in {str(folder)!r} ({e.strerror or e})"


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _output_file(path: Path) -> str | None:
    if path.is_dir():
        return "is a directory, expected a file"
    if not path.parent.is_dir():
        return f"its directory {str(path.parent)!r} does not exist"
    return _probe_dir(path.parent)


def _output_dir(path: Path) -> str | None:
    if path.exists() and not path.is_dir():
        return "exists and is not a directory"
    base = _existing_ancestor(path)
    if not base.is_dir():
        return f"{str(base)!r} is a file, so the directory cannot be made"
    return _probe_dir(base)


def _store(location: str) -> str | None:
    """A ResultStore (SQLite path or postgresql:// URL) opens: the store's own checks (a corrupt file, an
    unreachable server, a newer schema) say why not."""
    from workbench.store import ResultStore, StoreError

    try:
        ResultStore(location)
    except StoreError as e:
        return str(e)
    return None


def _input_file(path: Path) -> str | None:
    if not path.exists():
        return "not found"
    return None if path.is_file() else "is not a file"


def _input_dir(path: Path) -> str | None:
    if not path.exists():
        return "not found"
    return None if path.is_dir() else "is not a directory"


def _package_root(path: Path) -> str | None:
    return _input_dir(path) or (
        None if (path / "workbench" / "__init__.py").is_file() else "holds no workbench/ package"
    )


# dest -> (how the path is named in messages, its check). Every subcommand's path options are listed
# here, so a new path option is checked by adding one line.
PATH_CHECKS = {
    "store": ("--store", _store),
    "csv": ("--csv", _output_file),
    "rules_csv": ("--rules-csv", _output_file),
    "png": ("--png", _output_file),
    "plot": ("--plot", _output_dir),
    "out": ("--out", _output_dir),
    "notebook": ("--notebook", _input_file),
    "file": ("candidate file", _input_file),
    "root": ("--root", _package_root),
    "checkpoint": ("--checkpoint", _input_dir),
}


def check_paths(args: argparse.Namespace) -> None:
    """Raise PathError naming the first path option that cannot serve, before anything runs."""
    for dest, (label, check) in PATH_CHECKS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        reason = check(str(value) if dest == "store" else Path(value).expanduser())
        if reason:
            # the store's own message names it as "store <location>", any password masked
            shown = (
                f"{label} {reason.removeprefix('store ')}"
                if dest == "store"
                else f"{label} {value}: {reason}"
            )
            raise PathError(shown)


# ---- commands --------------------------------------------------------------------------------------


def _list_rows() -> list[tuple[str, ...]]:
    """(op, implementation per backend, ATen overloads) for every registered op."""
    from workbench.ops import REGISTRY

    rows = []
    for spec in REGISTRY.values():
        cells = []
        for name in BACKEND_NAMES:
            status = spec.status.get(name, "-")
            cells.append(spec.variant_name(name) + ("" if status == "promoted" else f" ({status})"))
        aten = ", ".join(a.removeprefix("aten::") for a in spec.aten) or "- (fused)"
        rows.append((spec.name, *cells, aten))
    return rows


def cmd_list(args) -> int:
    from workbench import backends

    backend = _bind_backend(args.backend)
    header = ("op", *BACKEND_NAMES, "ATen overloads")
    rows = [header, *_list_rows()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    for row in rows:
        line = "  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1]
        print(line if len(line) <= LIST_WIDTH else line[: LIST_WIDTH - 1] + "…")
    print(
        "\nper backend: the implementation that runs there (generic: the op's own kernel; draft: unverified)"
    )
    for name in BACKEND_NAMES:
        why = backends.BACKENDS[name].missing()
        print(f"{name:5s} {'available' if why is None else 'unavailable: ' + why}"[:LIST_WIDTH])
    print(f"active: {backend.name}")
    return 0


def _launch_rules(args):
    """The MLU launch rules `--profile` asks for (None without it), with --cores / --nram-kib applied."""
    if not args.profile:
        if args.cores is not None or args.nram_kib is not None:
            raise ValueError("--cores / --nram-kib: only with --profile")
        return None
    from workbench.ops.mlu.rules import LaunchRules

    nram = args.nram_kib * 1024 if args.nram_kib is not None else None
    return LaunchRules.for_device(args.profile, cores=args.cores, nram_bytes=nram)


def cmd_check(args) -> int:
    import pandas as pd

    backend = _bind_backend(args.backend)
    from workbench.profiling import check, failures
    from workbench.profiling.correctness import parse_dtypes

    ops = _selected_ops(args.ops)
    parse_dtypes(args.dtype)  # a bad dtype fails before the first op runs
    rules = _launch_rules(args)
    if args.devices:
        if rules:
            raise ValueError("--devices: not with --profile (launch rules are collected in one process)")
        df = _sweep(
            args,
            "check",
            {
                "ops": ops,
                "cases": args.cases,
                "dtypes": args.dtype,
                "seed": args.seed,
                "variant": args.variant,
                "algorithm": args.algorithm,
                "backward": args.backward,
            },
        )
    else:
        parts = [
            check(
                ops=[op],
                cases=args.cases,
                dtypes=args.dtype,
                seed=args.seed,
                progress=False,
                variant=args.variant,
                rules=rules,
                algorithm=args.algorithm,
                backward=args.backward,
            )
            for op in _progress_over(ops, "check", not args.no_progress)
        ]
        df = pd.concat(parts, ignore_index=True)
    if args.store:
        from workbench.store import ResultStore

        ResultStore(args.store).append(df.drop(columns=["traceback"]), kind="check")
    columns = ["op", "variant", "case", "dtype", *(["direction"] if args.backward else [])]
    columns += ["shape", "rel_err", "max_abs_err", "tol", "passed"]
    columns += (["violations"] if rules else []) + ["skipped", "error"]
    with pd.option_context("display.width", 200, "display.max_colwidth", 60, "display.max_rows", None):
        print(df[columns].to_string(index=False))
    if args.csv:
        from workbench.store.meta import run_metadata

        df.drop(columns=["traceback"]).assign(**run_metadata()).to_csv(args.csv, index=False)
    failed = failures(df)
    skipped = int((df["skipped"] != "").sum())
    print(
        f"\nbackend {backend.name} ({backend.properties().name}), seed {int(df['seed'].min())}: "
        f"{len(df) - len(failed) - skipped} passed, {len(failed)} failed, {skipped} skipped"
    )
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


def _bench_defaults(args, backend) -> None:
    """Cases, dtypes and rep time the regression run uses on this backend, where none were given."""
    from workbench.regression import default_params

    defaults = default_params(backend.name)
    chosen = {}
    for key, default_key in (("cases", "cases"), ("dtype", "dtypes"), ("rep_ms", "rep_ms")):
        if getattr(args, key) is None:
            setattr(args, key, defaults[default_key])
            chosen[key] = defaults[default_key]
    _say_defaults("bench", backend, chosen)


def _bench_op_by_op(args, ops: list[str], store, run_metadata):
    """bench() op after op behind a progress bar; with a store, every row goes to one run as it is made."""
    import pandas as pd

    from workbench.profiling import bench

    run_id = store.start_run("bench", run_metadata()) if store else None  # one run for every op
    parts, status = [], "failed"
    try:
        for op in _progress_over(ops, "bench", not args.no_progress):
            part = bench(
                ops=[op],
                cases=args.cases,
                dtypes=args.dtype,
                all_variants=args.all_variants,
                seed=args.seed,
                rep_ms=args.rep_ms,
                peers=args.peers or (),
                algorithm=args.algorithm,
                progress=False,
            )
            for row in part.drop(columns=["traceback", "run_id"]).to_dict("records") if store else ():
                store.add_row(run_id, row)
            parts.append(part)
        status = "done"
    finally:
        if store:
            store.finish_run(run_id, status)
    return pd.concat(parts, ignore_index=True).assign(run_id=run_id)


def cmd_bench(args) -> int:
    import pandas as pd

    backend = _bind_backend(args.backend)
    from workbench.profiling import side_by_side
    from workbench.profiling.correctness import parse_dtypes
    from workbench.store import ResultStore
    from workbench.store.meta import run_metadata

    ops = _selected_ops(args.ops)
    _bench_defaults(args, backend)
    parse_dtypes(args.dtype)
    store = ResultStore(args.store) if args.store else None
    if args.devices:
        df = _sweep(
            args,
            "bench",
            {
                "ops": ops,
                "cases": args.cases,
                "dtypes": args.dtype,
                "all_variants": args.all_variants,
                "seed": args.seed,
                "rep_ms": args.rep_ms,
                "peers": args.peers or (),
                "algorithm": args.algorithm,
            },
        )
        if store:
            store.append(df.drop(columns=["traceback"]), kind="bench")
    else:
        df = _bench_op_by_op(args, ops, store, run_metadata)
    table = side_by_side(df)
    with pd.option_context(
        "display.width",
        250,
        "display.max_colwidth",
        40,
        "display.max_rows",
        None,
        "display.float_format",
        "{:.4g}".format,
    ):
        print(table.to_string(index=False))
    if args.csv:
        df.drop(columns=["traceback"]).to_csv(args.csv, index=False)
    if args.plot:
        from workbench.reports.figures import bench_figures, save_figures

        save_figures(bench_figures(df), args.plot)
    errors = table[table["error"].fillna("") != ""]
    wrong = table[table["passed"].eq(False)]
    print(
        f"\nbackend {backend.name} ({df['device'].iloc[0]}): {len(table)} Triton rows, "
        f"{len(wrong)} incorrect, {len(errors)} errors; median speedup {table['speedup'].median():.3g}"
    )
    return 1 if len(errors) or len(wrong) else 0


def cmd_model(args) -> int:
    """`workbench model [run]`: a Qwen3 model native vs workbench; `workbench model bisect`: find culprits."""
    import importlib.util

    import pandas as pd

    if importlib.util.find_spec("transformers") is None:
        raise ValueError("model: needs transformers, an optional extra: pip install -e '.[models]'")
    _bind_backend(args.backend)
    from workbench import models

    common = {
        "checkpoint": args.checkpoint,
        "seed": args.seed,
        "batch": args.batch,
        "prompt_len": args.prompt_len,
    }
    wide = pd.option_context("display.width", 200, "display.max_colwidth", 80, "display.max_rows", 200)
    if args.action == "bisect":
        result = models.bisect(
            args.preset,
            metric=args.metric,
            threshold=args.threshold,
            ops=args.ops,
            phase=args.phase,
            reps=args.reps,
            fuse=not args.no_fuse,
            execution=args.execution,
            **common,
        )
        with wide:
            print(result.steps.to_string(index=False))
        print()
        print(result.describe())
        return 0
    if args.train:
        run = models.run_model(
            args.preset,
            train=True,
            train_steps=args.steps,
            cuda_graphs=False if args.no_graphs else None,
            include=args.include,
            exclude=args.exclude,
            execution=args.execution,
            **common,
        )
        with wide:
            steps = run.steps.pivot(index="step", columns="side", values=["loss", "grad_norm", "seconds"])
            print(steps.to_string())
        print()
        for key, value in run.summary().items():
            print(f"{key}: {value}")
        return 0
    run = models.run_model(
        args.preset,
        mode=args.mode,
        new_tokens=args.new_tokens,
        cuda_graphs=False if args.no_graphs else None,
        include=args.include,
        exclude=args.exclude,
        warmup=args.warmup,
        reps=args.reps,
        store=args.store,
        fuse=not args.no_fuse,
        execution=args.execution,
        progress=True,
        loss=not args.no_loss,
        sample_tokens=args.sample_tokens,
        **common,
    )
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
    summary = run.summary()
    missed = summary[summary["met"].eq(False)]["metric"].tolist()
    print(f"targets missed: {', '.join(missed)}" if missed else "every target met")
    return 1 if missed and args.strict else 0


def cmd_regress(args) -> int:
    """Execute notebooks/regression.ipynb through papermill; exit 1 on any failure it reports."""
    import datetime

    from workbench import regression

    out = args.out or f"out/regress/{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    params = {
        "backend": args.backend,
        "ops": args.ops or None,
        "cases": args.cases,
        "check_cases": args.check_cases,
        "dtypes": args.dtype,
        "check_dtypes": args.check_dtype,
        "baseline": args.baseline,
        "threshold": args.threshold,
        "min_speedup": args.min_speedup,
        "rep_ms": args.rep_ms,
        "store": args.store,
        "seed": args.seed,
        "devices": args.devices,
        "worker_timeout": args.worker_timeout,
        "peers": args.peers,
    }
    result = regression.execute(
        params, out, notebook=args.notebook, cell_timeout=args.timeout, progress=not args.no_progress
    )
    summary = result.summary or {}
    for line in summary.get("problems", [])[:40]:
        print(f"  {line}")
    print(f"executed notebook: {result.notebook}")
    if summary.get("report"):
        print(
            f"report: {summary['report']} "
            f"({len(summary.get('plots', []))} plots in {result.output_dir / 'plots'})"
        )
    if result.ok:
        print(
            f"regress: PASS ({summary.get('check_rows', '?')} check rows, {summary.get('bench_rows', '?')} "
            f"bench rows, {summary.get('regressions', 0)} regressions)"
        )
        return 0
    print(
        f"regress: FAIL: {result.error.splitlines()[0] if result.error else 'see the executed notebook'}",
        file=sys.stderr,
    )
    return 1


def cmd_promote(args) -> int:
    _bind_backend(None)
    from workbench.porting.promotion import PromotionError, promote, recover

    if args.recover:
        for line in recover(args.root, args.op):
            print(line)
        return 0
    if not args.file or not args.op:
        print("workbench promote: expected a candidate file and --op (or --recover)", file=sys.stderr)
        return 2
    try:
        result = promote(
            args.file,
            args.op,
            backend=args.backend,
            force=args.force,
            root=args.root,
            store=args.store,
            record_baseline=not args.no_baseline,
            timeout=args.timeout,
            progress=not args.no_progress,
        )
    except PromotionError as e:
        print(f"workbench promote: {e}", file=sys.stderr)
        run = e.promotion.verify or e.promotion.check
        if run is not None and run.traceback:
            print(run.traceback, file=sys.stderr)
        return 1
    if result.recovered:
        print(result.recovered)
    print(result.message)
    return 0


def cmd_tune(args) -> int:
    """Pre-tune a model's shape set (each key's choice goes to the store's tuning cache); show / clear it."""
    import pandas as pd

    from workbench.profiling import tuning
    from workbench.store import ResultStore

    store = ResultStore(args.store) if args.store else tuning.default_store()
    if args.clear:
        store.clear_tuning()
        print(f"tuning cache cleared in {store.location}")
        return 0
    if args.show:
        rows = store.tuning_rows()
        with pd.option_context("display.width", 250, "display.max_colwidth", 90, "display.max_rows", None):
            print(rows.to_string(index=False) if len(rows) else f"tuning cache in {store.location} is empty")
        return 0
    if not args.model:
        raise ValueError("tune: give --model, --show or --clear")
    _bind_backend(args.backend)
    from workbench.models.pretune import pretune  # after the backend is bound: workbench.models fixes it

    tuning.install(cache=store)
    df = pretune(
        args.model,
        ops=args.ops,
        tokens=[int(t) for t in args.tokens],
        dtype=args.dtype,
        progress=not args.no_progress,
    )
    with pd.option_context("display.width", 200, "display.max_rows", None):
        print(df.to_string(index=False))
    print(f"\n{int(df['tuned'].sum())} keys tuned, {int(df['from_cache'].sum())} found in {store.location}")
    return 0


def cmd_comm_bench(args) -> int:
    """Run under torchrun: every rank measures, rank 0 writes the CSV / PNG / store rows and prints."""
    import os

    import pandas as pd
    import torch
    import torch.distributed as dist

    from workbench.comm import Communicator
    from workbench.comm import bench as cb

    rank = int(os.environ.get("RANK", "0"))
    devices, clusters = args.devices, args.clusters
    comm = Communicator(
        devices[rank % len(devices)] if devices else None,
        cluster=clusters[rank % len(clusters)] if clusters else None,
        timeout=args.timeout,
    )
    failed = 0
    if args.selfcheck:
        from workbench.comm.selfcheck import selfcheck

        checks = selfcheck(comm)
        bad = checks[~checks["passed"]]
        for row in bad.head(args.tracebacks).itertuples():
            print(
                f"selfcheck rank {row.rank}: {row.op} {row.reduce} {row.dtype} {row.mode}: {row.detail}",
                file=sys.stderr,
            )
        counts = torch.tensor([len(bad), len(checks)], dtype=torch.int64)
        dist.all_reduce(counts, group=comm.host_group)
        failed = int(counts[0])
        if rank == 0:
            print(
                f"selfcheck ({cb.describe_clusters(comm)}): {int(counts[1]) - failed} passed, {failed} failed"
            )
    impls = (["raw"] if not args.no_raw else []) + ["comm"] + (["comm_checked"] if args.checked else [])
    df = cb.bench(
        comm,
        collectives=args.collectives or cb.COLLECTIVES,
        sizes=cb.size_range(args.min_bytes, args.max_bytes, args.factor),
        dtype=args.dtype,
        impls=impls,
        reps=args.reps,
        min_time_s=args.min_time,
        progress=not args.no_progress,
    )
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

            meta = df.iloc[0][
                ["device", "backend", "torch", "triton", "commit", "dirty", "timestamp", "host"]
            ]
            print(
                f"stored run {ResultStore(args.store).append(df, 'comm', meta=meta.to_dict())} "
                f"in {args.store}"
            )
        table = df.pivot_table(
            index=["op", "bytes", "case"], columns="impl", values=["busbw_gbps", "overhead"], sort=False
        )
        table = table.dropna(axis=1, how="all")
        table.columns = [f"{value}[{impl}]" for value, impl in table.columns]
        with pd.option_context(
            "display.width", 250, "display.max_rows", None, "display.float_format", "{:.4g}".format
        ):
            print(table.reset_index().drop(columns="bytes").to_string(index=False))
            print(
                f"\n{cb.describe_clusters(comm)}, {df['device'].iloc[0]}, "
                f"commit {str(df['commit'].iloc[0])[:10]}"
            )
            print(cb.summary(df).to_string(index=False))
    comm.close()
    return 1 if failed else 0


# ---- the parser: one step per subcommand, shared option definitions -------------------------------


class _IntermixedParser(argparse.ArgumentParser):
    """A subcommand's parser that takes op names before, between and after options
    (`workbench check rms_norm --cases quick silu`)."""

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):
        if self._intermixing:  # parse_known_intermixed_args calls back here on some Pythons
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def _command(sub, name: str, func, summary: str, description: str, examples: str) -> argparse.ArgumentParser:
    """A subcommand with a one-line summary (in `workbench --help`), a description and examples."""
    p = sub.add_parser(
        name,
        help=summary,
        description=f"{summary}.\n\n{description}",
        epilog="examples:\n" + "\n".join(f"  {line}" for line in examples.strip().splitlines()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=func)
    return p


def _backend_option(p, what: str = "default: detected (mlu > cuda > cpu)") -> None:
    p.add_argument("--backend", choices=BACKEND_NAMES, help=what)


def _values(p, flag: str, what: str, **kw) -> None:
    """An option taking several values as one comma-separated word (it never eats what follows)."""
    p.add_argument(flag, type=comma_list, metavar="A,B", help=what, **kw)


def _op_runs(p, cases: str, dtypes: str, default_cases: list[str] | None = None) -> None:
    """What check, bench and regress run: the ops, the backend, --cases and --dtype."""
    p.add_argument("ops", nargs="*", metavar="OP", help="op names (default: all)")
    _backend_option(p)
    _values(p, "--cases", cases, default=default_cases)
    _values(p, "--dtype", dtypes)


def _sweep_options(p, store_help: str) -> None:
    """--devices and --worker-timeout (one worker process per device, workbench/sweep.py) and --store."""
    p.add_argument(
        "--devices",
        help="all | 0,1,... | cpu:N: one worker process per device, ops balanced by "
        "their measured cost, results merged (docs/store.md)",
    )
    p.add_argument("--worker-timeout", type=float, default=3600.0, help="with --devices: seconds per worker")
    p.add_argument(
        "--store", help=store_help + "; a SQLite path or postgresql:// URL (default: $WORKBENCH_STORE)"
    )


def _common_run_options(p) -> None:
    p.add_argument("--seed", type=int, help="seed of the random inputs (default: fresh)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")


def _add_list(sub) -> None:
    p = _command(
        sub,
        "list",
        cmd_list,
        "ops x backends: which implementation runs where",
        "One line per registered op: the implementation each backend runs and the ATen overloads\n"
        "the op can replace; then which backends this machine has.",
        "workbench list\nworkbench list --backend cpu",
    )
    _backend_option(p)


def _add_check(sub) -> None:
    p = _command(
        sub,
        "check",
        cmd_check,
        "correctness against float64 references; exit 1 on any failure",
        "Runs each (op, case, dtype) on fresh random inputs and compares with the native op on\n"
        "float64 inputs (docs/correctness.md). With --profile, also enforces the MLU launch rules.",
        "workbench check --cases quick rms_norm softmax\n"
        "workbench check mm --cases quick,edge,llm --dtype bf16 --csv check.csv\n"
        "workbench check --variant mlu --profile mlu370 --cases quick,edge\n"
        "workbench check rms_norm cross_entropy --backward --dtype bf16",
    )
    _op_runs(
        p,
        "case sets: quick, edge, llm (default: quick)",
        "fp32, fp16, bf16 (default: every dtype the op takes)",
        default_cases=["quick"],
    )
    _common_run_options(p)
    p.add_argument("--csv", help="also write the full table to this CSV file")
    p.add_argument("--tracebacks", type=int, default=3, help="tracebacks of failures to print (default 3)")
    p.add_argument("--variant", help="run this implementation (generic, mlu, ...), not the backend's own")
    p.add_argument("--algorithm", help="run this named algorithm of each op that has one (e.g. topk's merge)")
    p.add_argument(
        "--backward",
        action="store_true",
        help="also check the backward of every op that has one: each input's gradient against float64 "
        "autograd (a row with direction 'backward' after the forward one)",
    )
    p.add_argument(
        "--profile",
        type=str.lower,
        choices=["mlu", "mlu370", "mlu590"],
        help="also enforce the MLU launch rules for this device (mlu: $WORKBENCH_MLU_DEVICE "
        "or MLU590); exit 1 on any violation",
    )
    p.add_argument("--cores", type=int, help="with --profile: the device's core count")
    p.add_argument("--nram-kib", type=int, help="with --profile: NRAM per core in KiB")
    p.add_argument("--rules-csv", help="with --profile: write the violations to this CSV file")
    _sweep_options(p, "append the table to this ResultStore (kind 'check')")


def _add_bench(sub) -> None:
    p = _command(
        sub,
        "bench",
        cmd_bench,
        "native vs Triton side by side: kernel and host time, GB/s, roofline",
        "Times the native op and each Triton implementation on the same inputs in one process.\n"
        "Defaults follow the backend: llm cases in bf16 on a GPU; quick cases in fp32 with a short\n"
        "time budget on the cpu interpreter (stderr says which defaults were used).",
        "workbench bench rms_norm mm --cases llm --dtype bf16 --csv bench.csv --plot plots/\n"
        "workbench bench --cases quick softmax --store out/workbench.db",
    )
    _op_runs(
        p, "case sets (default: llm on a GPU, quick on cpu)", "dtypes (default: bf16 on a GPU, fp32 on cpu)"
    )
    p.add_argument("--all-variants", action="store_true", help="also time every backend variant (e.g. mlu)")
    _values(p, "--peers", "also time these peers on the same inputs: inductor, flaggems (extra 'peers')")
    _sweep_options(p, "append the rows to this ResultStore as one run")
    p.add_argument("--algorithm", help="time this named algorithm of the ops that have it (topk: merge)")
    p.add_argument("--csv", help="write the full table to this CSV file")
    p.add_argument("--plot", help="write the PNG figures into this folder")
    p.add_argument(
        "--rep-ms",
        type=float,
        help="time budget of timed reps per measurement (default: 100 on a GPU, 20 on cpu)",
    )
    _common_run_options(p)


def _add_model(sub) -> None:
    p = _command(
        sub,
        "model",
        cmd_model,
        "a Qwen3 model native vs workbench ops (run), or find culprit ops (bisect)",
        "run: the same weights and prompt natively, then on workbench kernels; prints throughput\n"
        "ratios, accuracy, coverage and a per-op profile. The targets are set for qwen3-8b in bf16\n"
        "on a GPU: missing one exits 0 unless --strict is given (then 1). bisect: halve the op set\n"
        "to find the ops behind an accuracy or throughput loss.",
        "workbench model --preset tiny --mode both --prompt-len 16 --new-tokens 6\n"
        "workbench model --preset qwen3-8b --batch 8 --prompt-len 512 --strict\n"
        "workbench model bisect --preset qwen3-8b --metric throughput --phase decode",
    )
    p.add_argument("action", nargs="?", choices=["run", "bisect"], default="run")
    p.add_argument("--preset", default="tiny", help="qwen3-8b, qwen3-0.6b or tiny (random weights)")
    p.add_argument("--checkpoint", help="a local checkpoint directory instead of a preset (no downloads)")
    _backend_option(p)
    p.add_argument("--mode", choices=["prefill", "decode", "both"], default="both")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=8)
    p.add_argument(
        "--no-graphs",
        action="store_true",
        help="no CUDA graphs even where they exist: eager decode; --train: compiled steps not replayed",
    )
    _values(p, "--include", "only these workbench ops (default: all)")
    _values(p, "--exclude", "all workbench ops but these")
    p.add_argument(
        "--execution",
        choices=["compile", "eager"],
        help="our side: torch.compile with the workbench backend, or use_ops eagerly "
        "(default: compile where the backend compiles kernels, eager in the interpreter)",
    )
    p.add_argument(
        "--no-fuse",
        action="store_true",
        help="compiled execution: no fusion patterns (RMSNorm, residual add + RMSNorm, rotary, gated MLP)",
    )
    p.add_argument(
        "--no-loss", action="store_true", help="skip the loss pass (labels -> cross_entropy) of prefill"
    )
    p.add_argument(
        "--sample-tokens",
        type=int,
        help="tokens of the top-k sampling decode (default: --new-tokens; 0: none)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--train",
        action="store_true",
        help="AdamW training steps native vs workbench instead (batch x prompt-len tokens per step)",
    )
    p.add_argument("--steps", type=int, default=20, help="--train: training steps per side")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions (prefill; bisect: every phase)")
    p.add_argument(
        "--warmup", type=int, default=1, help="untimed runs first (0: none, e.g. in the interpreter)"
    )
    p.add_argument("--store", help="ResultStore path: append the run's summary rows (kind 'model')")
    p.add_argument("--out", help="directory for the run's tables as CSV")
    p.add_argument("--top", type=int, default=25, help="profile rows to print")
    p.add_argument("--strict", action="store_true", help="run: exit 1 when any target is missed")
    p.add_argument(
        "--metric", choices=["accuracy", "throughput"], default="accuracy", help="bisect: what to explain"
    )
    p.add_argument("--threshold", type=float, help="bisect: loss threshold (default: the metric's target)")
    p.add_argument(
        "--phase", choices=["prefill", "decode"], default="prefill", help="bisect: throughput phase"
    )
    _values(p, "--ops", "bisect: candidate ops (default: every op that served a call)")


def _add_regress(sub) -> None:
    p = _command(
        sub,
        "regress",
        cmd_regress,
        "correctness + bench against the stored baseline; exit 1 on any failure",
        "Executes notebooks/regression.ipynb through papermill and writes the executed notebook,\n"
        "report.html (headline first) and its figures to --out. On cpu: small cases, timings shown\n"
        "but not judged; on a GPU: llm cases in bf16, a >10% slowdown fails.",
        "workbench regress --out out/regress\n"
        "workbench regress rms_norm softmax --cases llm --dtype bf16 --threshold 0.05",
    )
    _op_runs(
        p,
        "bench case sets (default: quick on cpu, llm on a GPU)",
        "bench dtypes (default: fp32 on cpu, bf16 on a GPU)",
    )
    _values(p, "--check-cases", "correctness case sets (default: quick,edge; +llm on a GPU)")
    _values(p, "--check-dtype", "correctness dtypes (default: fp32,bf16 on cpu; all on a GPU)")
    p.add_argument("--baseline", default="store", help="store (default) | update | none | a run id")
    p.add_argument(
        "--threshold",
        type=float,
        help="relative slowdown vs baseline that fails (default: 0.1 on "
        "a GPU; on cpu interpreter timings are not judged)",
    )
    p.add_argument(
        "--min-speedup", type=float, help="fail when a Triton kernel is below this speedup vs native"
    )
    p.add_argument("--rep-ms", type=float, help="time budget per measurement")
    _values(
        p,
        "--peers",
        "also bench these peers beside native, shown in the report, not judged: inductor, "
        "flaggems (extra 'peers')",
    )
    _sweep_options(p, "the ResultStore holding baselines (default: out/workbench.db)")
    p.add_argument("--out", help="output folder (default: out/regress/<timestamp>)")
    p.add_argument("--notebook", help="the regression notebook (default: notebooks/regression.ipynb)")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per notebook cell")
    _common_run_options(p)


def _add_promote(sub) -> None:
    p = _command(
        sub,
        "promote",
        cmd_promote,
        "check a candidate kernel file and write it into the package",
        "Checks every quick and edge case in every dtype in a worker process, imports the module\n"
        "from a staged copy of the package, then writes workbench/ops/variants/<op>_<backend>.py\n"
        "(or workbench/ops/<op>.py for a new op) and records its bench as the baseline.",
        "workbench promote my_rms_norm.py --op rms_norm\n"
        "workbench promote my_new_op.py --op my_new_op --force\n"
        "workbench promote --recover",
    )
    p.add_argument("file", nargs="?", help="candidate .py file (format: workbench/porting/candidate.py)")
    p.add_argument("--op", help="the op it implements (registered: a variant; new: needs SPEC)")
    p.add_argument(
        "--recover",
        action="store_true",
        help="finish or roll back promotions that were interrupted (of --op, default: all)",
    )
    _backend_option(p, "backend the variant is for (default: the detected one, where it is checked)")
    p.add_argument("--force", action="store_true", help="replace an existing target, keeping a backup")
    p.add_argument("--root", help="tree whose workbench/ package receives it (default: this one)")
    p.add_argument(
        "--store", help="ResultStore for the baseline (default: $WORKBENCH_STORE or out/workbench.db)"
    )
    p.add_argument("--no-baseline", action="store_true", help="do not bench and record a baseline")
    p.add_argument("--timeout", type=float, default=1200.0, help="seconds per worker run")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")


def _add_comm_bench(sub) -> None:
    p = _command(
        sub,
        "comm-bench",
        cmd_comm_bench,
        "collective bus bandwidth, Communicator vs raw torch.distributed (under torchrun)",
        "Times all_reduce, all_gather, reduce_scatter, broadcast and all_to_all over a range of\n"
        "message sizes; rank 0 writes the table, a busbw plot and store rows.",
        "torchrun --standalone --nproc_per_node=2 -m workbench.cli comm-bench --selfcheck --csv comm.csv\n"
        "torchrun --standalone --nproc_per_node=3 -m workbench.cli comm-bench --devices cuda,cuda,cpu",
    )
    _values(p, "--collectives", "default: all_reduce,all_gather,reduce_scatter,broadcast,all_to_all")
    p.add_argument("--min-bytes", default="1K", help="smallest message, e.g. 1K (default 1K)")
    p.add_argument("--max-bytes", default="1G", help="largest message, e.g. 64M (default 1G)")
    p.add_argument("--factor", type=int, default=2, help="size step factor (default 2)")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16", "int32"])
    _values(
        p,
        "--devices",
        "device per rank, cycled: e.g. cuda,cuda,cpu for a heterogeneous job (default: detected backend)",
    )
    _values(p, "--clusters", "cluster key per rank, cycled (default: device type)")
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
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")


def _add_tune(sub) -> None:
    p = _command(
        sub,
        "tune",
        cmd_tune,
        "pre-tune a model's kernels into the tuning cache; --show / --clear it",
        "Tunes every autotuned kernel on the shapes a model runs (its linears and attention) and\n"
        "keeps each choice in the results store's tuning cache, per device, kernel source, key and\n"
        "triton version; later processes use it without tuning (docs/measurement.md).",
        "workbench tune --model qwen3-8b\n"
        "workbench tune --model llama-3-8b --ops linear --tokens 1,8,2048\n"
        "workbench tune --show",
    )
    p.add_argument("--model", help="qwen3-8b, llama-3-8b, qwen3-0.6b or tiny")
    _values(p, "--ops", "linear, scaled_dot_product_attention (default: both)")
    _values(
        p,
        "--tokens",
        "rows of the linears / prompt lengths of attention (default: 1,8,2048)",
        default=["1", "8", "2048"],
    )
    p.add_argument("--dtype", default="bf16", choices=["fp32", "fp16", "bf16"])
    _backend_option(p)
    p.add_argument("--store", help="ResultStore path or URL (default: $WORKBENCH_STORE or out/workbench.db)")
    p.add_argument("--show", action="store_true", help="print the cached choices")
    p.add_argument("--clear", action="store_true", help="delete every cached choice")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")


SUBCOMMANDS = (
    _add_list,
    _add_check,
    _add_bench,
    _add_model,
    _add_regress,
    _add_promote,
    _add_tune,
    _add_comm_bench,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench",
        description=__doc__.split("\n\n")[0],
        epilog="`workbench COMMAND --help` describes a command, with examples.",
    )
    parser.add_argument("--version", action="version", version=f"workbench {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_IntermixedParser
    )
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_paths(args)
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError) as e:  # PathError too: bad input, one line, exit 2
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
