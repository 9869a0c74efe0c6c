"""How far apart two *correct* bf16 runs of a random-weight Qwen3-8B-wide model drift, by depth.

No workbench kernel runs here; everything is native torch on the active device:
- `bf16_vs_fp32`: the bf16 model against its float32 twin (same weights) — bf16's own error;
- `rope_rounding`: the bf16 model against itself with transformers' rotary embedding computed in float32
  and rounded once (what a fused kernel does) instead of bf16 mul / mul / add — a one-rounding change.
Both are the last-position logits relative error and the argmax agreement over the prompt. They show
the floor under `logits_rel_err` in benchmarks/qwen3_model.py: any op that rounds differently from
native moves a deep random-weight model's logits by about this much.

    PYTHONPATH=$PWD python3 benchmarks/qwen3_noise_floor.py --layers 2 8 16 36 --out $OUT
(on a CPU: a few minutes for --layers 2 8 16; the float32 twin is skipped where memory is short).
Writes benchmarks/results/<device>/noise_floor/qwen3_noise_floor.csv under --out (default: the repo).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from workbench import backends
from workbench.models import build_model, measure
from workbench.models.build import twin
from workbench.models.run import _free_device_bytes, _random_prompt
from workbench.store.meta import results_dir, run_metadata


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rope_fp32(q, k, cos, sin, position_ids=None, unsqueeze_dim=1):
    cos, sin = cos.unsqueeze(unsqueeze_dim).float(), sin.unsqueeze(unsqueeze_dim).float()
    qf, kf = q.float(), k.float()
    return (qf * cos + _rotate_half(qf) * sin).to(q.dtype), (kf * cos + _rotate_half(kf) * sin).to(k.dtype)


def _free_bytes(device: torch.device) -> int:
    free = _free_device_bytes(device)
    if free is None:  # host memory
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return free


def _compare(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    rel = float(torch.linalg.vector_norm(a[:, -1] - b[:, -1]) / torch.linalg.vector_norm(b[:, -1]))
    return rel, float((a.argmax(-1) == b.argmax(-1)).float().mean())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, nargs="+", default=[2, 8, 16, 36])
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parents[1]),
        help="directory that receives benchmarks/results/...",
    )
    args = p.parse_args()
    backends.active()
    meta = run_metadata()
    rows = []
    for layers in args.layers:
        t0 = time.time()
        model = build_model("qwen3-8b", num_hidden_layers=layers)
        modeling = sys.modules[type(model).__module__]
        ids = _random_prompt(model.config.vocab_size, 1, args.prompt_len, 0, model.device)
        with torch.inference_mode():
            native = measure.prompt_logits(model, ids).float()
            original = modeling.apply_rotary_pos_emb
            modeling.apply_rotary_pos_emb = _rope_fp32
            try:
                rope = measure.prompt_logits(model, ids).float()
            finally:
                modeling.apply_rotary_pos_emb = original
            rel, agree = _compare(rope, native)
            rows.append(
                {
                    "layers": layers,
                    "comparison": "rope_rounding",
                    "logits_rel_err": rel,
                    "argmax_agree": agree,
                }
            )
            del rope
            n_params = sum(p.numel() for p in model.parameters())
            if _free_bytes(model.device) > 1.2 * 4 * n_params + (2 << 30):
                reference = twin(model)
                del model
                gc.collect()
                fp32 = measure.prompt_logits(reference, ids).float()
                del reference
                rel, agree = _compare(native, fp32)
                rows.append(
                    {
                        "layers": layers,
                        "comparison": "bf16_vs_fp32",
                        "logits_rel_err": rel,
                        "argmax_agree": agree,
                    }
                )
            else:
                rows.append(
                    {
                        "layers": layers,
                        "comparison": "bf16_vs_fp32",
                        "logits_rel_err": float("nan"),
                        "argmax_agree": float("nan"),
                        "note": "skipped: not enough memory for the fp32 twin",
                    }
                )
        gc.collect()
        print(f"[noise_floor] {layers} layers: {time.time() - t0:.0f} s", flush=True)
    df = pd.DataFrame(rows).assign(prompt_len=args.prompt_len, **meta)
    out = results_dir(args.out, "noise_floor", meta)
    df.to_csv(out / "qwen3_noise_floor.csv", index=False)
    print(f"{meta['device']} · torch {meta['torch']} · commit {meta['commit']}")
    print(
        df.pivot(index="layers", columns="comparison", values=["logits_rel_err", "argmax_agree"]).to_string()
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
