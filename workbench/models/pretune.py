"""Pre-tuning a model's shapes (`workbench tune`): every tunable call a forward of the model makes, run once
so that each tuning key is chosen (or found in the store's tuning cache, `workbench.profiling.tuning`)
before a run."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from .presets import PRESETS

# Model dims beyond the Qwen3 presets of workbench.models (Llama-3-8B's public configuration).
_EXTRA_DIMS = {
    "llama-3-8b": dict(
        hidden_size=4096,
        intermediate_size=14336,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=128256,
    )
}
TUNED_OPS = ("linear", "scaled_dot_product_attention")


def model_dims(model: str) -> dict:
    if model in PRESETS:
        return PRESETS[model]
    if model in _EXTRA_DIMS:
        return _EXTRA_DIMS[model]
    raise ValueError(f"model: expected one of {sorted({*PRESETS, *_EXTRA_DIMS})}, got {model!r}")


def shape_set(
    model: str, tokens: Iterable[int] = (1, 8, 2048), ops: Iterable[str] | None = None
) -> list[tuple]:
    """(op, description, input shapes) of the tunable calls a forward of `model` makes at each token count
    (rows of a linear; the prompt length of a batch-1 prefill for attention, taken from 17 tokens up,
    below which decode attention has nothing to tune)."""
    d = model_dims(model)
    ops = list(ops or TUNED_OPS)
    unknown = [op for op in ops if op not in TUNED_OPS]
    if unknown:
        raise ValueError(f"ops: expected some of {TUNED_OPS}, got {unknown}")
    h, hd, hq, hkv = d["hidden_size"], d["head_dim"], d["num_attention_heads"], d["num_key_value_heads"]
    inter = d["intermediate_size"]
    linears = {
        "q/o proj": (h, hq * hd),
        "k/v proj": (h, hkv * hd),
        "mlp up/gate": (h, inter),
        "mlp down": (inter, h),
        "lm_head": (h, d["vocab_size"]),
    }
    if hq * hd != h:
        linears["o proj"] = (hq * hd, h)
    shapes = []
    for m in tokens:
        if "linear" in ops:
            shapes += [
                ("linear", f"{name} {m}x{k}x{n}", [(m, k), (n, k)]) for name, (k, n) in linears.items()
            ]
        if "scaled_dot_product_attention" in ops and m > 16:
            shapes.append(
                (
                    "scaled_dot_product_attention",
                    f"prefill causal 1x{hq}x{m}x{hd} kv{hkv}",
                    [(1, hq, m, hd), (1, hkv, m, hd), (1, hkv, m, hd)],
                )
            )
    return shapes


def pretune(
    model: str,
    ops: Iterable[str] | None = None,
    tokens: Iterable[int] = (1, 8, 2048),
    dtype: str = "bf16",
    progress: bool = True,
) -> pd.DataFrame:
    """Run every tunable call of `model`'s shape set once, so that each key is tuned (or found in the
    cache); one row per call with the keys it tuned and found."""
    import torch
    from tqdm.auto import tqdm

    from workbench import backends
    from workbench import ops as wops
    from workbench.ops import _tuning
    from workbench.profiling.correctness import parse_dtypes

    backend = backends.active()
    torch_dtype = parse_dtypes([dtype])[0]
    rows = []
    for op, label, shapes in tqdm(shape_set(model, tokens, ops), desc=f"tune {model}", disable=not progress):
        gen = torch.Generator(device=backend.device()).manual_seed(0)
        args = [torch.randn(s, dtype=torch_dtype, device=backend.device(), generator=gen) for s in shapes]
        before = (_tuning.stats.tuned, _tuning.stats.cache_hits)
        if op == "linear":
            wops.linear(*args)
        else:
            wops.scaled_dot_product_attention(*args, is_causal=True, enable_gqa=True)
        backend.synchronize()
        rows.append(
            {
                "op": op,
                "call": label,
                "tuned": _tuning.stats.tuned - before[0],
                "from_cache": _tuning.stats.cache_hits - before[1],
            }
        )
        del args
    return pd.DataFrame(rows, columns=["op", "call", "tuned", "from_cache"])
