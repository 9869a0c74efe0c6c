"""Where a compiled model's logits error comes from: native eager, native inductor and the workbench backend
(whole, and one op at a time) against a float64 copy of the same model.

Run from the repo root (cpu; a few minutes):
    PYTHONPATH=$PWD python benchmarks/pt2_accuracy.py [--archs Qwen3 Llama] [--layers 4] [--seq 64]
        [--interpreter-rounding nearest|truncate] [--out ROOT]

Per architecture: a transformers config (hidden 256, 4 heads of 64, 2 KV heads, MLP 768, vocab 2048, eps and
rope theta of Qwen3-8B / Llama-3-8B), seeded random bf16 weights (normal, std 0.02, norms 1) as
pt2_model.py builds them, the logits of every position of one random sequence. Variants: native eager;
native inductor; ours with pt2_model.py's default include (inductor for the rest; patterns on and off); ours
with one op at a time (`inner="eager"`: only that op's nodes differ from native eager). Each: the relative
error against the float64 model and against native eager, and what our ops served.

The Triton interpreter converts float32 to bfloat16 by truncation where a GPU rounds to nearest even, so on
the cpu every bf16 output of our kernels carries a biased error that the GPU's does not.
`--interpreter-rounding nearest` (the default) makes the interpreter round as the GPU does, so that the
numbers say what the kernels compute there; `truncate` leaves it as it is. Writes
benchmarks/results/<device>/pt2_accuracy/summary.json and prints a table.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SIZES = {
    "hidden_size": 256,
    "intermediate_size": 768,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "vocab_size": 2048,
    "max_position_embeddings": 1024,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
}
ARCHS = {
    "Qwen3": {"rms_norm_eps": 1e-6, "rope_theta": 1e6},
    "Llama": {"rms_norm_eps": 1e-5, "rope_theta": 5e5},
}


def round_bf16_to_nearest() -> None:
    """Make the Triton interpreter convert float32 to bfloat16 rounding to nearest even (torch's rounding,
    a GPU's), instead of truncating."""
    import numpy as np
    import triton.language as tl
    from triton.runtime import interpreter

    builder = getattr(interpreter, "InterpreterBuilder", None)
    if builder is None or not hasattr(builder, "cast_impl"):
        raise RuntimeError("this Triton's interpreter has no InterpreterBuilder.cast_impl to make round")
    truncating = builder.cast_impl

    def cast_impl(self, src, dst_type):
        if src.dtype.scalar == tl.float32 and dst_type.scalar == tl.bfloat16:
            data = torch.from_numpy(np.ascontiguousarray(src.data)).to(torch.bfloat16)
            bits = data.view(torch.int16).numpy().view(np.uint16).reshape(np.shape(src.data))
            return interpreter.TensorHandle(bits, dst_type.scalar)
        return truncating(self, src, dst_type)

    builder.cast_impl = cast_impl


def build(arch: str, layers: int) -> torch.nn.Module:
    import transformers

    from workbench import backends
    from workbench.models.build import ATTN_IMPLEMENTATION, _default_dtype, seeded_init

    config = getattr(transformers, f"{arch}Config")(**SIZES, **ARCHS[arch], num_hidden_layers=layers)
    config._attn_implementation = ATTN_IMPLEMENTATION
    with torch.device(backends.active().device()), _default_dtype(torch.bfloat16):
        model = getattr(transformers, f"{arch}ForCausalLM")(config)
    seeded_init(model, seed=0, std=0.02)
    return model.eval()


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def measure(arch: str, args) -> dict:
    import workbench.compile
    from workbench.compile import OVER_INDUCTOR

    model = build(arch, args.layers)
    reference_model = copy.deepcopy(model).to(torch.float64)
    gen = torch.Generator(device=model.device).manual_seed(0)
    ids = torch.randint(0, SIZES["vocab_size"], (1, args.seq), generator=gen, device=model.device)

    def logits(forward) -> torch.Tensor:
        with torch.inference_mode():
            return forward(input_ids=ids, use_cache=False).logits[0].double()

    reference, eager = logits(reference_model), logits(model)
    rows = {"native eager": {"vs_fp64": rel_err(eager, reference), "vs_eager": 0.0, "served": {}}}
    forward = type(model).forward.__get__(model)
    variants = {
        "native inductor": {},
        "ours (default include)": {"options": {"include": OVER_INDUCTOR}},
        "ours (default include, patterns off)": {"options": {"include": OVER_INDUCTOR, "patterns": False}},
        **{f"ours [{op}] alone": {"options": {"include": [op], "inner": "eager"}} for op in OVER_INDUCTOR},
    }
    for name, kw in variants.items():
        torch._dynamo.reset()
        workbench.compile.reset_coverage()
        backend = {"backend": "workbench"} if "options" in kw else {}
        out = logits(torch.compile(forward, **backend, **kw))
        cov = workbench.compile_coverage()
        served = {} if cov.empty else {r.aten_op: int(r.handled) for r in cov.itertuples() if r.handled}
        rows[name] = {"vs_fp64": rel_err(out, reference), "vs_eager": rel_err(out, eager), "served": served}
        print(f"[pt2_accuracy] {arch} {name}: {rows[name]['vs_fp64']:.3e} vs fp64", flush=True)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--interpreter-rounding", choices=["nearest", "truncate"], default="nearest")
    p.add_argument("--out", default=str(ROOT), help="directory that receives benchmarks/results/...")
    args = p.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from workbench import backends

    backend = backends.active()  # before triton: it fixes the interpreter mode on the cpu
    interpreted = backend.device_type == "cpu"
    if interpreted and args.interpreter_rounding == "nearest":
        round_bf16_to_nearest()
    import triton

    from workbench.store.meta import results_dir, run_metadata

    meta = run_metadata()
    out_dir = results_dir(args.out, "pt2_accuracy", meta)
    summary = {
        "device": meta["device"],
        "torch": torch.__version__,
        "triton": triton.__version__,
        "commit": meta.get("commit"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "layers": args.layers,
        "seq": args.seq,
        "interpreter_rounding": args.interpreter_rounding if interpreted else None,
        "models": {arch: measure(arch, args) for arch in args.archs},
    }
    name = f"summary_{args.interpreter_rounding}.json" if interpreted else "summary.json"
    (out_dir / name).write_text(json.dumps(summary, indent=1))
    print(f"\n{'model':<7}{'variant':<40}{'vs fp64':>10}{'vs eager':>10}")
    for arch, rows in summary["models"].items():
        for variant, r in rows.items():
            print(f"{arch:<7}{variant:<40}{r['vs_fp64']:>10.2e}{r['vs_eager']:>10.2e}")
    print(f"\nwritten: {out_dir / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
