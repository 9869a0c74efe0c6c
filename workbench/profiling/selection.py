"""Enable by measured wins: which ops win on this device, per shape class, from the bench rows in the store.

A call's shape class is (size, dtype) of its first tensor argument, in the op's own argument order (the
order `bench` builds inputs in): size "decode" up to DECODE_NUMEL elements (a decode batch of up to 64
rows of 4096), "prefill" above. `measured_selection(store, device)` decides per (op, size, dtype): an op
is enabled on a class when the store holds bench rows of its implementation there on `device` (the
newest row of each case) and every one of them is correct and faster than native beyond its measured
spread (`timing.beyond_spread` of the per-round speedup). Every decision carries its reason, naming the
case, the device and the run it comes from. `gate` wraps an implementation so that calls of a class
that is not enabled raise `Unsupported` with that reason: under `use_ops(policy="measured")` they run
natively and the coverage table says why.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch

from workbench.ops.spec import REGISTRY, Unsupported
from workbench.store import KEY, ResultStore

from .timing import beyond_spread

DECODE_NUMEL = 64 * 4096
POLICIES = ("all", "measured")
_DTYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


@dataclass(frozen=True)
class Decision:
    enabled: bool
    reason: str


def size_class(numel: int) -> str:
    return "decode" if numel <= DECODE_NUMEL else "prefill"


def call_class(args: tuple) -> tuple[str, str] | None:
    """(size, dtype) of the first tensor among `args` (inside a list for cat); None without one."""
    for a in args:
        if isinstance(a, (list, tuple)) and a and isinstance(a[0], torch.Tensor):
            a = a[0]
        if isinstance(a, torch.Tensor):
            return size_class(a.numel()), _DTYPES.get(a.dtype, str(a.dtype).replace("torch.", ""))
    return None


def _label_numel(shape_label: str) -> int:
    first = str(shape_label).split(" ")[0]
    return 1 if first in ("", "scalar") else math.prod(int(d) for d in first.split("x"))


def _verdict(row) -> tuple[bool, str]:
    """(wins, what it measured) for one bench row."""
    where = f"{row.case} ({row.dtype})"
    if isinstance(row.error, str) and row.error:
        return False, f"error at {where}"
    if row.passed is not True and row.passed != 1:
        return False, f"incorrect at {where}"
    p20, p80 = getattr(row, "speedup_p20", None), getattr(row, "speedup_p80", None)
    if p20 is None or p80 is None or pd.isna(p20) or pd.isna(p80):
        return False, f"{row.speedup:.2f}x at {where} without a spread (no alternated rounds)"
    text = f"{row.speedup:.2f}x (p20-p80 {p20:.2f}-{p80:.2f}) at {where}"
    return beyond_spread(row.speedup, p20, p80), text


def measured_selection(
    store: ResultStore, device: str, backend: str | None = None
) -> dict[tuple[str, str, str], Decision]:
    """(op, size class, dtype) -> Decision from the newest bench row of each case of the op's
    implementation for `backend` (default: the active one) on `device`."""
    from workbench import backends

    backend = backend or backends.active().name
    rows = store.history("bench", device)
    if rows.empty:
        return {}
    rows = rows.drop_duplicates(subset=KEY, keep="last")
    decisions: dict[tuple[str, str, str], Decision] = {}
    for op, spec in REGISTRY.items():
        mine = rows[(rows["op"] == op) & (rows["impl"] == spec.variant_name(backend))]
        if mine.empty:
            continue
        mine = mine.assign(size=[size_class(_label_numel(s)) for s in mine["shape"]])
        for (size, dtype), group in mine.groupby(["size", "dtype"]):
            verdicts = [(_verdict(r), r) for r in group.itertuples()]
            losses = [(text, r) for (wins, text), r in verdicts if not wins]
            if losses:
                text, r = min(losses, key=lambda x: x[1].speedup if pd.notna(x[1].speedup) else -1.0)
                decisions[(op, size, dtype)] = Decision(
                    False, f"not enabled: {text} on {device}, run {r.run_id}"
                )
            else:
                text, r = min(((t, r) for (_, t), r in verdicts), key=lambda x: x[1].speedup)
                decisions[(op, size, dtype)] = Decision(
                    True, f"enabled: {text} and every other {size} case on {device}, run {r.run_id}"
                )
    return decisions


def op_decisions(decisions: dict[tuple[str, str, str], Decision], op: str) -> dict[tuple[str, str], Decision]:
    return {(size, dtype): d for (name, size, dtype), d in decisions.items() if name == op}


def gate(impl: Callable, classes: dict[tuple[str, str], Decision], device: str) -> Callable:
    """`impl` for the enabled classes; other calls raise Unsupported with the reason (native runs them)."""
    enabled = {c for c, d in classes.items() if d.enabled}
    refused = {c: d.reason for c, d in classes.items() if not d.enabled}

    def gated(*args, **kwargs):
        cls = call_class(args)
        if cls not in enabled:
            raise Unsupported(
                refused.get(cls)
                or f"not enabled: no bench row at {cls[0] if cls else 'this'} "
                f"{cls[1] if cls else 'call'} on {device}"
            )
        return impl(*args, **kwargs)

    return gated
