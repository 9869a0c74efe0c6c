"""One decode layer's attention with grouped key/value heads and a mask, as a compiled model runs it with and
without the backend's `repeat_kv` fold (docs/compile.md).

transformers repeats each key/value head for its group of query heads before SDPA whenever it passes a
mask (a decode step on a static cache always does). Timed in alternated rounds, one process, bf16, at
Qwen3-8B decode dims (batch 8, 32 query heads, 8 key/value heads, head dim 128, a 640-key cache whose
first 600 keys are filled, a boolean mask [8, 1, 1, 640]):
  native_repeated   the heads repeated (a contiguous copy), then torch's SDPA: what native runs
  ours_repeated     the same copy, then our attention: the backend before the fold
  ours_gqa          our attention on the unrepeated heads with enable_gqa: the backend with the fold
  copy              the repeat's copy alone (key and value)
Medians in `us`, every alternated round in `rounds_ms` (L2 flushed before each call). Each side's output
is compared with a float64 reference. `per_step_ms_saved` is (ours_repeated -
ours_gqa) times the layers of a step (--layers, 18 as in benchmarks/pt2_model.py).

    WORKBENCH_COMMIT=$(git rev-parse HEAD) PYTHONPATH=$PWD python3 benchmarks/repeat_kv.py   (under a minute)
Writes benchmarks/results/<device>/repeat_kv/summary.json under --out (default: the repo). --smoke: tiny
shapes on the cpu interpreter (does it run?).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from workbench import backends, ops
from workbench.profiling.timing import alternated_rounds
from workbench.store.meta import results_dir, run_metadata

ROOT = Path(__file__).resolve().parents[1]


def repeat_kv(x: torch.Tensor, n: int) -> torch.Tensor:
    b, h, s, d = x.shape
    return x[:, :, None].expand(b, h, n, s, d).reshape(b, h * n, s, d)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=str(ROOT), help="directory that receives benchmarks/results/...")
    parser.add_argument("--layers", type=int, default=18)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the cpu interpreter")
    args = parser.parse_args()
    backend = backends.active()
    device = backend.device()
    batch, heads, kv_heads, keys, filled, dim = (
        (2, 4, 2, 40, 33, 16) if args.smoke else (8, 32, 8, 640, 600, 128)
    )
    group = heads // kv_heads
    gen = torch.Generator(device=device).manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, device=device, dtype=torch.bfloat16)

    q, k, v = (
        randn(batch, heads, 1, dim),
        randn(batch, kv_heads, keys, dim),
        randn(batch, kv_heads, keys, dim),
    )
    mask = (torch.arange(keys, device=device) < filled)[None, None, None, :].expand(batch, 1, 1, keys)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    sides = {
        "native_repeated": lambda: sdpa(q, repeat_kv(k, group), repeat_kv(v, group), attn_mask=mask),
        "ours_repeated": lambda: ops.scaled_dot_product_attention(
            q, repeat_kv(k, group), repeat_kv(v, group), attn_mask=mask
        ),
        "ours_gqa": lambda: ops.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True),
        "copy": lambda: (repeat_kv(k, group), repeat_kv(v, group)),
    }
    with torch.inference_mode():
        reference = sdpa(
            q.double(), repeat_kv(k, group).double(), repeat_kv(v, group).double(), attn_mask=mask
        )
        errors = {
            name: float((fn().double() - reference).norm() / reference.norm())
            for name, fn in sides.items()
            if name != "copy"
        }
        rounds = alternated_rounds(list(sides.values()), warmup_ms=5.0, rep_ms=10.0 if args.smoke else 200.0)
    us = {name: rounds.kernel_time(i).ms * 1e3 for i, name in enumerate(sides)}
    meta = run_metadata()
    out = results_dir(args.out, "repeat_kv", meta)
    summary = {
        **{k: meta[k] for k in ("device", "torch", "triton", "commit")},
        "command": "PYTHONPATH=$PWD python3 benchmarks/repeat_kv.py" + (" --smoke" if args.smoke else ""),
        "smoke": args.smoke,
        "shape": {
            "batch": batch,
            "heads": heads,
            "kv_heads": kv_heads,
            "keys": keys,
            "filled": filled,
            "dim": dim,
        },
        "us": us,
        "rounds_ms": {name: rounds.times[i] for i, name in enumerate(sides)},  # every timed call
        "rel_err_vs_float64": errors,
        "gqa_vs_repeated": us["ours_repeated"] / us["ours_gqa"],
        "gqa_vs_native_repeated": us["native_repeated"] / us["ours_gqa"],
        "layers": args.layers,
        "per_step_ms_saved": (us["ours_repeated"] - us["ours_gqa"]) * args.layers / 1e3,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    for name, t in us.items():
        print(f"{name:16s} {t:9.1f} us   err {errors.get(name, float('nan')):.1e}")
    print(
        f"gqa vs repeated {summary['gqa_vs_repeated']:.2f}x, "
        f"vs native {summary['gqa_vs_native_repeated']:.2f}x; "
        f"{summary['per_step_ms_saved']:.3f} ms per {args.layers}-layer step; written to {out}"
    )


if __name__ == "__main__":
    main()
