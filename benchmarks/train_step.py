"""Training step of a Qwen3 preset: native eager vs workbench (`use_ops`: our forward and backward kernels
where an op has them), AdamW, identical initial weights and data, steps alternated between the sides.

GPU (Qwen3-0.6B dims, bf16, batch 4 x 512 tokens, 20 steps; a few minutes on one H100/H200; the device
copy has no .git, so pass the commit):
    PYTHONPATH=$PWD python benchmarks/train_step.py --commit <hash>
CPU smoke run (tiny preset, fp32, through the Triton interpreter):
    PYTHONPATH=$PWD python benchmarks/train_step.py --smoke

Writes <out>/benchmarks/results/<device>/train/summary.json (device, torch, triton, commit, command, model,
step_vs_native, peak_mem_vs_native, loss_rel_diff_max, ...) and steps.json (every step of both sides).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import torch

from workbench import backends


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny preset, fp32, 3 steps (cpu)")
    parser.add_argument("--model", default="qwen3-0.6b")
    parser.add_argument("--layers", type=int, default=None, help="override the preset's layer count")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--out", default=".")
    parser.add_argument("--commit", default=None)
    args = parser.parse_args()
    if args.smoke:
        args.model, args.steps, args.batch, args.seq, args.dtype = "tiny", 3, 2, 8, "float32"
    backend = backends.active()
    from workbench.models.build import build_model
    from workbench.models.train import train_both
    from workbench.profiling.meta import run_metadata

    overrides = {"num_hidden_layers": args.layers} if args.layers else {}
    model = build_model(args.model, dtype=getattr(torch, args.dtype), seed=0, **overrides)
    run = train_both(model, steps=args.steps, batch=args.batch, seq=args.seq)
    meta = run_metadata()
    named = re.search(r"h100|h200|a100|b200|mlu\d+", meta["device"].lower())
    slug = named.group(0) if named else re.sub(r"[^a-z0-9]+", "-", meta["device"].lower()).strip("-")
    out = Path(args.out) / "benchmarks" / "results" / ("cpu" if backend.name == "cpu" else slug) / "train"
    out.mkdir(parents=True, exist_ok=True)
    summary = {"device": meta["device"], "torch": meta["torch"], "triton": meta["triton"],
               "commit": args.commit or meta["commit"], "command": " ".join(["python", *sys.argv]),
               "model": args.model, "dtype": args.dtype, "batch": args.batch, "seq": args.seq,
               **run.summary()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "steps.json").write_text(run.steps.to_json(orient="records", indent=1) + "\n")
    (out / "coverage.json").write_text(run.coverage.to_json(orient="records", indent=1) + "\n")
    print(run.steps.pivot(index="step", columns="side", values=["loss", "seconds"]).to_string())
    print(json.dumps({k: summary[k] for k in ("model", "step_vs_native", "peak_mem_vs_native",
                                              "loss_rel_diff_max", "grad_norm_rel_diff_max")}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
