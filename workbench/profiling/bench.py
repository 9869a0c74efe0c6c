"""Side-by-side benchmark: the native op and each Triton variant on the same inputs, in one process.

One tidy row per (op, case, dtype, impl): kernel time (median, p20, p80), host time per call, speedup
(native ms / this ms), GB/s and TFLOP/s from the op's cost model, % of the device roofline, and for
Triton variants the correctness result on those same inputs. A variant that fails gets an error cell;
the rest of the table still fills. Rows go to a ResultStore as they are produced.
"""

from __future__ import annotations

import random
import traceback
from typing import Iterable

import pandas as pd
from tqdm.auto import tqdm

from workbench import backends
from workbench.ops import spec as opspec

from . import roofline as rl
from .correctness import dtype_name, make_inputs, parse_dtypes, shape_label, verify
from .meta import run_metadata
from workbench.store import ResultStore
from .timing import host_time_us, kernel_time

COLUMNS = ["op", "impl", "case", "dtype", "shape", "ms", "ms_p20", "ms_p80", "host_us", "speedup", "gbps",
           "tflops", "roofline_pct", "bound", "rel_err", "passed", "native_passed", "suspect", "error"]


def implementations(spec: opspec.OpSpec, backend: str, all_variants: bool) -> dict:
    """impl name -> callable: native first, then the backend's Triton implementation (or every variant)."""
    impls = {"native": spec.reference, spec.variant_name(backend): spec.implementation(backend)}
    if all_variants:
        impls.update({"generic": spec.impl, **spec.variants})
    return impls


def bench_case(spec: opspec.OpSpec, case: opspec.Case, dtype, seed: int, peaks: rl.Peaks,
               all_variants: bool = False, rep_ms: float = 100.0) -> list[dict]:
    backend = backends.active()
    base = {"op": spec.name, "case": case.name, "dtype": dtype_name(dtype), "seed": seed}
    try:
        args, kwargs = make_inputs(case, dtype, seed)
        cost = spec.cost(*args, **kwargs)
    except Exception as e:
        return [{**base, "impl": "native", "error": f"inputs: {type(e).__name__}: {e}"}]
    base.update(shape=shape_label(args), bytes=cost.bytes, flops=cost.flops)
    rows = []
    for name, fn in implementations(spec, backend.name, all_variants).items():
        row = {**base, "impl": name, "error": ""}
        try:
            if name != "native":
                result = verify(spec, fn, case, dtype, args, kwargs)
                # native_passed: on a miss, whether the native op meets the same bound on these inputs
                row.update(rel_err=result["rel_err"], passed=result["passed"],
                           native_passed=result.get("native_passed"))

            def call(fn=fn):
                return fn(*args, **kwargs)

            light = backend.interpreted  # the interpreter runs each call in numpy: few reps tell enough
            t = kernel_time(call, backend, rep_ms=rep_ms, min_reps=3 if light else 5)
            calls = int(min(max(20.0 / max(t.ms, 1e-3), 3 if light else 10), 2000))  # about 20 ms of calls
            row.update(ms=t.ms, ms_p20=t.p20, ms_p80=t.p80, reps=t.reps,
                       host_us=host_time_us(call, backend, calls=calls, repeats=1 if light else 3))
            row.update(rl.roofline(cost.bytes, cost.flops, t.ms, row["dtype"], peaks))
        except Exception as e:  # an error cell, and the table goes on
            row.update(error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
        rows.append(row)
    native_ms = rows[0].get("ms")
    for row in rows:
        if native_ms and row.get("ms"):
            row["speedup"] = native_ms / row["ms"]
    return rows


def bench(ops: Iterable[str] | None = None, cases: Iterable[str] = ("llm",), dtypes=("bf16",),
          backend: str | None = None, all_variants: bool = False, store: ResultStore | str | None = None,
          seed: int | None = None, rep_ms: float = 100.0, progress: bool = True) -> pd.DataFrame:
    """Native vs Triton table for `ops` (default: all) over case sets and dtypes; optionally stored."""
    chosen = backends.active(backend)
    specs = [opspec.get(n) for n in ops] if ops else list(opspec.REGISTRY.values())
    dtype_list = parse_dtypes(dtypes)
    work = [(s, c, d) for s in specs for cs in cases for c in s.case_list(cs) for d in dtype_list
            if d in s.dtypes and not c.big]
    seed = random.randrange(2**31) if seed is None else seed
    meta = run_metadata()
    peaks = rl.peaks(chosen)
    store = store if store is None or isinstance(store, ResultStore) else ResultStore(store)
    run_id = store.start_run("bench", meta) if store else None
    rows: list[dict] = []
    status = "failed"
    try:
        for i, (spec, case, dtype) in enumerate(tqdm(work, desc="bench", disable=not progress, leave=False)):
            for row in bench_case(spec, case, dtype, seed + i, peaks, all_variants, rep_ms):
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
    return out[["op", "case", "dtype", "shape", "impl", "ms_native", "ms", "speedup", "gbps", "tflops",
                "roofline_pct", "host_us_native", "host_us", "rel_err", "passed", "native_passed", "suspect",
                "error"]]
