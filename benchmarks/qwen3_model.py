"""Qwen3-8B (transformers, seeded random bf16 weights) natively vs with workbench kernels, on one GPU.

Run from the repo root (the device copy has no .git, so pass the commit):
    WORKBENCH_COMMIT=$(git rev-parse HEAD) PYTHONPATH=$PWD python3 benchmarks/qwen3_model.py --out $OUT

Measures (issue 5 targets in brackets): prefill batch 1 x 2048 tokens [>= 0.95x native tokens/s];
decode batch 8, 128 new tokens after a 512-token prompt, eager `generate` and CUDA-graph replay
[>= 0.9x each]; distinct ATen ops served by workbench [>= 30]; last-position logits relative error
[<= 2e-2]; greedy tokens identical [>= 95% of positions]. Where a target is missed, `bisect` names the
ops responsible (accuracy: logits error after a prefill; throughput: the phase that missed), within a
time budget. Writes CSV tables per run, one JSON with everything, and prints a summary table last.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import pandas as pd

from workbench import backends
from workbench.models import TARGETS, bisect, build_model, run_model, write_tables
from workbench.profiling.meta import run_metadata


def _stage(log: dict, name: str, t0: float) -> None:
    log[name] = round(time.time() - t0, 1)
    print(f"[qwen3_model] {name}: {log[name]} s", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="out/qwen3_model")
    p.add_argument("--preset", default="qwen3-8b")
    p.add_argument("--checkpoint", help="local checkpoint directory instead of random weights")
    p.add_argument("--layers", type=int, help="override num_hidden_layers (quick tries only)")
    p.add_argument("--prefill-batch", type=int, default=1)
    p.add_argument("--prefill-len", type=int, default=2048)
    p.add_argument("--decode-batch", type=int, default=8)
    p.add_argument("--decode-prompt", type=int, default=512)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--reps", type=int, default=5, help="timed prefill repetitions")
    p.add_argument("--no-graphs", action="store_true")
    p.add_argument("--include", nargs="+")
    p.add_argument("--exclude", nargs="+")
    p.add_argument("--no-bisect", action="store_true")
    p.add_argument("--budget-s", type=float, default=170.0, help="skip bisections that would start after this")
    args = p.parse_args()
    t0 = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stages: dict = {}

    backend = backends.active()
    meta = run_metadata()
    import torch
    import transformers

    overrides = {"num_hidden_layers": args.layers} if args.layers else {}
    model = build_model(args.preset, checkpoint=args.checkpoint, **overrides)
    _stage(stages, "build", t0)
    common = dict(cuda_graphs=False if args.no_graphs else None, include=args.include, exclude=args.exclude,
                  progress=True)
    pre = run_model(model, mode="prefill", batch=args.prefill_batch, prompt_len=args.prefill_len, reps=args.reps,
                    **common)
    _stage(stages, "prefill run", t0)
    dec = run_model(model, mode="decode", batch=args.decode_batch, prompt_len=args.decode_prompt,
                    new_tokens=args.new_tokens, reps=1, decode_reps=1, **common)
    _stage(stages, "decode run", t0)

    label = args.checkpoint or args.preset + (f" ({args.layers} layers)" if args.layers else "")
    slug = re.sub(r"[^A-Za-z0-9]+", "-", meta["device"]).strip("-").lower()
    write_tables(pre, out, prefix=f"prefill_{slug}_")
    write_tables(dec, out, prefix=f"decode_{slug}_")

    served = sorted(set(pre.ops_served()) | set(dec.ops_served()))
    ratios = pd.concat([pre.ratios(), dec.ratios()], ignore_index=True)
    acc = pd.concat([pre.accuracy.assign(run=f"prefill {args.prefill_batch}x{args.prefill_len}"),
                     dec.accuracy.assign(run=f"decode {args.decode_batch}x{args.decode_prompt}"
                                             f"+{args.new_tokens}")], ignore_index=True)
    summary = pd.concat([
        ratios.assign(metric=ratios["phase"] + "_ratio", value=ratios["ratio"])[["metric", "value", "target", "met",
                                                                                  "note"]],
        acc.assign(metric=acc["metric"] + " [" + acc["run"] + "]")[["metric", "value", "target", "met"]],
        pd.DataFrame([{"metric": "aten_ops_served", "value": len(served), "target": TARGETS["aten_ops_served"],
                       "met": len(served) >= TARGETS["aten_ops_served"]}]),
    ], ignore_index=True)
    summary["note"] = summary["note"].fillna("")

    # Explain misses: which of our ops cause them (each bisection within the time budget).
    bisections = []
    if not args.no_bisect:
        wanted = []
        if not acc.loc[acc["metric"] == "logits_rel_err", "met"].all():
            wanted.append(dict(metric="accuracy", phase="prefill", batch=args.prefill_batch,
                               prompt_len=args.prefill_len))
        for phase, ratio_phase in (("prefill", "prefill"), ("decode", "decode_eager")):
            row = ratios[ratios["phase"] == ratio_phase]
            if len(row) and not row["met"].iloc[0] and row["ratio"].iloc[0] == row["ratio"].iloc[0]:
                shape = (dict(batch=args.prefill_batch, prompt_len=args.prefill_len) if phase == "prefill"
                         else dict(batch=args.decode_batch, prompt_len=args.decode_prompt))
                wanted.append(dict(metric="throughput", phase=phase, **shape))
        for kw in wanted:
            if time.time() - t0 > args.budget_s:
                bisections.append({**kw, "skipped": f"time budget {args.budget_s:.0f} s spent"})
                continue
            r = bisect(model, reps=3, decode_steps=8, **kw)
            bisections.append({**kw, "threshold": r.threshold, "all_on": r.all_on, "describe": r.describe(),
                               "culprits": r.culprits.drop(columns="ops").to_dict("records"),
                               "steps": r.steps.to_dict("records")})
            print(r.describe(), flush=True)
            _stage(stages, f"bisect {kw['metric']} {kw['phase']}", t0)

    summary_path = out / f"qwen3_model_{slug}.csv"
    summary.assign(model=label, **{k: meta[k] for k in ("device", "torch", "triton", "commit", "timestamp")}) \
        .to_csv(summary_path, index=False)
    report = {
        "command": "WORKBENCH_COMMIT=$(git rev-parse HEAD) PYTHONPATH=$PWD python3 benchmarks/qwen3_model.py "
                   + " ".join(sys.argv[1:]),
        "meta": {**meta, "transformers": transformers.__version__,
                 "max_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None},
        "model": label, "summary": summary.to_dict("records"),
        "throughput": pd.concat([pre.throughput, dec.throughput]).to_dict("records"),
        "aten_ops_served": served, "bisections": bisections, "stage_seconds": stages,
        "config": {"prefill": pre.config, "decode": dec.config},
    }
    (out / f"qwen3_model_{slug}.json").write_text(json.dumps(report, indent=1, default=str))
    _stage(stages, "total", t0)
    with pd.option_context("display.width", 200, "display.max_colwidth", 70, "display.float_format", "{:.4g}".format):
        print(pd.concat([pre.throughput, dec.throughput]).to_string(index=False))
        print(f"\n{backend.name}: {meta['device']} · torch {meta['torch']} · triton {meta['triton']} · "
              f"transformers {transformers.__version__} · commit {meta['commit']} · {label}")
        print(f"{len(served)} ATen ops served: {', '.join(served)}\n")
        print(summary.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
