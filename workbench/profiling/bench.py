"""Side-by-side benchmark: the native op and each Triton variant on the same inputs, in one process.

One tidy row per (op, case, dtype, impl), the peers among them on request (torch.compile of the native
op, FlagGems; `peer_table` puts every implementation side by side as columns): kernel time (median, p20,
p80), host time per call, speedup (native ms / this ms, taken per round of alternated rounds of every
implementation: median, p20, p80 and `unstable` when that spread exceeds 5%; see timing.py), GB/s and
TFLOP/s from the op's cost model, % of the device roofline, every implementation's error against float64
on those same inputs, and for all but native the verdict on it. A variant or peer that fails (or is not
installed) gets an error cell saying why; the rest of the table still fills. Rows go to a ResultStore as
they are produced.
"""

from __future__ import annotations

import functools
import logging
import random
import time
import traceback
from typing import Callable, Iterable

import pandas as pd
from tqdm.auto import tqdm

from workbench import backends
from workbench.ops import spec as opspec
from workbench.store import ResultStore
from workbench.store.meta import run_metadata

from . import roofline as rl
from .correctness import dtype_name, make_inputs, parse_dtypes, selected_variant, shape_label, verify
from .timing import alternated_rounds, host_time_us

COLUMNS = [
    "op",
    "impl",
    "case",
    "dtype",
    "shape",
    "ms",
    "ms_p20",
    "ms_p80",
    "host_us",
    "speedup",
    "speedup_p20",
    "speedup_p80",
    "unstable",
    "gbps",
    "tflops",
    "roofline_pct",
    "bound",
    "rel_err",
    "passed",
    "native_passed",
    "suspect",
    "error",
]


PEERS = ("inductor", "flaggems")


# The impl name of our kernels as a model reaches them: the native op under `use_ops`
# (bench_case(dispatched=workbench.dispatch.through_use_ops)).
DISPATCHED = "workbench"


class PeerUnavailable(RuntimeError):
    """A peer library that is not installed here, fails to import or has no kernel for the call: its cells
    say so."""


@functools.cache
def flag_gems_import() -> tuple[object | None, str]:
    """(the flag_gems module, "") or (None, why it is not usable here). Imported once: a failing import
    (FlagGems built for another torch or triton raises more than ImportError) is not retried per case."""
    try:
        import flag_gems
    except ImportError as e:
        return None, f"flag_gems is not installed (pip install 'workbench[peers]'): {e}"
    except Exception as e:  # noqa: BLE001 - whatever its import raises is the reason its cells give
        return None, f"flag_gems failed to import: {type(e).__name__}: {e}"
    return flag_gems, ""


class _LoggingModules(logging.Handler):
    """The modules that logged through the `flag_gems` logger meanwhile (each FlagGems op logs its call at
    DEBUG level, through its module's logger): the logger's level is lowered inside and restored after."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.modules: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        self.modules.add(record.name)

    def __enter__(self) -> set[str]:
        logger = logging.getLogger("flag_gems")
        self._level = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(self)
        return self.modules

    def __exit__(self, *exc) -> None:
        logger = logging.getLogger("flag_gems")
        logger.removeHandler(self)
        logger.setLevel(self._level)


def _gems(spec: opspec.OpSpec, flag_gems):
    """The native reference under FlagGems. The first call registers all of FlagGems (`use_gems()`) and
    notes the modules whose ops ran; later calls register only those modules' functions
    (`use_gems(include=...)`), as a model's one `use_gems` around many calls costs per call, rather than
    milliseconds of registration. A call that runs no FlagGems op raises PeerUnavailable: torch's kernel
    would be timed under FlagGems' name."""
    registering = None  # after the first call: the use_gems that registers what that call ran

    def gems(*args, **kwargs):
        nonlocal registering
        if registering is not None:
            with registering():
                return spec.reference(*args, **kwargs)
        with _LoggingModules() as logged, flag_gems.use_gems():
            out = spec.reference(*args, **kwargs)
        # FlagGems' registered functions by name (older releases have no such table: the whole library then)
        registered = getattr(flag_gems, "FULL_CONFIG_BY_FUNC", None)
        ran = (
            sorted(logged)
            if registered is None
            else [
                name
                for name, entries in registered.items()
                if any(getattr(entry[1], "__module__", None) in logged for entry in entries)
            ]
        )
        if not ran:
            raise PeerUnavailable(f"no FlagGems op ran for {spec.name} here (torch's kernel would be timed)")
        registering = (
            flag_gems.use_gems if registered is None else functools.partial(flag_gems.use_gems, include=ran)
        )
        return out

    return gems


def peer(spec: opspec.OpSpec, name: str):
    """The op as a peer computes it on the same inputs: "inductor" = torch.compile of the native reference,
    "flaggems" = the native reference under FlagGems (`_gems`; optional extra `peers`)."""
    if name == "inductor":
        import torch

        torch.compiler.reset()  # one compile per case: dynamo's recompile limit would turn later cases eager
        return torch.compile(spec.reference, dynamic=False)
    if name == "flaggems":
        flag_gems, why = flag_gems_import()
        if flag_gems is None:

            def missing(*args, **kwargs):
                raise PeerUnavailable(why)

            return missing

        return _gems(spec, flag_gems)
    raise ValueError(f"peers: expected some of {PEERS}, got {name!r}")


def check_peers(peers: Iterable[str]) -> list[str]:
    """`peers` as a list, or ValueError naming the unknown ones."""
    peers = list(peers)
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        raise ValueError(f"peers: expected some of {PEERS}, got {unknown}")
    return peers


def ours(df: pd.DataFrame) -> pd.Series:
    """Rows of the package's own implementations (the direct call or DISPATCHED): neither native nor a peer;
    the rows that are judged."""
    return ~df["impl"].isin(("native", *PEERS))


def implementations(
    spec: opspec.OpSpec,
    backend: str,
    all_variants: bool,
    algorithm: str | None = None,
    peers: Iterable[str] = (),
    dispatched: Callable[[opspec.OpSpec], Callable] | None = None,
) -> dict:
    """impl name -> callable: native first, then the backend's Triton implementation (of `algorithm`, where
    the op has it; with `dispatched`, what it makes of the op instead, named DISPATCHED: the native op
    under `use_ops`, `workbench.dispatch.through_use_ops`), or every implementation by name; then the
    peers asked for."""
    name = selected_variant(spec, backend, None, algorithm) or spec.variant_name(backend)
    impls = {"native": spec.reference}
    if dispatched is not None:
        impls[DISPATCHED] = dispatched(spec)
    elif algorithm is None:
        impls[name] = spec.implementation(backend)
    elif name in spec.variant_names():
        impls[name] = spec.variant(name)
    if all_variants:
        impls.update({name: spec.variant(name) for name in spec.variant_names()})
    impls.update({name: peer(spec, name) for name in peers})
    return impls


def bench_case(
    spec: opspec.OpSpec,
    case: opspec.Case,
    dtype,
    seed: int,
    peaks: rl.Peaks,
    all_variants: bool = False,
    rep_ms: float = 100.0,
    algorithm: str | None = None,
    peers: Iterable[str] = (),
    dispatched: Callable[[opspec.OpSpec], Callable] | None = None,
) -> list[dict]:
    """The rows of one case: native, ours, the peers (see `implementations`), timed in alternated rounds."""
    backend = backends.active()
    base = {"op": spec.name, "case": case.name, "dtype": dtype_name(dtype), "seed": seed}
    try:
        args, kwargs = make_inputs(case, dtype, seed)
        cost = spec.cost(*args, **kwargs)
    except Exception as e:
        return [{**base, "impl": "native", "error": f"inputs: {type(e).__name__}: {e}"}]
    base.update(shape=shape_label(args), bytes=cost.bytes, flops=cost.flops)
    rows, calls = [], []
    for name, fn in implementations(spec, backend.name, all_variants, algorithm, peers, dispatched).items():
        row = {**base, "impl": name, "error": ""}
        rows.append(row)
        try:
            result = verify(spec, fn, case, dtype, args, kwargs)
            row.update(rel_err=result["rel_err"])  # native's own error too: the scale the others are read on
            if name != "native":
                # native_passed: on a miss, whether the native op meets the same bound on these inputs
                row.update(passed=result["passed"], native_passed=result.get("native_passed"))

            def call(fn=fn):
                return fn(*args, **kwargs)

            call()  # compiles and tunes; an implementation that raises gets an error cell
            calls.append((row, call))
        except Exception as e:  # an error cell, and the table goes on
            row.update(error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
    light = backend.interpreted  # the interpreter runs each call in numpy: few rounds tell enough
    rounds = (
        alternated_rounds([call for _, call in calls], backend, rep_ms=rep_ms, min_rounds=3 if light else 5)
        if calls
        else None
    )
    native = 0 if rows[0]["error"] == "" else None  # the native row is the first in `calls` when it ran
    for i, (row, call) in enumerate(calls):
        t = rounds.kernel_time(i)
        began = time.perf_counter()
        call()  # host cost of one call: entering a library per call (use_ops, use_gems) outweighs the op
        per_call_ms = (time.perf_counter() - began) * 1e3
        n_calls = int(min(max(20.0 / max(t.ms, per_call_ms, 1e-3), 3 if light else 10), 2000))  # ~20 ms
        row.update(
            ms=t.ms,
            ms_p20=t.p20,
            ms_p80=t.p80,
            reps=t.reps,
            host_us=host_time_us(call, backend, calls=n_calls, repeats=1 if light else 3),
        )
        row.update(rl.roofline(cost.bytes, cost.flops, t.ms, row["dtype"], peaks))
        if rounds.host_gaps:  # the rounds' calls outran the device hold: host time may be in kernel time
            gaps = f"host gaps in {rounds.host_gaps} chunk(s) of timed calls"
            row["suspect"] = "; ".join(filter(None, (row.get("suspect"), gaps)))
        if native is not None:  # speedup per round against native in the same round
            ratio = rounds.ratio(i, reference=native)
            row.update(
                speedup=ratio.median, speedup_p20=ratio.p20, speedup_p80=ratio.p80, unstable=ratio.unstable
            )
    return rows


def bench(
    ops: Iterable[str] | None = None,
    cases: Iterable[str] = ("llm",),
    dtypes=("bf16",),
    backend: str | None = None,
    all_variants: bool = False,
    store: ResultStore | str | None = None,
    seed: int | None = None,
    rep_ms: float = 100.0,
    progress: bool = True,
    algorithm: str | None = None,
    peers: Iterable[str] = (),
) -> pd.DataFrame:
    """Native vs Triton table for `ops` (default: all) over case sets and dtypes; optionally stored.
    algorithm: time that named algorithm of each op that has it (e.g. topk's "merge"), not its default.
    `peers` ("inductor", "flaggems") adds their rows, timed in the same rounds and checked alike."""
    chosen = backends.active(backend)
    peers = check_peers(peers)
    specs = [opspec.get(n) for n in ops] if ops else list(opspec.REGISTRY.values())
    dtype_list = parse_dtypes(dtypes)
    work = [
        (s, c, d)
        for s in specs
        for cs in cases
        for c in s.case_list(cs)
        for d in dtype_list
        if d in s.dtypes and not c.big
    ]
    seed = random.randrange(2**31) if seed is None else seed
    meta = run_metadata()
    peaks = rl.peaks(chosen)
    store = store if store is None or isinstance(store, ResultStore) else ResultStore(store)
    run_id = store.start_run("bench", meta) if store else None
    rows: list[dict] = []
    status = "failed"
    try:
        for i, (spec, case, dtype) in enumerate(tqdm(work, desc="bench", disable=not progress, leave=False)):
            for row in bench_case(spec, case, dtype, seed + i, peaks, all_variants, rep_ms, algorithm, peers):
                rows.append(row)
                if store:
                    store.add_row(run_id, {k: v for k, v in row.items() if k != "traceback"})
        status = "done"
    finally:
        if store:
            store.finish_run(run_id, status)
    df = pd.DataFrame(rows)
    for col in COLUMNS + ["traceback"]:
        if col not in df:
            df[col] = None
    return df.assign(**meta, run_id=run_id)


def side_by_side(df: pd.DataFrame) -> pd.DataFrame:
    """One line per (op, case, dtype): native ms next to each Triton impl's ms, speedup and rates."""
    key = ["op", "case", "dtype"]
    native = df[df["impl"] == "native"][key + ["ms", "host_us"]]
    out = df[df["impl"] != "native"].merge(native, on=key, how="left", suffixes=("", "_native"))
    return out[
        [
            "op",
            "case",
            "dtype",
            "shape",
            "impl",
            "ms_native",
            "ms",
            "speedup",
            "speedup_p20",
            "speedup_p80",
            "unstable",
            "gbps",
            "tflops",
            "roofline_pct",
            "host_us_native",
            "host_us",
            "rel_err",
            "passed",
            "native_passed",
            "suspect",
            "error",
        ]
    ]


PEER_VALUES = ("ms", "speedup", "rel_err", "passed", "error")


def peer_table(df: pd.DataFrame) -> pd.DataFrame:
    """One line per (op, case, dtype): each implementation's ms, speedup over native, relative error against
    float64, verdict and error cell as columns (`native_ms`, `inductor_ms`, `generic_speedup`,
    `flaggems_error`, ...), implementations in the order they first appear."""
    key = ["op", "case", "dtype"]
    values = [v for v in PEER_VALUES if v in df]
    wide = df.pivot_table(index=key, columns="impl", values=values, aggfunc="first", sort=False, dropna=False)
    wide.columns = [f"{impl}_{value}" for value, impl in wide.columns]
    impls = list(dict.fromkeys(df["impl"]))
    order = [f"{i}_{v}" for i in impls for v in values if f"{i}_{v}" in wide]
    return wide[order].reset_index()
