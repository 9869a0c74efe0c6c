"""Do two fresh processes give the same answer? Three processes of one Qwen3-8B-dims comparison, one cache.

Each process (this script with --child, started afresh) builds the model (seeded random bf16 weights,
`--layers` decoder layers), runs `workbench.models.run_model` for prefill (batch 1 x 2048 tokens) and
for eager decode (batch 8, 128 new tokens after a 512-token prompt), native and workbench in alternated
rounds, and reports the workbench / native throughput ratios with their p20-p80 spread and how many
kernel keys it tuned. The tuning cache (a ResultStore, --store) starts empty: the first process tunes
every key it meets and stores the choices, the second and third find them and tune nothing.

Targets: the three ratios of each phase agree within 6% (max / min - 1); processes 2 and 3 tune 0 keys.
Writes benchmarks/results/<device>/repro/summary.json (device, torch, triton, commit, command, layers,
prefill_vs_native, decode_vs_native, autotune_runs, spreads), runs.json (every process's rows) and
tuning.csv (the configs chosen) under --out (default: the repo). Expected on one H200: about 1 minute
per process plus the first process's tuning (candidates compile once per specialisation and are shared by
every shape key).

    WORKBENCH_COMMIT=$(git rev-parse HEAD) PYTHONPATH=$PWD python3 benchmarks/repro.py
    PYTHONPATH=$PWD python3 benchmarks/repro.py --smoke --out /tmp/repro   # tiny preset on a cpu
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROCESSES = 3
AGREEMENT = 0.06


def child(args) -> dict:
    """One process: prefill and decode comparisons; the ratios, their spread and the keys tuned."""
    from workbench import backends

    backends.active()
    from workbench.models import build_model, run_model
    from workbench.ops import _tuning
    from workbench.profiling import tuning

    tuning.install(cache=args.store)
    t0 = time.time()
    preset = "tiny" if args.smoke else "qwen3-8b"
    model = build_model(preset, num_hidden_layers=args.layers) if args.layers else build_model(preset)
    common = dict(cuda_graphs=False, profile=False, loss=False, fp32_reference=False, sample_tokens=0)
    prefill_len, batch, prompt, new_tokens = (16, 2, 8, 4) if args.smoke else (2048, 8, 512, 128)
    pre = run_model(model, mode="prefill", batch=1, prompt_len=prefill_len, reps=args.reps, **common)
    dec = run_model(
        model,
        mode="decode",
        batch=batch,
        prompt_len=prompt,
        new_tokens=new_tokens,
        decode_reps=args.decode_reps,
        **common,
    )
    result = {
        "seconds": round(time.time() - t0, 1),
        "autotune_runs": _tuning.stats.tuned,
        "tuning_cache_hits": _tuning.stats.cache_hits,
        "config": {k: str(v) for k, v in pre.config.items()},
    }
    for name, run, phase in (("prefill", pre, "prefill"), ("decode", dec, "decode_eager")):
        r = run.ratios().set_index("phase").loc[phase]
        columns = ("ratio", "ratio_p20", "ratio_p80", "unstable", "native_tok_s", "workbench_tok_s", "note")
        result[name] = {k: _plain(r[k]) for k in columns}
    return result


def _plain(value):
    """JSON-safe: None for NaN / None, Python bool, float or str."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, (bool, str)) or type(value).__name__ == "bool_":
        return value if isinstance(value, str) else bool(value)
    return float(value)


def _agreement(values: list) -> float | None:
    ok = [v for v in values if v]
    return max(ok) / min(ok) - 1.0 if len(ok) == len(values) and ok else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parents[1]),
        help="directory that receives benchmarks/results/...",
    )
    p.add_argument("--layers", type=int, help="decoder layers (default: the preset's, 36 for qwen3-8b)")
    p.add_argument("--reps", type=int, default=10, help="prefill rounds (native and workbench each)")
    p.add_argument(
        "--decode-reps", type=int, default=3, help="decode rounds (each a 128-token generate per side)"
    )
    p.add_argument(
        "--store",
        help="the tuning cache shared by the processes (default: a new temporary "
        "store; emptied first either way)",
    )
    p.add_argument("--smoke", action="store_true", help="tiny preset and sizes: a cpu check of the script")
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: run one process, write its JSON here
    args = p.parse_args()
    if args.child:
        Path(args.child).write_text(json.dumps(child(args)))
        return 0

    from workbench import backends

    backends.active()
    from workbench.store import ResultStore
    from workbench.store.meta import results_dir, run_metadata

    meta = run_metadata()
    out = results_dir(args.out, "repro", meta)
    store = Path(args.store) if args.store else Path(tempfile.mkdtemp()) / "tuning.db"
    ResultStore(store).clear_tuning()  # the first process starts from an empty cache
    runs = []
    for i in range(PROCESSES):
        t0 = time.time()
        result_path = out / f"process{i + 1}.json"
        cmd = [
            sys.executable,
            __file__,
            "--child",
            str(result_path),
            "--store",
            str(store),
            "--reps",
            str(args.reps),
            "--decode-reps",
            str(args.decode_reps),
        ]
        cmd += (["--layers", str(args.layers)] if args.layers else []) + (["--smoke"] if args.smoke else [])
        subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
        runs.append(json.loads(result_path.read_text()))
        result_path.unlink()
        last = runs[-1]
        print(
            f"[repro] process {i + 1}: {time.time() - t0:.0f} s, prefill {last['prefill']['ratio']:.3f}x, "
            f"decode {last['decode']['ratio']:.3f}x, {last['autotune_runs']} keys tuned",
            flush=True,
        )
    (out / "runs.json").write_text(json.dumps(runs, indent=1))
    ResultStore(store).tuning_rows().to_csv(out / "tuning.csv", index=False)  # the configs chosen
    prefill = [r["prefill"]["ratio"] for r in runs]
    decode = [r["decode"]["ratio"] for r in runs]
    tuned = [r["autotune_runs"] for r in runs]
    command = "python3 benchmarks/repro.py " + " ".join(sys.argv[1:])
    summary = {
        **{k: meta[k] for k in ("device", "torch", "triton", "commit")},
        "command": command,
        "model": "tiny" if args.smoke else "qwen3-8b",
        "layers": args.layers or ("the preset's" if args.smoke else 36),
        "prefill_vs_native": prefill,
        "decode_vs_native": decode,
        "autotune_runs": tuned,
        "prefill_spread": [[r["prefill"]["ratio_p20"], r["prefill"]["ratio_p80"]] for r in runs],
        "decode_spread": [[r["decode"]["ratio_p20"], r["decode"]["ratio_p80"]] for r in runs],
        "prefill_agreement": _agreement(prefill),
        "decode_agreement": _agreement(decode),
        "targets": {"agreement_max": AGREEMENT, "later_autotune_runs": 0},
        "seconds_per_process": [r["seconds"] for r in runs],
    }
    agree = [summary["prefill_agreement"], summary["decode_agreement"]]
    summary["met"] = all(a is not None and a <= AGREEMENT for a in agree) and all(n == 0 for n in tuned[1:])
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(
        f"\n{meta['device']} · torch {meta['torch']} · triton {meta['triton']} · commit {meta['commit']} · "
        f"layers {summary['layers']}"
    )
    print(f"{'process':>8} {'prefill':>9} {'p20-p80':>13} {'decode':>9} {'p20-p80':>13} {'tuned':>6}")
    for i, r in enumerate(runs):
        pr, de = r["prefill"], r["decode"]
        print(
            f"{i + 1:>8} {pr['ratio']:>8.3f}x {_span(pr):>13} {de['ratio']:>8.3f}x {_span(de):>13} "
            f"{r['autotune_runs']:>6}"
        )
    print(
        f"agreement (max/min - 1): prefill {_pct(agree[0])}, decode {_pct(agree[1])} (target <= 6%); "
        f"later processes tuned {tuned[1:]} keys (target 0): {'met' if summary['met'] else 'MISSED'}"
    )
    print(f"wrote {out / 'summary.json'}")
    return 0


def _span(r: dict) -> str:
    return "-" if r["ratio_p20"] is None else f"{r['ratio_p20']:.3f}-{r['ratio_p80']:.3f}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


if __name__ == "__main__":
    sys.exit(main())
