"""GPU check of the attention-side Qwen3 ops: llm-case correctness in bf16, and
scaled_dot_product_attention timed against torch's (flash) on Qwen3-8B shapes.

Run from the repo root on a CUDA machine (the device copy has no .git, so pass the commit):
    WORKBENCH_COMMIT=<sha> PYTHONPATH=$PWD python3 benchmarks/attention_check.py --out $OUT
Writes to benchmarks/results/<device>/attention/ under --out (default: the repo): attention_check.csv
(one row per op x llm case), attention_timing.csv (one row per timed case x impl) and
attention_check.json (metadata, the chosen prefill config, the summary), then prints the summary last.
Timing: the bench's kernel timer (median device time, L2 flushed between reps, reps queued behind a
device-side hold so the wrapper's host time stays out; triton.testing.do_bench, used before, counted host
gaps at decode sizes) and host µs per call, bf16, GQA 32 q / 8 kv heads, head_dim 128; prefill 1x2048
causal; decode one query against a 2048-token cache (not causal, as transformers calls it). Target:
workbench >= 0.9x torch flash in every row.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import workbench.ops  # noqa: F401  (binds the backend before triton is imported)
from workbench import backends

OPS = [
    "scaled_dot_product_attention",
    "rope",
    "silu_and_mul",
    "add_rms_norm",
    "log_softmax",
    "cross_entropy",
    "argmax",
    "topk",
    "cumsum",
    "embedding",
]
TARGET = 0.9
HQ, HKV, D, KV = 32, 8, 128, 2048
CASES = [("prefill 1x32x2048x128 kv8 causal", 1, 2048, True)] + [
    (f"decode b{b} 32x1 kv8x2048", b, 1, False) for b in (1, 8, 64)
]


def log(t0: float, msg: str) -> None:
    print(f"[{time.time() - t0:6.1f}s] {msg}", flush=True)


def time_sdpa(t0: float) -> list[dict]:
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from workbench.ops import REGISTRY
    from workbench.profiling.timing import host_time_us, kernel_time

    backend = backends.active()
    device = backend.device()
    ours = REGISTRY["scaled_dot_product_attention"].impl
    spec_cost = REGISTRY["scaled_dot_product_attention"].cost
    rows = []
    gen = torch.Generator(device=device).manual_seed(0)
    for name, batch, q_len, causal in CASES:
        q = torch.randn(batch, HQ, q_len, D, device=device, dtype=torch.bfloat16, generator=gen)
        k = torch.randn(batch, HKV, KV, D, device=device, dtype=torch.bfloat16, generator=gen)
        v = torch.randn(batch, HKV, KV, D, device=device, dtype=torch.bfloat16, generator=gen)
        cost = spec_cost(q, k, v, is_causal=causal, enable_gqa=True)

        def flash():
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                return torch.nn.functional.scaled_dot_product_attention(
                    q, k, v, is_causal=causal, enable_gqa=True
                )

        def flash_repeated_kv():  # only if flash refuses enable_gqa on this torch build
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                return torch.nn.functional.scaled_dot_product_attention(q, k_rep, v_rep, is_causal=causal)

        impls = {
            "workbench": lambda: ours(q, k, v, is_causal=causal, enable_gqa=True),
            "torch flash": flash,
            "torch default": lambda: torch.nn.functional.scaled_dot_product_attention(
                q, k, v, is_causal=causal, enable_gqa=True
            ),
        }
        reference = None
        try:
            reference = flash()
        except RuntimeError as e:
            log(
                t0,
                f"{name}: torch flash refused enable_gqa ({str(e)[:120]}); timing flash on repeated kv heads",
            )
            k_rep, v_rep = k.repeat_interleave(HQ // HKV, 1), v.repeat_interleave(HQ // HKV, 1)
            impls["torch flash"] = flash_repeated_kv
            reference = flash_repeated_kv()
        for impl, fn in impls.items():
            row = {"case": name, "impl": impl, "batch": batch, "q_len": q_len, "kv_len": KV, "causal": causal}
            try:
                out = fn()  # compiles / autotunes outside the timing
                backend.synchronize()
                row["max_abs_diff_vs_flash"] = float((out.float() - reference.float()).abs().max())
                ms = kernel_time(fn).ms  # device time only: host gaps are kept out by a device-side hold
                row.update(
                    ms=ms,
                    tflops=cost.flops / ms / 1e9,
                    gbps=cost.bytes / ms / 1e6,
                    host_us=host_time_us(fn, calls=200, repeats=3),
                    error="",
                )
            except Exception as e:  # a row with the error; the table goes on
                row.update(ms=float("nan"), error=f"{type(e).__name__}: {e}")
            rows.append(row)
        flash_ms = next(r["ms"] for r in rows if r["case"] == name and r["impl"] == "torch flash")
        for r in rows:
            if r["case"] == name:
                r["speedup_vs_flash"] = flash_ms / r["ms"] if r["ms"] == r["ms"] else float("nan")
        log(t0, f"timed {name}")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parents[1]),
        help="directory that receives benchmarks/results/...",
    )
    parser.add_argument("--skip-check", action="store_true", help="time attention only")
    args = parser.parse_args()
    t0 = time.time()
    backend = backends.active()
    if backend.name != "cuda":
        print(f"attention_check: needs the cuda backend, this process has {backend.name!r}", file=sys.stderr)
        return 2
    import pandas as pd

    from workbench.profiling import check, failures
    from workbench.store.meta import results_dir, run_metadata

    meta = run_metadata()
    out = results_dir(args.out, "attention", meta)
    log(t0, f"{meta['device']} torch {meta['torch']} triton {meta['triton']} commit {meta['commit']}")

    check_df = None
    if not args.skip_check:
        check_df = check(ops=OPS, cases=["llm"], dtypes=["bf16"], seed=0, progress=False)
        check_df.drop(columns=["traceback"]).assign(**meta).to_csv(out / "attention_check.csv", index=False)
        log(t0, f"checked {len(check_df)} llm cases")

    timing = pd.DataFrame(time_sdpa(t0)).assign(**meta)
    timing.to_csv(out / "attention_timing.csv", index=False)

    sdpa = sys.modules["workbench.ops.scaled_dot_product_attention"]
    summary = {
        **meta,
        "command": "WORKBENCH_COMMIT=<sha> PYTHONPATH=$PWD python3 benchmarks/attention_check.py --out $OUT",
        "prefill_configs": {str(k): v for k, v in sdpa._tuned.items()},
        "timing": timing[["case", "impl", "ms", "speedup_vs_flash", "error"]].to_dict("records"),
    }
    failed = failures(check_df) if check_df is not None else None
    if check_df is not None:
        summary["check"] = {
            "passed": int(check_df["passed"].sum()),
            "failed": len(failed),
            "failures": failed[["op", "case", "rel_err", "error"]].to_dict("records"),
        }
    (out / "attention_check.json").write_text(json.dumps(summary, indent=1, default=str))

    with pd.option_context(
        "display.width",
        200,
        "display.max_colwidth",
        70,
        "display.max_rows",
        None,
        "display.float_format",
        "{:.4g}".format,
    ):
        if check_df is not None:
            print(check_df[["op", "case", "rel_err", "passed", "error"]].to_string(index=False))
        wb = timing[timing["impl"] == "workbench"]
        table = timing.pivot(index="case", columns="impl", values="ms").reindex([c[0] for c in CASES])
        table["speedup"] = table["torch flash"] / table["workbench"]
        table["meets 0.9x"] = table["speedup"] >= TARGET
        print(f"\nSDPA, bf16, ms (kernel timer median) on {meta['device']}:")
        print(table.to_string())
    errors = timing[timing["error"] != ""]
    for e in errors.itertuples():
        print(f"ERROR timing {e.case} {e.impl}: {e.error}", file=sys.stderr)
    verdict = f"{int(table['meets 0.9x'].sum())} of {len(table)} SDPA cases >= {TARGET}x torch flash"
    if check_df is not None:
        verdict = (
            f"llm check: {summary['check']['passed']} passed, {summary['check']['failed']} failed; " + verdict
        )
    log(t0, verdict)
    return 0 if (failed is None or failed.empty) and errors.empty and len(wb) == len(CASES) else 1


if __name__ == "__main__":
    sys.exit(main())
