"""The matmul family's paths side by side on Qwen3-8B shapes, each against the native op, bf16, one
process, same inputs: `default` (what a call takes: the TMA-descriptor kernel from TMA_MIN_M rows on
Hopper+, else the pointer kernel, split-K configs among the candidates where they fit), `no_split` (the
same without split-K candidates: the before/after of split-K) and `pointer` (the pointer kernel alone).

Run from the repo root on a CUDA machine (the device copy has no .git, so pass the commit):
    WORKBENCH_COMMIT=<sha> PYTHONPATH=$PWD python3 benchmarks/matmul_paths.py --out $OUT
Writes benchmarks/results/<device>/matmul/matmul_paths.csv under --out (default: the repo; one row per
case: native and each path's median ms, speedups, the tuned configs, rel. errors against an fp32 product)
and prints the table. Timing: the bench's kernel timer (median device time, L2 flushed between reps).
The pointer path is forced by raising `_matmul.TMA_MIN_M`, the no-split path by
`_matmul.SPLIT_K_PROGRAMS = 0`; each path tunes afresh (in-process choices cleared, no tuning cache, so
that one path's choice never serves another).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import workbench.ops  # noqa: F401  (binds the backend before triton is imported)


def cases():
    """(op, case name, make(gen) -> (args, native fn, ours fn))."""
    import torch
    import torch.nn.functional as F

    from workbench.ops import REGISTRY

    dev, dt = "cuda", torch.bfloat16

    def rnd(gen, *shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, device=dev, dtype=torch.float32) * scale).to(dt)

    out = []
    for m, k, n in [(4096, 4096, 4096)] + [
        (2048, k, n) for k, n in ((4096, 12288), (12288, 4096), (4096, 4096), (4096, 151936))
    ]:
        out.append(
            (
                "mm",
                f"M={m} K={k} N={n}",
                lambda g, m=m, k=k, n=n: ((rnd(g, m, k), rnd(g, k, n)), torch.mm, REGISTRY["mm"].impl),
            )
        )
    for m, k, n in [
        (2048, k, n) for k, n in ((4096, 12288), (12288, 4096), (4096, 4096), (4096, 1024), (4096, 151936))
    ] + [
        (1, 4096, 1024),
        (1, 4096, 4096),
        (1, 12288, 4096),
        (16, 4096, 4096),
        (16, 4096, 1024),
        (64, 4096, 4096),
        (64, 4096, 1024),
        (256, 4096, 4096),
    ]:
        out.append(
            (
                "linear",
                f"M={m} K={k} N={n}",
                lambda g, m=m, k=k, n=n: (
                    (rnd(g, m, k), rnd(g, n, k, scale=k**-0.5)),
                    F.linear,
                    REGISTRY["linear"].impl,
                ),
            )
        )
    out.append(
        (
            "addmm",
            "M=2048 K=4096 N=12288",
            lambda g: (
                (rnd(g, 12288), rnd(g, 2048, 4096), rnd(g, 4096, 12288)),
                torch.addmm,
                REGISTRY["addmm"].impl,
            ),
        )
    )
    out.append(
        (
            "bmm",
            "attn scores prefill 32x2048x128x2048",
            lambda g: (
                (rnd(g, 32, 2048, 128), rnd(g, 32, 2048, 128).transpose(1, 2)),
                torch.bmm,
                REGISTRY["bmm"].impl,
            ),
        )
    )
    out.append(
        (
            "bmm",
            "attn values prefill 32x2048x2048x128",
            lambda g: ((rnd(g, 32, 2048, 2048), rnd(g, 32, 2048, 128)), torch.bmm, REGISTRY["bmm"].impl),
        )
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parents[1]),
        help="directory that receives benchmarks/results/...",
    )
    args = parser.parse_args()
    import pandas as pd
    import torch

    from workbench.ops import REGISTRY, _matmul, _tuning
    from workbench.profiling.timing import kernel_time
    from workbench.store.meta import results_dir, run_metadata

    meta = run_metadata()
    out = results_dir(args.out, "matmul", meta)
    t0 = time.time()
    print(
        f"{meta['device']} torch {meta['torch']} triton {meta['triton']} commit {meta['commit']}", flush=True
    )
    defaults = {"TMA_MIN_M": _matmul.TMA_MIN_M, "SPLIT_K_PROGRAMS": _matmul.SPLIT_K_PROGRAMS}
    paths = {
        "default": defaults,
        "no_split": {**defaults, "SPLIT_K_PROGRAMS": 0},
        "pointer": {**defaults, "TMA_MIN_M": 10**9},
    }
    _tuning.configure(cache=None)  # every path tunes its own candidates in this process
    rows = []
    for op, name, make in cases():
        gen = torch.Generator(device="cuda").manual_seed(0)
        inputs, native, ours = make(gen)
        row = {"op": op, "case": name}
        with torch.inference_mode():
            expect = native(*(t.float() for t in inputs))
            row["native_ms"] = kernel_time(lambda inputs=inputs: native(*inputs)).ms
            for path, settings in paths.items():
                for name_, value in settings.items():
                    setattr(_matmul, name_, value)
                for chosen in (
                    _matmul._tuned,
                    _matmul._pointer_launches,
                    _matmul._autotuned._chosen,
                    _matmul._tma_autotuned._chosen,
                    REGISTRY["linear"].impl.__globals__["_plans"],
                ):
                    chosen.clear()  # linear's plans hold the last path's launch
                before = set(_matmul._tuned)
                try:
                    got = ours(*inputs)
                    row[f"{path}_rel_err"] = float((got.float() - expect).norm() / expect.norm())
                    row[f"{path}_ms"] = kernel_time(lambda inputs=inputs: ours(*inputs)).ms
                    row[f"{path}_speedup"] = row["native_ms"] / row[f"{path}_ms"]
                    new = [_matmul._tuned[k] for k in set(_matmul._tuned) - before]
                    row[f"{path}_config"] = str(new[0]) if new else ""
                except Exception as e:  # noqa: BLE001 - a row per case, whatever happens
                    row[f"{path}_error"] = f"{type(e).__name__}: {e}"[:300]
        for name_, value in defaults.items():
            setattr(_matmul, name_, value)
        rows.append(row | meta)
        speeds = "  ".join(f"{p} {row.get(f'{p}_speedup', float('nan')):.3f}x" for p in paths)
        errors = " ".join(row.get(f"{p}_error", "") for p in paths).strip()
        print(
            f"[{time.time() - t0:5.0f}s] {op:6s} {name:38s} native {row['native_ms']:.4f} ms"
            f"  {speeds}  {errors}",
            flush=True,
        )
        del inputs, expect
        torch.cuda.empty_cache()
    df = pd.DataFrame(rows)
    df.to_csv(out / "matmul_paths.csv", index=False)
    cols = [
        c
        for c in (
            "op",
            "case",
            "native_ms",
            "default_speedup",
            "no_split_speedup",
            "pointer_speedup",
            "default_rel_err",
            "default_config",
        )
        if c in df
    ]
    print(df[cols].to_string(index=False), file=sys.stderr)


if __name__ == "__main__":
    main()
