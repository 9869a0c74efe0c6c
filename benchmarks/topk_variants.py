"""topk on a CUDA GPU: exactness of every algorithm against torch.topk, and kernel time of native vs the
merge path (main's algorithm before the filter) vs the filter path in a few configurations
(target: every op >= 0.9x native kernel time on Qwen3-8B shapes).

Run from the repo root on a CUDA machine (the device copy has no .git, so pass the commit):
    WORKBENCH_COMMIT=<sha> PYTHONPATH=$PWD python3 benchmarks/topk_variants.py --out $OUT

Checks (the default filter on every case below, the other configs on the timed cases): values equal to
torch.topk's bit for bit; indices equal to torch.topk's, or, where torch's differ, equal to the
documented order (equal values: lower index first, from a stable sort) - column `indices`. Cases: the
three llm cases (bf16, scale 3.0), decode 64x151936 top-50 in fp32, rounded values (ties at the
threshold; candidate buffer sometimes overflows), values from 7 integers (every row overflows the
candidate buffer: the fallback), smallest, and top-k along dim 0.
Timing: the bench's kernel timer (median device time, L2 flushed, host gaps kept out). Writes
topk_variants_check.csv, topk_variants_timing.csv and topk_variants.json (metadata, tables) to
benchmarks/results/<device>/topk/ under --out (default: the repo); prints the check failures and a table
of ms and speedup (native / ours) last.
"""

from __future__ import annotations

import time

START = time.monotonic()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import workbench.ops  # noqa: E402,F401  (binds the backend before triton is imported)
from workbench import backends  # noqa: E402

topk_mod = importlib.import_module("workbench.ops.topk")

# name -> the topk algorithm (None: the default, the filter) and the filter's tuning constants to try
CONFIGS = {
    "merge (main)": {"algorithm": "merge"},
    "filter": {"algorithm": None},
    "filter block4096": {"algorithm": None, "FILTER_BLOCK": 4096},
    "filter 4 warps": {"algorithm": None, "FILTER_WARPS": 4},
    "filter 16 warps block4096": {"algorithm": None, "FILTER_BLOCK": 4096, "FILTER_WARPS": 16},
}
FULL_CHECK = "filter"  # the default gets every check case; the others the timed ones (compile time)
TARGET = 0.9


@contextlib.contextmanager
def configured(config: dict):
    """The topk implementation of `config`'s algorithm, with its tuning constants set meanwhile."""
    attrs = {name: value for name, value in config.items() if name != "algorithm"}
    old = {name: getattr(topk_mod, name) for name in attrs}
    for name, value in attrs.items():
        setattr(topk_mod, name, value)
    try:
        yield topk_mod.SPEC.implementation(backends.active().name, config["algorithm"])
    finally:
        for name, value in old.items():
            setattr(topk_mod, name, value)


def timing_cases(device):
    import torch

    gen = torch.Generator(device=device).manual_seed(0)

    def randn(shape, dtype, scale=3.0):
        return (torch.randn(shape, device=device, generator=gen) * scale).to(dtype)

    return [
        ("top-50 sampling 1x151936 bf16", randn((1, 151936), torch.bfloat16), 50),
        ("top-50 sampling 64x151936 bf16", randn((64, 151936), torch.bfloat16), 50),
        ("top-20 2048x151936 bf16", randn((2048, 151936), torch.bfloat16), 20),
        ("decode top-50 64x151936 fp32", randn((64, 151936), torch.float32), 50),
    ]


def check_cases(device, timed):
    """(name, x, k, dim, largest): the timed inputs, then ties, the fallback, smallest, another dim."""
    import torch

    gen = torch.Generator(device=device).manual_seed(1)
    rounded = (torch.randn((64, 151936), device=device, generator=gen) * 3).round().to(torch.bfloat16)
    few = torch.randint(-3, 4, (8, 151936), device=device, generator=gen).to(torch.bfloat16)
    small = (torch.randn((16, 151936), device=device, generator=gen) * 3).to(torch.float16)
    cols = (torch.randn((32000, 8), device=device, generator=gen) * 3).to(torch.bfloat16)
    return [(name, x, k, -1, True) for name, x, k in timed] + [
        ("ties at threshold: rounded 64x151936 top-50", rounded, 50, -1, True),
        ("all ties: 7 integers 8x151936 top-50 (fallback)", few, 50, -1, True),
        ("smallest fp16 16x151936 top-50", small, 50, -1, False),
        ("dim 0 of 32000x8 bf16 top-20", cols, 20, 0, True),
    ]


def check(topk, name, x, k, dim, largest) -> dict:
    import torch

    ref = torch.topk(x, k, dim=dim, largest=largest)
    out = topk(x, k, dim=dim, largest=largest)
    torch.cuda.synchronize()
    values_ok = torch.equal(out.values, ref.values) and out.values.dtype == ref.values.dtype
    if torch.equal(out.indices, ref.indices):
        indices = "as torch.topk"
    else:  # ties: torch's choice among equal values may differ; ours is the lower index first
        order = torch.sort(x, dim=dim, descending=largest, stable=True).indices.narrow(dim, 0, k)
        indices = "lower index first (torch differs)" if torch.equal(out.indices, order) else "WRONG"
    return {
        "case": name,
        "values_exact": values_ok,
        "indices": indices,
        "passed": values_ok and indices != "WRONG",
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parents[1]),
        help="directory that receives benchmarks/results/...",
    )
    parser.add_argument("--rep-ms", type=float, default=60.0, help="timed milliseconds per measurement")
    args = parser.parse_args()
    backend = backends.active()
    if backend.name != "cuda":
        print(f"topk_variants: needs the cuda backend, this process has {backend.name!r}", file=sys.stderr)
        return 2
    import pandas as pd
    import torch

    from workbench.profiling.timing import kernel_time
    from workbench.store.meta import results_dir, run_metadata

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - START:6.1f}s] {msg}", flush=True)

    meta = run_metadata()
    out = results_dir(args.out, "topk", meta)
    log(f"{meta['device']} torch {meta['torch']} triton {meta['triton']} commit {meta['commit']}")
    device = backend.device()
    timed = timing_cases(device)

    checks = []
    cases = check_cases(device, timed)
    for config, attrs in CONFIGS.items():
        with configured(attrs) as topk:
            for case in cases if config == FULL_CHECK else cases[: len(timed)]:
                t = time.monotonic()
                try:
                    row = check(topk, *case)
                except Exception as e:  # a row with the error; the run goes on
                    row = {"case": case[0], "passed": False, "error": f"{type(e).__name__}: {e}"[:500]}
                checks.append({"config": config, **row, "first_call_s": time.monotonic() - t})
        log(f"checked {config}")
    check_df = pd.DataFrame(checks).assign(**meta)
    check_df.to_csv(out / "topk_variants_check.csv", index=False)

    rows = []
    for name, x, k in timed:
        for impl in ("native", *CONFIGS):
            with configured(CONFIGS.get(impl, {"algorithm": None})) as topk:
                fn = (
                    (lambda x=x, k=k: torch.topk(x, k)) if impl == "native" else (lambda x=x, k=k: topk(x, k))
                )
                try:
                    ms, error = kernel_time(fn, warmup_ms=10.0, rep_ms=args.rep_ms, min_reps=5).ms, ""
                except Exception as e:
                    ms, error = float("nan"), f"{type(e).__name__}: {e}"[:500]
            rows.append({"case": name, "impl": impl, "ms": ms, "error": error})
        log(f"timed {name}")
    timing = pd.DataFrame(rows).assign(**meta)
    timing.to_csv(out / "topk_variants_timing.csv", index=False)

    table = timing.pivot(index="case", columns="impl", values="ms").reindex([c[0] for c in timed])
    table = table[["native", *CONFIGS]]
    speedup = table[list(CONFIGS)].rdiv(table["native"], axis=0)
    (out / "topk_variants.json").write_text(
        json.dumps(
            {
                **meta,
                "command": "WORKBENCH_COMMIT=<sha> PYTHONPATH=$PWD "
                "python3 benchmarks/topk_variants.py --out $OUT",
                "configs": CONFIGS,
                "default": "filter",
                "ms": table.reset_index().to_dict("records"),
                "speedup_vs_native": speedup.reset_index().to_dict("records"),
                "check": check_df.drop(columns=list(meta)).to_dict("records"),
            },
            indent=1,
            default=str,
        )
    )

    with pd.option_context(
        "display.width",
        250,
        "display.max_columns",
        None,
        "display.max_colwidth",
        60,
        "display.float_format",
        "{:.4g}".format,
    ):
        failed = check_df[~check_df["passed"]]
        print(f"\ncheck: {int(check_df['passed'].sum())} passed, {len(failed)} failed")
        if len(failed):
            print(failed.drop(columns=list(meta)).to_string(index=False))
        ties = (
            check_df[check_df["indices"] == "lower index first (torch differs)"]
            if "indices" in check_df
            else []
        )
        if len(ties):
            print(
                f"{len(ties)} checks: indices differ from torch.topk's among equal values (ours: lower index)"
            )
        print(f"\ntopk kernel time, ms (median) on {meta['device']}:")
        print(table.to_string())
        print(f"\nspeedup = native / ours (target >= {TARGET}x):")
        print(speedup.to_string())
    errors = timing[timing["error"] != ""]
    for e in errors.itertuples():
        print(f"ERROR timing {e.case} {e.impl}: {e.error}", file=sys.stderr)
    log("done")
    return 0 if failed.empty and errors.empty else 1


if __name__ == "__main__":
    sys.exit(main())
