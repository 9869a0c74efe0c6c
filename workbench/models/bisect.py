"""`bisect`: which of our ops make a full-model run lose accuracy or throughput against native.

The model runs with a subset of our ops switched on (`workbench_side(include=subset)`: `use_ops`, or the
forward compiled with the workbench backend and that subset's fusion patterns, see side.py) and one
number is compared with the native run on the same weights and prompt:

- metric "accuracy": relative error of the last position's logits after a prefill (loss: > threshold);
- metric "throughput": native time / workbench time of a prefill or of eager decode steps
  (loss: < threshold).

Search: start from every candidate op on; while a group shows the loss, split it in two halves and
follow the half that still shows it, down to single ops. Where both halves show it (several culprits,
e.g. every op adds host overhead to eager decoding) the group's ops are tried one by one instead. A
group whose halves are both clean on their own (the loss needs several ops together, e.g. small errors
or slowdowns that add up) is reported as one joint culprit. Each culprit's effect is then measured
twice: with only it on ("alone") and with every other candidate on ("without": does switching it off
remove the loss?).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from workbench import backends

from . import measure
from .run import TARGETS, _decode_profile_fn, _random_prompt, resolve_model
from .side import EXECUTIONS, check_selection, default_execution, workbench_side

METRICS = ("accuracy", "throughput")


@dataclass
class BisectResult:
    metric: str
    phase: str
    threshold: float
    native: float  # accuracy: 0 (native against itself); throughput: native ms
    all_on: float  # the metric with every candidate on
    candidates: list[str]
    culprits: pd.DataFrame  # culprit, ops, alone, without, fixed_without
    steps: pd.DataFrame  # step, n_ops, ops, value, loss

    def describe(self) -> str:
        what = "logits rel err" if self.metric == "accuracy" else f"{self.phase} throughput ratio"
        head = (
            f"{what} with all {len(self.candidates)} candidate ops on: {self.all_on:.4g} "
            f"(threshold {self.threshold:g}); {len(self.steps)} evaluations"
        )
        if self.culprits.empty:
            return (
                head + "; no loss to explain"
                if not _is_loss(self.metric, self.all_on, self.threshold)
                else head + "; no culprit found"
            )
        lines = [head]
        for r in self.culprits.itertuples():
            if r.culprit.endswith("(member)"):
                lines.append(f"  {r.culprit}: alone {r.alone:.4g}")
            elif math.isnan(r.without):
                lines.append(
                    f"  {r.culprit}: alone {r.alone:.4g}; all others on without it: not measured (budget)"
                )
            else:
                lines.append(
                    f"  {r.culprit}: alone {r.alone:.4g}, all others on without it {r.without:.4g}"
                    f"{' (loss gone)' if r.fixed_without else ' (loss remains)'}"
                )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"BisectResult({self.describe()})"


def _is_loss(metric: str, value: float, threshold: float) -> bool:
    if math.isnan(value):  # the run failed or produced NaN: a loss either way
        return True
    return value > threshold if metric == "accuracy" else value < threshold


def _base(aten_name: str) -> str:
    """'aten::add.Tensor' -> 'add' (coverage and OpSpec.aten may spell overloads differently)."""
    return aten_name.split("::")[-1].split(".")[0]


def served_ops(coverage: pd.DataFrame) -> list[str]:
    """Registry ops (in registry order) that served at least one ATen call in a coverage table."""
    from workbench.ops import REGISTRY

    served = coverage[coverage["handled"] > 0]
    if "op" in served:  # the recorder names the workbench op behind each overload
        names = set(served["op"])
        return [name for name in REGISTRY if name in names]
    handled = {_base(a) for a in served["aten_op"]}
    return [name for name, spec in REGISTRY.items() if any(_base(a) in handled for a in spec.aten)]


class _Evaluator:
    """metric(value) for one subset of ops on; results cached by subset, every evaluation logged."""

    def __init__(
        self,
        model,
        ids: torch.Tensor,
        metric: str,
        phase: str,
        backend,
        reps: int,
        decode_steps: int,
        fuse: bool,
        execution: str,
    ):
        self.fuse, self.execution = fuse, execution
        self.model, self.ids, self.metric, self.phase, self.backend = model, ids, metric, phase, backend
        self.reps, self.decode_steps = reps, decode_steps
        self.log: list[dict] = []
        self._cache: dict[frozenset, float] = {}
        with torch.inference_mode():
            if metric == "accuracy":
                self.reference = measure.prompt_logits(model, ids, keep=1)[:, -1].float()
                self.native = 0.0
            else:
                self.native = self._time()

    def _time(self) -> float:
        if self.phase == "prefill":
            return measure.time_prefill(self.model, self.ids, self.backend, warmup=1, reps=self.reps)
        times = []
        for _ in range(self.reps + 1):  # the first run warms up
            run = _decode_profile_fn(self.model, self.ids, self.decode_steps)
            self.backend.synchronize()
            t0 = time.perf_counter()
            run()
            self.backend.synchronize()
            times.append((time.perf_counter() - t0) * 1e3)
        return float(pd.Series(times[1:]).median())

    def run_all(self) -> pd.DataFrame:
        """Coverage of one accuracy forward with every registered op on."""
        if self.execution == "compile":
            import workbench.compile

            workbench.compile.reset_coverage()  # this model's graphs only
        with (
            torch.inference_mode(),
            workbench_side(self.model, fuse=self.fuse, execution=self.execution) as cov,
        ):
            measure.prompt_logits(self.model, self.ids, keep=1)
        return cov.table()

    def __call__(self, ops: Iterable[str]) -> float:
        key = frozenset(ops)
        if key not in self._cache:
            with (
                torch.inference_mode(),
                workbench_side(self.model, include=sorted(key), fuse=self.fuse, execution=self.execution),
            ):
                if self.metric == "accuracy":
                    out = measure.prompt_logits(self.model, self.ids, keep=1)[:, -1].float()
                    value = float(
                        torch.linalg.vector_norm(out - self.reference)
                        / torch.linalg.vector_norm(self.reference)
                    )
                else:
                    value = self.native / self._time()
            self._cache[key] = value
        return self._cache[key]

    def loss(self, ops: Iterable[str], threshold: float) -> bool:
        ops = sorted(ops)
        cached = frozenset(ops) in self._cache
        value = self(ops)
        if not cached:
            self.log.append(
                {
                    "step": len(self.log),
                    "n_ops": len(ops),
                    "ops": ",".join(ops),
                    "value": value,
                    "loss": _is_loss(self.metric, value, threshold),
                }
            )
        return _is_loss(self.metric, value, threshold)


def _search(
    group: list[str], lossy: Callable[[list[str]], bool], in_time: Callable[[], bool]
) -> list[list[str]]:
    """Minimal groups that show the loss, given that `group` shows it.

    Halving finds a few culprits in about 2 log2(n) runs each. Where both halves show the loss (many
    culprits, e.g. every op adds host overhead) the group's ops are tried one by one instead: n runs,
    not the 2n - 1 a full halving tree would take. Out of time, the group is returned unsplit.
    """
    if len(group) == 1 or not in_time():
        return [group]
    half = len(group) // 2
    first, second = group[:half], group[half:]
    in_first = lossy(first)
    in_second = lossy(second)
    if in_first and in_second:
        singles = [[op] for op in group if in_time() and lossy([op])]
        return singles or [group]
    found = (
        _search(first, lossy, in_time) if in_first else _search(second, lossy, in_time) if in_second else []
    )
    return found or [group]  # neither half alone: the ops act together


def bisect(
    preset: str | torch.nn.Module = "tiny",
    metric: str = "accuracy",
    threshold: float | None = None,
    backend: str | None = None,
    ops: Iterable[str] | None = None,
    phase: str = "prefill",
    batch: int = 1,
    prompt_len: int = 32,
    decode_steps: int = 8,
    reps: int = 3,
    checkpoint: str | Path | None = None,
    seed: int = 0,
    fuse: bool = True,
    budget_s: float | None = None,
    execution: str | None = None,
    **overrides,
) -> BisectResult:
    """Find the ops that cause an accuracy or throughput loss of the workbench side.

    metric "accuracy": threshold on the last-position logits relative error (default: the 2e-2 target).
    metric "throughput": threshold on native/workbench speed of `phase` ("prefill" or "decode")
    (default: the target for that phase). ops: candidate op names from workbench.ops.REGISTRY
    (default: every op that served a call or graph node — through ATen or as a fusion pattern — with all on).
    budget_s: stop splitting after this many seconds; unsplit groups are reported as they are.
    execution: "eager" (use_ops) or "compile" (workbench backend; one compilation per subset tried);
    None: "compile" where the backend compiles kernels, "eager" in the interpreter.
    """
    if metric not in METRICS:
        raise ValueError(f"metric: expected one of {METRICS}, got {metric!r}")
    if phase not in ("prefill", "decode"):
        raise ValueError(f"phase: expected 'prefill' or 'decode', got {phase!r}")
    if threshold is None:
        threshold = (
            TARGETS["logits_rel_err"]
            if metric == "accuracy"
            else TARGETS["prefill" if phase == "prefill" else "decode_eager"]
        )
    chosen = backends.active(backend)
    execution = default_execution(chosen) if execution is None else execution
    if execution not in EXECUTIONS:
        raise ValueError(f"execution: expected one of {EXECUTIONS}, got {execution!r}")
    from workbench.ops import REGISTRY

    if ops is not None:
        ops = list(ops)
        unknown = [o for o in ops if o not in REGISTRY]
        if unknown or not ops:
            raise ValueError(
                f"ops: expected registered op names, got unknown {unknown or 'empty list'}; "
                f"registered: {sorted(REGISTRY)}"
            )
        check_selection(ops, None)
    model, _ = resolve_model(preset, checkpoint, seed, **overrides)
    ids = _random_prompt(model.config.vocab_size, batch, prompt_len, seed, model.device)
    evaluate = _Evaluator(model, ids, metric, phase, chosen, reps, decode_steps, fuse, execution)
    candidates = ops if ops is not None else served_ops(evaluate.run_all())
    if not candidates:
        raise ValueError("ops: no workbench op served any ATen call in this model; nothing to bisect")

    def lossy(group: list[str]) -> bool:
        return evaluate.loss(group, threshold)

    started = time.perf_counter()

    def in_time() -> bool:
        return budget_s is None or time.perf_counter() - started < budget_s

    all_lossy = lossy(candidates)
    rows = []
    if all_lossy:
        for group in _search(candidates, lossy, in_time):
            without = [o for o in candidates if o not in group]
            if not without:
                without_value = 0.0 if metric == "accuracy" else 1.0  # all off: the native run itself
            else:
                without_value = evaluate(without) if in_time() else float("nan")
            rows.append(
                {
                    "culprit": "+".join(group),
                    "ops": group,
                    "alone": evaluate(group),
                    "without": without_value,
                    "fixed_without": not _is_loss(metric, without_value, threshold),
                }
            )
            if 1 < len(group) <= 8 and in_time():  # a joint culprit: each member's share, alone
                for op in group:
                    rows.append(
                        {
                            "culprit": f"  {op} (member)",
                            "ops": [op],
                            "alone": evaluate([op]),
                            "without": float("nan"),
                            "fixed_without": False,
                        }
                    )
    culprits = pd.DataFrame(rows, columns=["culprit", "ops", "alone", "without", "fixed_without"])
    return BisectResult(
        metric=metric,
        phase=phase,
        threshold=threshold,
        native=evaluate.native,
        all_on=evaluate(candidates),
        candidates=candidates,
        culprits=culprits,
        steps=pd.DataFrame(evaluate.log, columns=["step", "n_ops", "ops", "value", "loss"]),
    )
