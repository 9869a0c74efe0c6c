"""The profiling side of kernel tuning: the cache and the timer that `workbench.ops._tuning` is handed, and
`pretune`, which tunes every tunable kernel on a model's shapes ahead of a run (`workbench tune`).

`install()` gives the ops layer the ResultStore at $WORKBENCH_STORE (else out/workbench.db) as its tuning
cache and `AlternatedChoice` as its timer: candidates timed in alternated rounds, and a candidate other
than the first kept only when its speedup over the first exceeds the spread of that speedup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pandas as pd

from .store import ResultStore
from .timing import alternated_rounds


class AlternatedChoice:
    """Times candidates in alternated rounds; the fastest wins only beyond the spread, else the first."""

    def __init__(self, rep_ms: float = 40.0, min_rounds: int = 10):
        self.rep_ms, self.min_rounds = rep_ms, min_rounds

    def choose(self, candidates: Sequence[Callable[[], object]]) -> int:
        rounds = alternated_rounds(candidates, warmup_ms=5.0, rep_ms=self.rep_ms, min_rounds=self.min_rounds)
        medians = [rounds.kernel_time(i).ms for i in range(len(candidates))]
        best = min(range(len(candidates)), key=medians.__getitem__)
        return best if best and rounds.ratio(best, reference=0).beyond_spread else 0


def default_store() -> ResultStore:
    from workbench.regression import default_store_path

    return ResultStore(default_store_path())


def install(cache: ResultStore | str | Path | bool | None = True, replace: bool = True) -> None:
    """Hand the ops layer its tuning cache (True: the default store; a path: that store; None or False:
    none) and its timer. `replace=False` keeps whichever of the two was configured already."""
    from workbench.ops import _tuning

    if replace or _tuning._cache is _tuning._UNSET:
        if cache is True:
            cache = default_store()
        elif isinstance(cache, (str, Path)):
            cache = ResultStore(cache)
        _tuning.configure(cache=cache or None)
    if replace or _tuning._measure is None:
        _tuning.configure(measure=AlternatedChoice())


# ---- pre-tuning a model's shapes ------------------------------------------------------------------------

# Model dims beyond the Qwen3 presets of workbench.models (Llama-3-8B's public configuration).
_EXTRA_DIMS = {"llama-3-8b": dict(hidden_size=4096, intermediate_size=14336, num_attention_heads=32,
                                  num_key_value_heads=8, head_dim=128, vocab_size=128256)}
TUNED_OPS = ("linear", "scaled_dot_product_attention")


def model_dims(model: str) -> dict:
    from workbench.models.presets import PRESETS

    if model in PRESETS:
        return PRESETS[model]
    if model in _EXTRA_DIMS:
        return _EXTRA_DIMS[model]
    raise ValueError(f"model: expected one of {sorted({*PRESETS, *_EXTRA_DIMS})}, got {model!r}")


def shape_set(model: str, tokens: Iterable[int] = (1, 8, 2048),
              ops: Iterable[str] | None = None) -> list[tuple]:
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
    linears = {"q/o proj": (h, hq * hd), "k/v proj": (h, hkv * hd), "mlp up/gate": (h, inter),
               "mlp down": (inter, h), "lm_head": (h, d["vocab_size"])}
    if hq * hd != h:
        linears["o proj"] = (hq * hd, h)
    shapes = []
    for m in tokens:
        if "linear" in ops:
            shapes += [("linear", f"{name} {m}x{k}x{n}", [(m, k), (n, k)])
                       for name, (k, n) in linears.items()]
        if "scaled_dot_product_attention" in ops and m > 16:
            shapes.append(("scaled_dot_product_attention", f"prefill causal 1x{hq}x{m}x{hd} kv{hkv}",
                           [(1, hq, m, hd), (1, hkv, m, hd), (1, hkv, m, hd)]))
    return shapes


def pretune(model: str, ops: Iterable[str] | None = None, tokens: Iterable[int] = (1, 8, 2048),
            dtype: str = "bf16", progress: bool = True) -> pd.DataFrame:
    """Run every tunable call of `model`'s shape set once, so that each key is tuned (or found in the
    cache); one row per call with the keys it tuned and found."""
    import torch
    from tqdm.auto import tqdm

    from workbench import backends, ops as wops
    from workbench.ops import _tuning

    from .correctness import parse_dtypes

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
        rows.append({"op": op, "call": label, "tuned": _tuning.stats.tuned - before[0],
                     "from_cache": _tuning.stats.cache_hits - before[1]})
        del args
    return pd.DataFrame(rows, columns=["op", "call", "tuned", "from_cache"])
