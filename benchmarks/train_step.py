"""Training step of a Qwen3 preset: native eager vs workbench, AdamW, identical initial weights and data,
steps alternated between the sides in one process (the side that goes first alternates too).

native: transformers' forward with labels (logits, fp32 upcast, cross-entropy) and torch's kernels.
workbench: the model's body under `use_ops` (our forward and backward kernels where an op has them,
native elsewhere; `--execution compile`: the body compiled with the workbench backend instead) and the LM
head + loss as our fused `linear_cross_entropy` (`--no-fused-loss`: transformers' loss under `use_ops`).
The AdamW update is torch's on both sides. See docs/training.md.

GPU (Qwen3-0.6B dims, bf16, batch 4 x 512 tokens, 20 steps; the first step compiles and tunes every
forward and backward kernel; the device copy has no .git, so pass the commit). Eager (with
WORKBENCH_AUTOTUNE=0 the first step took 22 s and the whole run 52 s on an H200):
    PYTHONPATH=$PWD python benchmarks/train_step.py --commit <hash>
The compiled variant (the body through torch.compile with the workbench backend, our kernels for the
ops of workbench.compile.OVER_INDUCTOR unless --include says otherwise; inductor compiles the rest; the
first step took 4.8 min on an H100 with autotuning) and the run the targets are read from (`gpu_all.sh
train` runs it):
    PYTHONPATH=$PWD python benchmarks/train_step.py --execution compile --commit <hash>
    PYTHONPATH=$PWD python benchmarks/train_step.py --execution compile --cudagraphs --native-compiled \
        --commit <hash>
`--native-compiled` adds a third side, transformers' forward and loss under torch.compile (inductor): the
summary then also holds tokens_per_s_native_compiled and step_vs_native_compiled (ours against it), the
baseline a user who compiles would compare with. `--cudagraphs` (with --execution compile) replays our
side's graphs as CUDA graphs and compiles the native side with mode="reduce-overhead"; the first two steps
are then warm-up, and a replaying side's peak memory is its recording step's (workbench/models/train.py).
CPU smoke run (tiny preset, fp32, 3 steps, through the Triton interpreter; about a minute):
    PYTHONPATH=$PWD python benchmarks/train_step.py --smoke

Writes <out>/benchmarks/results/<device>/train/summary.json (device, torch, triton, commit, command, model,
step_vs_native, peak_mem_vs_native, loss_rel_diff_max, ...), steps.json (every step of both sides) and
coverage.json (what our side served), and with --profile profile.json (per-op device time of one more
step of each side; its total per side is the summary's profiled_step_ms); the compiled variant's files
end in _compile (_compile_cudagraphs with --cudagraphs).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]

# The aims a run is judged against: tokens/s ratio, peak step memory ratio, loss agreement over the steps.
TARGETS = {"step_vs_native": 1.1, "peak_mem_vs_native": 0.8, "loss_rel_diff_max": 0.01}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny preset, fp32, 3 steps (cpu)")
    parser.add_argument("--model", default="qwen3-0.6b")
    parser.add_argument("--layers", type=int, default=None, help="override the preset's layer count")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--execution", choices=["eager", "compile"], default="eager")
    parser.add_argument(
        "--include",
        nargs="+",
        help="ops ours takes ('all': every op; default: every op eagerly, workbench.compile.OVER_INDUCTOR "
        "compiled, where inductor fuses the rest)",
    )
    parser.add_argument(
        "--no-fused-loss", action="store_true", help="transformers' LM head and loss on our side"
    )
    parser.add_argument(
        "--profile", action="store_true", help="one more step per side under the profiler: per-op device time"
    )
    parser.add_argument(
        "--native-compiled", action="store_true", help="a third side: native under torch.compile (inductor)"
    )
    parser.add_argument(
        "--fastest",
        action="store_true",
        help="--execution compile: our kernel only on nodes where it times faster than the ATen op (the "
        "backend's `fastest` option, as pt2_model.py uses it)",
    )
    parser.add_argument(
        "--cudagraphs",
        action="store_true",
        help="--execution compile: our graphs replayed as CUDA graphs, the native compiled side with "
        'mode="reduce-overhead"',
    )
    parser.add_argument("--out", default=str(REPO), help="directory that receives benchmarks/results/...")
    parser.add_argument("--commit", default=None)
    args = parser.parse_args()
    if args.fastest and args.execution != "compile":
        parser.error("--fastest: a choice per node of the compiled graph; it needs --execution compile")
    if args.cudagraphs and args.execution != "compile":
        parser.error("--cudagraphs: replays compiled graphs; it needs --execution compile")
    if args.smoke:
        args.model, args.steps, args.batch, args.seq, args.dtype = "tiny", 3, 2, 8, "float32"
    from workbench.compile import OVER_INDUCTOR
    from workbench.models.build import build_model
    from workbench.models.train import train_both
    from workbench.ops import _tuning
    from workbench.store.meta import results_dir, run_metadata

    include = None if args.include == ["all"] else args.include
    if args.include is None and args.execution == "compile":
        include = list(OVER_INDUCTOR)
    overrides = {"num_hidden_layers": args.layers} if args.layers else {}
    model = build_model(args.model, dtype=getattr(torch, args.dtype), seed=0, **overrides)
    run = train_both(
        model,
        steps=args.steps,
        batch=args.batch,
        seq=args.seq,
        execution=args.execution,
        include=include,
        fused_loss=not args.no_fused_loss,
        progress=True,
        profile=args.profile,
        native_compiled=args.native_compiled,
        fastest=args.fastest,
        cudagraphs=args.cudagraphs,
    )
    meta = run_metadata()
    out = results_dir(args.out, "train", meta)
    summary = {
        "device": meta["device"],
        "torch": meta["torch"],
        "triton": meta["triton"],
        "commit": args.commit or meta["commit"],
        "command": " ".join(["python", *sys.argv]),
        "model": args.model,
        "dtype": args.dtype,
        "batch": args.batch,
        "seq": args.seq,
        "layers": model.config.num_hidden_layers,
        "execution": args.execution,
        "include": include,  # None: every op
        "fastest": args.fastest,
        "cudagraphs": args.cudagraphs,
        "fused_loss": not args.no_fused_loss,
        "optimizer": "torch.optim.AdamW (default), lr 1e-3",
        "autotune": _tuning.AUTOTUNE,  # WORKBENCH_AUTOTUNE=0: every tuned kernel's first config, untimed
        **run.summary(),
        "targets": TARGETS,
    }
    if run.profile is not None:  # device time of the profiled step beside the steps' wall time: host-bound?
        totals = run.profile[run.profile.aten_op == "(total)"]
        summary["profiled_step_ms"] = dict(zip(totals.side, totals.ms.astype(float)))
        summary["profiled_step_time"] = str(totals.time.iloc[0])  # "device", or "cpu" on the interpreter
    # every variant can sit beside the others
    suffix = ("" if args.execution == "eager" else f"_{args.execution}") + (
        "_cudagraphs" if args.cudagraphs else ""
    )
    (out / f"summary{suffix}.json").write_text(json.dumps(summary, indent=2) + "\n")
    tables = {"steps": run.steps, "coverage": run.coverage, "profile": run.profile}
    for name, table in tables.items():  # every row names its device
        if table is not None:
            rows = table.assign(device=summary["device"]).to_json(orient="records", indent=1)
            (out / f"{name}{suffix}.json").write_text(rows + "\n")
    print(run.steps.pivot(index="step", columns="side", values=["loss", "seconds", "peak_mem"]).to_string())
    if run.profile is not None:  # where a step's time goes: device total per side, then our side's top ops
        p = run.profile
        print(p[p.aten_op == "(total)"][["side", "calls", "ms", "time"]].to_string(index=False))
        print(p[(p.side == "workbench") & ~p.aten_op.str.startswith("(")].head(15).to_string(index=False))
    print(f"wrote {out}")
    print(f"\n{'metric':<22}{'value':>12}{'target':>10}")
    for key, aim in TARGETS.items():
        value = summary[key]
        shown = "n/a" if value is None else f"{value:.4g}"
        print(f"{key:<22}{shown:>12}{('>= ' if key == 'step_vs_native' else '<= ') + str(aim):>10}")
    if "step_vs_native_compiled" in summary:  # no target: the baseline of a user who compiles
        print(f"{'step_vs_native_compiled':<22}{summary['step_vs_native_compiled']:>12.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
