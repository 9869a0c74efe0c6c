"""Python cost per call of each op's wrapper, without its kernel, on the cpu backend.

Each op runs on the inputs of its smallest `llm` case (benchmarks/host_overhead.py) with kernel launches
replaced (workbench.profiling.no_kernels), in two modes:
  wrapper  launches do nothing: validation, layout, allocation, argument building: the op's own cost
  cached   the real launch cache runs to a fake kernel: the wrapper plus the cache's key building, as a
           GPU pays after the first call. `misses`: the share of later calls that did not find their key
           (should be 0)
and the native op (`native`: only for inputs up to NATIVE_MAX_MB, since on the cpu it does the real work).
CPU numbers show the Python cost only; the GPU adds the driver's launch and the allocator.

From the repo root:
    PYTHONPATH=$PWD python benchmarks/wrapper_cost.py [--ops add cat ...] [--profile OP] [--csv PATH]
--profile OP prints the cProfile of OP's wrapper (no-op launch) by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
from pathlib import Path

os.environ.setdefault("WORKBENCH_BACKEND", "cpu")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from host_overhead import smallest_llm_case  # noqa: E402
from workbench import backends  # noqa: E402
from workbench.ops import REGISTRY  # noqa: E402
from workbench.profiling.no_kernels import no_kernels  # noqa: E402
from workbench.profiling.timing import host_time_us  # noqa: E402

NATIVE_MAX_MB = 1  # larger inputs: the native op's cpu compute, not its host cost, would be timed


def measure(ops: list[str], calls: int) -> list[dict]:
    rows = []
    for op in ops:
        spec = REGISTRY[op]
        case, args, kwargs = smallest_llm_case(spec)
        fn = spec.implementation(backends.active().name)
        tensors = [t for a in args for t in (a if isinstance(a, (list, tuple)) else [a]) if isinstance(t, torch.Tensor)]
        row = {"op": op, "case": case.name, "input_MB": sum(t.numel() * t.element_size() for t in tensors) / 2**20}
        try:
            with torch.inference_mode():
                if row["input_MB"] <= NATIVE_MAX_MB:
                    row["native_us"] = host_time_us(lambda: spec.reference(*args, **kwargs), calls=calls)
                with no_kernels("wrapper"):
                    row["wrapper_us"] = host_time_us(lambda: fn(*args, **kwargs), calls=calls)
                with no_kernels("cached") as stub:
                    fn(*args, **kwargs)
                    first = stub.compiles
                    row["cached_us"] = host_time_us(lambda: fn(*args, **kwargs), calls=calls)
                    row["misses"] = (stub.compiles - first) / (5 * calls + 1)
        except Exception as e:  # noqa: BLE001 - a row per op, whatever happens
            row["error"] = f"{type(e).__name__}: {e}"[:200]
        rows.append(row)
        print(f"{op:30s} {row.get('native_us', 0):7.1f} {row.get('wrapper_us', 0):7.1f} "
              f"{row.get('cached_us', 0):7.1f} {row.get('misses', 0):5.2f} {row.get('error', '')}",
              file=sys.stderr, flush=True)
    return rows


def profile(op: str, calls: int) -> None:
    spec = REGISTRY[op]
    _, args, kwargs = smallest_llm_case(spec)
    fn = spec.implementation(backends.active().name)
    with torch.inference_mode(), no_kernels("wrapper"):
        fn(*args, **kwargs)
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(calls):
            fn(*args, **kwargs)
        prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", nargs="*", default=None)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--profile", metavar="OP")
    parser.add_argument("--csv", type=Path)
    args = parser.parse_args()
    if args.profile:
        profile(args.profile, args.calls)
        return

    import pandas as pd

    df = pd.DataFrame(measure(args.ops or sorted(REGISTRY), args.calls)).set_index("op")
    if args.csv:
        df.to_csv(args.csv)
    print(f"cpu · torch {torch.__version__} · µs per call (Python cost only: launches do nothing)")
    print(df.round(2).to_string())


if __name__ == "__main__":
    main()
