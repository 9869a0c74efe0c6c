"""What the out-of-range index check costs at decode size: embedding, index_select, gather, cross_entropy.

The check (workbench/ops/_index_check.py) adds a masked store to the kernels and, after the launch, a
read of a one-element flag: on CUDA a flag in pinned host memory, read without waiting for the kernel
(where the device cannot write it, a device flag whose read waits). Measured per op at its smallest
`llm` case (bf16), in one process, in alternated rounds with the check on and off:
  latency_us  wall clock per call followed by a device synchronisation (what one call costs alone)
  host_us     wall clock per call, calls back to back without a sync (`profiling.timing.host_time_us`):
              a read that waited for the kernel would show here
and the native op's figures on the same inputs. Outputs of both settings are compared with native's.

From the repo root on a GPU machine (about 2 minutes):
    WORKBENCH_COMMIT=$(git rev-parse HEAD) PYTHONPATH=$PWD python3 benchmarks/index_check.py
Writes benchmarks/results/<device>/index_check/{summary.json,index_check.csv} under --out (default: the
repo) and prints the table. --smoke: tiny shapes and few calls (the cpu interpreter).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from workbench import backends
from workbench.ops import REGISTRY, _index_check
from workbench.ops.spec import Case
from workbench.profiling.correctness import make_inputs
from workbench.profiling.timing import host_time_us
from workbench.store.meta import results_dir, run_metadata

OPS = ("embedding", "index_select", "gather", "cross_entropy")
ROOT = Path(__file__).resolve().parents[1]


def smoke_case(op: str) -> Case:
    """A decode-shaped case small enough for the interpreter (64 tokens, narrow rows)."""

    def make(dtype, device, gen):
        if op == "embedding":
            return (
                torch.randint(0, 1000, (64, 1), device=device, generator=gen),
                torch.randn(1000, 64, device=device, generator=gen).to(dtype),
            ), {}
        if op == "index_select":
            return (
                torch.randn(1000, 64, device=device, generator=gen).to(dtype),
                0,
                torch.randint(0, 1000, (64,), device=device, generator=gen),
            ), {}
        if op == "gather":
            return (
                torch.randn(64, 1000, device=device, generator=gen).to(dtype),
                1,
                torch.randint(0, 1000, (64, 50), device=device, generator=gen),
            ), {}
        return (
            torch.randn(64, 1000, device=device, generator=gen).to(dtype),
            torch.randint(0, 1000, (64,), device=device, generator=gen),
        ), {"reduction": "none"}

    return Case(f"smoke {op} 64 rows", make)


def decode_case(op: str) -> Case:
    """The op's smallest `llm` case (64 decode tokens, or the smallest there is)."""

    def size(case):
        args, _ = make_inputs(case, torch.bfloat16, 0)
        return sum(a.numel() for a in args if isinstance(a, torch.Tensor))

    return min(REGISTRY[op].case_list("llm"), key=size)


def latency_us(fn, backend, calls: int) -> float:
    """Median wall-clock µs of one call followed by a device synchronisation."""
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        backend.synchronize()
        times.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(times)


def measure(op: str, case: Case, rounds: int, calls: int, host_calls: int) -> dict:
    backend = backends.active()
    spec = REGISTRY[op]
    fn = spec.implementation(backend.name)
    args, kwargs = make_inputs(case, torch.bfloat16, 0)
    native = spec.reference(*args, **kwargs)
    row = {"op": op, "case": case.name}
    samples: dict[str, list[float]] = {}
    for _ in range(rounds):  # alternated, so that drift on the host hits both settings alike
        for label, enabled in (("on", True), ("off", False)):
            _index_check.ENABLED = enabled
            out = fn(*args, **kwargs)
            same = torch.allclose(out.float(), native.float(), rtol=2e-2, atol=1e-2, equal_nan=True)
            row[f"matches_native_{label}"] = bool(same)
            samples.setdefault(f"latency_{label}_us", []).append(
                latency_us(lambda: fn(*args, **kwargs), backend, calls)
            )
            samples.setdefault(f"host_{label}_us", []).append(
                host_time_us(lambda: fn(*args, **kwargs), backend, calls=host_calls, repeats=1)
            )
        samples.setdefault("native_latency_us", []).append(
            latency_us(lambda: spec.reference(*args, **kwargs), backend, calls)
        )
        samples.setdefault("native_host_us", []).append(
            host_time_us(lambda: spec.reference(*args, **kwargs), backend, calls=host_calls, repeats=1)
        )
    _index_check.ENABLED = True
    for key, values in samples.items():
        row[key] = min(values)
    row["latency_cost_us"] = row["latency_on_us"] - row["latency_off_us"]
    row["host_cost_us"] = row["host_on_us"] - row["host_off_us"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=str(ROOT), help="directory that receives benchmarks/results/...")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, few calls (cpu interpreter)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    calls, host_calls = (3, 3) if args.smoke else (200, 1000)
    rows = []
    with torch.inference_mode():
        for op in OPS:
            case = smoke_case(op) if args.smoke else decode_case(op)
            rows.append(measure(op, case, 1 if args.smoke else args.rounds, calls, host_calls))
            print(f"{op}: done", file=sys.stderr)
    df = pd.DataFrame(rows)
    meta = run_metadata()
    out = results_dir(args.out, "index_check", meta)
    df.to_csv(out / "index_check.csv", index=False)
    command = "PYTHONPATH=$PWD python3 benchmarks/index_check.py" + (" --smoke" if args.smoke else "")
    summary = {
        **{k: meta[k] for k in ("device", "torch", "triton", "commit")},
        "command": command,
        "smoke": args.smoke,
        "ops": df.set_index("op").to_dict(orient="index"),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    cols = [
        "op",
        "case",
        "latency_off_us",
        "latency_on_us",
        "latency_cost_us",
        "host_off_us",
        "host_on_us",
        "host_cost_us",
        "native_latency_us",
        "native_host_us",
        "matches_native_on",
        "matches_native_off",
    ]
    print(f"written to {out}")
    print(df[cols].to_string(index=False, float_format=lambda v: f"{v:.1f}"))


if __name__ == "__main__":
    main()
