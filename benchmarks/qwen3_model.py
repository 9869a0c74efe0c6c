"""Qwen3-8B (transformers, seeded random bf16 weights) natively vs with workbench kernels, on one GPU.

Run from the repo root (the device copy has no .git, so pass the commit):
    WORKBENCH_COMMIT=$(git rev-parse HEAD) PYTHONPATH=$PWD python3 benchmarks/qwen3_model.py --out $OUT
Files go to benchmarks/results/<device>/model/ under --out (default: the repo).

Measures (targets in brackets): prefill batch 1 x 2048 tokens [>= 0.95x native tokens/s];
decode batch 8, 128 new tokens after a 512-token prompt, eager `generate` and CUDA-graph replay
[>= 0.9x each]; distinct ATen ops served by workbench [>= 30]; last-position logits relative error
[<= 2e-2]; greedy tokens identical [>= 95% of positions]. Both sides are also compared with a float32
twin of the model (where memory allows), which separates bf16's own error from our kernels'.

The workload beyond greedy decoding (no targets of its own; it widens what the run exercises): each
prefill run adds a loss pass over its prompt (`labels` -> cross_entropy, per-token log_softmax +
gather, perplexity), each decode run a top-k sampling decode (`generate(do_sample=True, top_k=50,
temperature=0.8)`, seeded alike on both sides) of --sample-tokens tokens after the same prompt. Their
coverage joins the run's; "distinct ATen ops served" counts the ATen overloads our kernels computed at
least once (handled > 0; the "(fused) ..." module rows are not ATen ops and are not counted).

Order: the headline runs (workbench side = use_ops + module fusions) first, then — each only if it can
start within --budget-s — the ATen-only prefill (transformers' unfused code: the broad ATen coverage),
a bisection of every missed target (which ops carry the loss), the ATen-only decode (one repetition,
no sampling run).
Results are written after every step (CSV tables per run, qwen3_model.csv / .json), so a run stopped
by an outer time limit keeps what it measured; a summary table is printed last.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

from workbench import backends
from workbench.models import TARGETS, bisect, build_model, run_model, write_tables
from workbench.store.meta import results_dir, run_metadata


def _stage(log: dict, name: str, t0: float) -> None:
    log[name] = round(time.time() - t0, 1)
    print(f"[qwen3_model] {name}: {log[name]} s", flush=True)


def _summary(pre, dec, args, served: list[str]) -> pd.DataFrame:
    """Headline rows (metric, value, target, met, note) of one prefill run and (if it ran) one decode run."""
    ratios = pd.concat([r.ratios() for r in (pre, dec) if r is not None], ignore_index=True)
    acc = []
    if pre is not None:
        acc.append(pre.accuracy.assign(run=f"prefill {args.prefill_batch}x{args.prefill_len}"))
    if dec is not None:
        acc.append(
            dec.accuracy.assign(run=f"decode {args.decode_batch}x{args.decode_prompt}+{args.new_tokens}")
        )
    acc = pd.concat(acc, ignore_index=True)
    rows = pd.concat(
        [
            ratios.assign(metric=ratios["phase"] + "_ratio", value=ratios["ratio"])[
                ["metric", "value", "target", "met", "note"]
            ],
            acc.assign(metric=acc["metric"] + " [" + acc["run"] + "]")[["metric", "value", "target", "met"]],
            pd.DataFrame(
                [
                    {
                        "metric": "aten_ops_served",
                        "value": len(served),
                        "target": TARGETS["aten_ops_served"],
                        "met": len(served) >= TARGETS["aten_ops_served"],
                    }
                ]
            ),
        ],
        ignore_index=True,
    )
    rows["note"] = rows["note"].fillna("")
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parents[1]),
        help="directory that receives benchmarks/results/...",
    )
    p.add_argument("--preset", default="qwen3-8b")
    p.add_argument("--checkpoint", help="local checkpoint directory instead of random weights")
    p.add_argument("--layers", type=int, help="override num_hidden_layers (quick tries only)")
    p.add_argument("--prefill-batch", type=int, default=1)
    p.add_argument("--prefill-len", type=int, default=2048)
    p.add_argument("--decode-batch", type=int, default=8)
    p.add_argument("--decode-prompt", type=int, default=512)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--reps", type=int, default=5, help="timed prefill repetitions")
    p.add_argument(
        "--decode-reps",
        type=int,
        default=2,
        help="timed decode repetitions (eager and graph), native and workbench in turn",
    )
    p.add_argument(
        "--sample-tokens",
        type=int,
        default=32,
        help="tokens of the top-k sampling decode in each decode run (0: none)",
    )
    p.add_argument("--no-loss", action="store_true", help="skip the loss pass of each prefill run")
    p.add_argument("--no-graphs", action="store_true")
    p.add_argument("--include", nargs="+")
    p.add_argument("--exclude", nargs="+")
    p.add_argument(
        "--fuse",
        choices=["on", "off", "both"],
        default="both",
        help="module fusions on the workbench side (headline: on); 'both' adds ATen-only runs "
        "(prefill always, decode while the budget lasts)",
    )
    p.add_argument("--no-bisect", action="store_true")
    p.add_argument(
        "--no-fp32-reference",
        action="store_true",
        help="skip the float32 twin both sides are also compared with (needs ~1.3x fp32 weights free)",
    )
    p.add_argument(
        "--budget-s", type=float, default=150.0, help="start no optional step after this many seconds"
    )
    args = p.parse_args()
    t0 = time.time()
    stages: dict = {}

    backend = backends.active()
    meta = run_metadata()
    out = results_dir(args.out, "model", meta)
    import torch
    import transformers

    overrides = {"num_hidden_layers": args.layers} if args.layers else {}
    model = build_model(args.preset, checkpoint=args.checkpoint, **overrides)
    _stage(stages, "build", t0)
    label = args.checkpoint or args.preset + (f" ({args.layers} layers)" if args.layers else "")
    common = {
        "cuda_graphs": False if args.no_graphs else None,
        "include": args.include,
        "exclude": args.exclude,
        "fp32_reference": False if args.no_fp32_reference else None,
        "progress": True,
    }
    prefill = {
        "mode": "prefill",
        "batch": args.prefill_batch,
        "prompt_len": args.prefill_len,
        "reps": args.reps,
        "loss": not args.no_loss,
    }
    decode = {
        "mode": "decode",
        "batch": args.decode_batch,
        "prompt_len": args.decode_prompt,
        "new_tokens": args.new_tokens,
        "reps": 1,
        "decode_reps": args.decode_reps,
        "sample_tokens": args.sample_tokens,
    }
    settings = {"on": [True], "off": [False], "both": [True, False]}[args.fuse]
    head = settings[0]
    runs: dict = {}  # (phase, fuse) -> ModelRun
    state = {"bisections": [], "skipped": []}

    def tag(fuse: bool) -> str:
        return "fused" if fuse else "aten-only"

    def run(phase: str, fuse: bool) -> None:
        kw = dict(prefill if phase == "prefill" else decode)
        if phase == "decode" and fuse != head:
            # The optional ATen-only decode, within the time budget: one repetition, no sampling run (the
            # sampling code's ATen ops are the same with or without the module fusions)
            kw.update(decode_reps=1, sample_tokens=0)
        runs[(phase, fuse)] = run_model(model, fuse=fuse, **kw, **common)
        write_tables(runs[(phase, fuse)], out, prefix=f"{phase}_{tag(fuse)}_")
        _stage(stages, f"{phase} run ({tag(fuse)})", t0)

    def served(fuse) -> list[str]:
        return sorted(set().union(*(r.ops_served() for (_, f), r in runs.items() if fuse in (f, "any"))))

    def table() -> pd.DataFrame:
        tables = [
            _summary(runs.get(("prefill", f)), runs.get(("decode", f)), args, served(f)).assign(fuse=f)
            for f in settings
            if ("prefill", f) in runs or ("decode", f) in runs
        ]
        n = len(served("any"))
        tables.append(
            pd.DataFrame(
                [
                    {
                        "metric": "aten_ops_served (all runs)",
                        "value": n,
                        "fuse": "any",
                        "target": TARGETS["aten_ops_served"],
                        "met": n >= TARGETS["aten_ops_served"],
                        "note": "",
                    }
                ]
            )
        )
        return pd.concat(tables, ignore_index=True)

    def dump() -> pd.DataFrame:
        """Write everything measured so far: a run cut short by a time limit still leaves its results."""
        t = table()
        t.assign(
            model=label, **{k: meta[k] for k in ("device", "torch", "triton", "commit", "timestamp")}
        ).to_csv(out / "qwen3_model.csv", index=False)
        throughput = pd.concat([r.throughput.assign(fuse=f) for (_, f), r in runs.items()], ignore_index=True)
        report = {
            "command": "WORKBENCH_COMMIT=$(git rev-parse HEAD) PYTHONPATH=$PWD "
            "python3 benchmarks/qwen3_model.py " + " ".join(sys.argv[1:]),
            "meta": {
                **meta,
                "transformers": transformers.__version__,
                "max_memory_gb": torch.cuda.max_memory_allocated() / 2**30
                if torch.cuda.is_available()
                else None,
            },
            "model": label,
            "summary": t.to_dict("records"),
            "throughput": throughput.to_dict("records"),
            "aten_ops_served": {f"{ph} {tag(f)}": r.ops_served() for (ph, f), r in runs.items()},
            "bisections": state["bisections"],
            "skipped": state["skipped"],
            "stage_seconds": stages,
            "config": {f"{ph} {tag(f)}": r.config for (ph, f), r in runs.items()},
        }
        (out / "qwen3_model.json").write_text(json.dumps(report, indent=1, default=str))
        return t

    def optional(name: str) -> bool:
        if time.time() - t0 < args.budget_s:
            return True
        state["skipped"].append(f"{name}: time budget {args.budget_s:.0f} s spent")
        print(f"[qwen3_model] skipped {state['skipped'][-1]}", flush=True)
        return False

    run("prefill", head)
    run("decode", head)
    headline = dump()
    for fuse in settings[1:]:  # ATen-only prefill: the coverage of transformers' unfused code, cheaply
        if optional(f"prefill ({tag(fuse)})"):
            run("prefill", fuse)
            dump()
    if not args.no_bisect:
        for kw in _misses(headline[headline["fuse"] == head], args):
            if optional(f"bisect {kw['metric']} {kw['phase']}"):
                state["bisections"].append(_bisect(model, kw, head, args, t0, stages))
                dump()
    for fuse in settings[1:]:
        if optional(f"decode ({tag(fuse)})"):
            run("decode", fuse)
    _stage(stages, "total", t0)
    final = dump()
    throughput = pd.concat([r.throughput.assign(fuse=f) for (_, f), r in runs.items()], ignore_index=True)
    served_all = served("any")
    with pd.option_context(
        "display.width", 200, "display.max_colwidth", 70, "display.float_format", "{:.4g}".format
    ):
        print(throughput.to_string(index=False))
        print(
            f"\n{backend.name}: {meta['device']} · torch {meta['torch']} · triton {meta['triton']} · "
            f"transformers {transformers.__version__} · commit {meta['commit']} · {label}"
        )
        print(
            f"{len(served_all)} distinct ATen ops served by workbench kernels over all runs "
            f"(target {TARGETS['aten_ops_served']}): {', '.join(served_all)}"
        )
        for f in settings:
            print(f"  {tag(f)} runs alone: {len(served(f))}")
        for b in state["bisections"]:
            print(b["describe"])
        for line in state["skipped"]:
            print(f"skipped {line}")
        print()
        print(final.to_string(index=False))
    return 0


def _misses(summary: pd.DataFrame, args) -> list[dict]:
    """Bisections worth running: a missed logits error, prefill or eager-decode throughput target."""
    met = dict(zip(summary["metric"], summary["met"]))
    wanted = []
    if any(m.startswith("logits_rel_err") and not ok for m, ok in met.items()):
        wanted.append(
            {
                "metric": "accuracy",
                "phase": "prefill",
                "batch": args.prefill_batch,
                "prompt_len": args.prefill_len,
            }
        )
    if "prefill_ratio" in met and not met["prefill_ratio"]:
        wanted.append(
            {
                "metric": "throughput",
                "phase": "prefill",
                "batch": args.prefill_batch,
                "prompt_len": args.prefill_len,
            }
        )
    if "decode_eager_ratio" in met and not met["decode_eager_ratio"]:
        wanted.append(
            {
                "metric": "throughput",
                "phase": "decode",
                "batch": args.decode_batch,
                "prompt_len": args.decode_prompt,
            }
        )
    return wanted


def _bisect(model, kw: dict, fuse: bool, args, t0: float, stages: dict) -> dict:
    left = args.budget_s - (time.time() - t0)
    r = bisect(model, reps=3, decode_steps=8, fuse=fuse, ops=args.include, budget_s=max(left, 10.0), **kw)
    print(r.describe(), flush=True)
    _stage(stages, f"bisect {kw['metric']} {kw['phase']}", t0)
    return {
        **kw,
        "threshold": r.threshold,
        "all_on": r.all_on,
        "describe": r.describe(),
        "culprits": r.culprits.drop(columns="ops").to_dict("records"),
        "steps": r.steps.to_dict("records"),
    }


if __name__ == "__main__":
    sys.exit(main())
