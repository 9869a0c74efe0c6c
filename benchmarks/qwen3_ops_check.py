"""GPU check of the Qwen3 op set: correctness at Qwen3-8B shapes, and the override on CUDA.

1. `workbench.profiling.check` on every op listed in OPS, `llm` cases, bf16, on the cuda backend. Rows are
   written to qwen3_ops_check.csv after each op, so a run cut short still leaves what it measured.
2. `workbench.use_ops` on cuda: a few ATen calls through the CUDA dispatch key (handled by our kernels,
   and a float64 fallback), compared with native; the coverage table goes to qwen3_ops_dispatch.csv.

Correctness only, so matmul autotuning is off (WORKBENCH_AUTOTUNE=0: one tile configuration per M
range, which keeps compile time down). From the repo root on a GPU machine:
    WORKBENCH_COMMIT=$(git rev-parse HEAD) PYTHONPATH=$PWD python3 benchmarks/qwen3_ops_check.py --out $OUT
Writes qwen3_ops_check.csv, qwen3_ops_dispatch.csv and qwen3_ops_meta.json to
benchmarks/results/<device>/qwen3_ops/ under --out (default: the repo). Prints one line per op while it
runs and a summary table last; exit status 1 if anything failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

OPS = [
    "sub",
    "div",
    "neg",
    "pow",
    "rsqrt",
    "where",
    "masked_fill",
    "sum",
    "mean",
    "max",
    "bmm",
    "addmm",
    "linear",
    "index_select",
    "gather",
    "cat",
    "copy",
    "fill",
]


def check_ops(ops: list[str], out: Path, meta: dict) -> "pd.DataFrame":  # noqa: F821
    import pandas as pd

    from workbench.profiling import check

    frames = []
    for op in ops:
        t0 = time.perf_counter()
        df = check(ops=[op], cases=["llm"], dtypes=["bf16"], seed=1234, progress=False)
        df = df.drop(columns=["traceback"]).assign(elapsed_s=round(time.perf_counter() - t0, 2), **meta)
        frames.append(df)
        pd.concat(frames).to_csv(out / "qwen3_ops_check.csv", index=False)
        print(
            f"{op:14s} {int(df.passed.sum())}/{len(df)} passed in {df.elapsed_s.iloc[0]:6.1f} s", flush=True
        )
    return pd.concat(frames, ignore_index=True)


def check_dispatch(out: Path, meta: dict) -> bool:
    import torch

    import workbench

    dev = workbench.backends.active().device_type  # cuda; the cpu interpreter for a smoke run of this script
    torch.manual_seed(0)
    x = torch.randn(64, 4096, device=dev, dtype=torch.bfloat16)
    y = torch.randn(4096, device=dev, dtype=torch.bfloat16)
    w = torch.randn(1024, 4096, device=dev, dtype=torch.bfloat16) * 4096**-0.5
    x64 = x.double()
    cache = torch.randn(1, 8, 16, 128, device=dev, dtype=torch.bfloat16)
    q = torch.randn(1, 32, 16, 128, device=dev, dtype=torch.bfloat16)
    ids = torch.randint(0, 1000, (1, 16), device=dev)

    def calls():
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)
        return {
            "rms": (h.to(torch.bfloat16) * y),
            "linear": torch.nn.functional.linear(x, w),
            "softmax": torch.softmax(x.float() - 1.5, dim=-1),
            "cat": torch.cat([cache, cache[:, :, :1]], dim=2),
            "where": torch.where(x > 0, x, float("-inf")),
            "sdpa (GQA, causal)": torch.nn.functional.scaled_dot_product_attention(
                q, cache, cache, is_causal=True, enable_gqa=True
            ),
            "embedding": torch.nn.functional.embedding(ids, w),
            "fallback float64": x64 * 2 + 1,
        }

    with torch.inference_mode():
        want = calls()
        with workbench.use_ops() as cov:
            got = calls()
    ok = True
    for name in want:
        same = torch.allclose(got[name].float(), want[name].float(), rtol=2e-2, atol=2e-2, equal_nan=True)
        ok &= same and got[name].dtype == want[name].dtype
        print(f"dispatch {name:18s} {'ok' if same else 'MISMATCH'}")
    table = cov.table()
    table.assign(**meta).to_csv(out / "qwen3_ops_dispatch.csv", index=False)
    print(table.to_string(index=False))
    handled = set(table.query("handled > 0").aten_op)
    expected = {
        "aten::_to_copy",
        "aten::pow.Tensor_Scalar",
        "aten::mean.dim",
        "aten::add.Tensor",
        "aten::rsqrt",
        "aten::mul.Tensor",
        "aten::linear",
        "aten::sub.Tensor",
        "aten::_softmax",
        "aten::cat",
        "aten::where.self",
        "aten::scaled_dot_product_attention",
        "aten::embedding",
    }
    missing = expected - handled
    if missing:
        print(f"dispatch: not handled by workbench on cuda: {sorted(missing)}")
    fallback = table.set_index("aten_op").fallback.get("aten::mul.Tensor", 0)
    return ok and not missing and fallback >= 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parents[1]),
        help="directory that receives benchmarks/results/...",
    )
    parser.add_argument("--ops", default=",".join(OPS), help="comma-separated subset of the ops")
    args = parser.parse_args()
    os.environ.setdefault("WORKBENCH_BACKEND", "cuda")
    os.environ.setdefault("WORKBENCH_AUTOTUNE", "0")  # before workbench.ops defines the matmul kernel
    import pandas as pd

    from workbench.store.meta import results_dir, run_metadata

    t0 = time.perf_counter()
    meta = run_metadata()
    out = results_dir(args.out, "qwen3_ops", meta)
    (out / "qwen3_ops_meta.json").write_text(json.dumps(meta, indent=2))
    print(
        f"{meta['device']} | torch {meta['torch']} | triton {meta['triton']} | commit {meta['commit']}",
        flush=True,
    )
    df = check_ops([o for o in args.ops.split(",") if o], out, meta)
    dispatch_ok = check_dispatch(out, meta)

    summary = df[["op", "case", "shape", "rel_err", "passed", "error"]].copy()
    summary["rel_err"] = summary["rel_err"].map(lambda v: f"{v:.2e}" if pd.notna(v) else "")
    summary["error"] = summary["error"].fillna("").str.slice(0, 60)
    with pd.option_context("display.width", 200, "display.max_rows", None, "display.max_colwidth", 60):
        print(summary.to_string(index=False))
    failed = int((~df.passed.astype(bool)).sum())
    print(
        f"\n{len(df) - failed}/{len(df)} llm bf16 cases passed, dispatch on {meta['backend']} "
        f"{'ok' if dispatch_ok else 'FAILED'}, "
        f"{time.perf_counter() - t0:.0f} s total ({meta['device']}, commit {meta['commit']})"
    )
    return 0 if failed == 0 and dispatch_ok else 1


if __name__ == "__main__":
    sys.exit(main())
