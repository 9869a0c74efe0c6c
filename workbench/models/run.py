"""`run_model`: one Qwen3 model, run natively and with workbench kernels, in one process.

Both sides use the same weights and the same prompt. The workbench side is `workbench.use_ops(include,
exclude)` (eager execution) or the model's forward compiled with the workbench backend (compiled
execution, see `side.py`), entered afresh for each measurement; the coverage recorders of all those
contexts are summed (compiled: the node coverage of the graphs compiled). Phases, each measured on both
sides before the next:

- accuracy forward: logits of every prompt position (last position compared as a relative error,
  every position's argmax compared as teacher-forced token agreement); where memory allows, the same
  forward of a float32 twin of the model is the reference both sides are measured against too;
- `prefill`: tokens/s of a cache-free forward that keeps only the last logits (as generate does);
- `decode_eager`: tokens/s of the decode steps of greedy `model.generate` (dynamic cache);
- `decode_graph`: tokens/s of greedy decoding on a static cache with one captured graph per step,
  where the backend has a graph API (both sides, or neither);
- `decode_sample` (decode modes): tokens/s of top-k / temperature sampling with `generate`, seeded alike
  on both sides (softmax, topk, masked_fill, multinomial, ... besides the greedy path's ops); its token
  agreement is informational, accuracy is judged on the greedy runs;
- `loss` (prefill modes): tokens/s of a loss pass over the prompt (`labels` -> cross_entropy, plus
  per-token log-probabilities and perplexity), its loss compared between the sides and with float32;
- a torch.profiler breakdown per ATen op of one prefill and a few eager decode steps.
Every timed phase runs in alternated rounds, native and workbench in turn with the side that goes first
changing every round, so that drift (a busy host, clocks) hits both alike; the ratio is taken per round
and reported as the median with its p20-p80 spread (`unstable` above 5%).
"""

from __future__ import annotations

import contextlib
import re
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from workbench import backends

from . import measure
from .build import build_model, twin
from .side import EXECUTIONS, check_selection, default_execution, workbench_side
from .train import TrainRun, train_both

MODES = ("prefill", "decode", "both")
SIDES = ("native", "workbench")
# The targets (H100, bf16, qwen3-8b): throughput ratios workbench / native, accuracy, coverage.
TARGETS = {
    "prefill": 0.95,
    "decode_eager": 0.9,
    "decode_graph": 0.9,
    "logits_rel_err": 2e-2,
    "token_agreement": 0.95,
    "aten_ops_served": 30,
}
SAMPLING = {"top_k": 50, "temperature": 0.8}  # the decode_sample phase's generation settings
# The per-round ratio's median, 20th and 80th percentiles and whether their spread exceeds 5%
# (profiling.timing); the workbench side's throughput rows carry them.
SPREAD = ("ratio", "ratio_p20", "ratio_p80", "unstable")


@dataclass
class ModelRun:
    """Everything one `run_model` call measured; each table is a DataFrame."""

    config: dict
    throughput: pd.DataFrame  # phase, side, batch, tokens, ms, tokens_per_s, ratio(_p20/_p80), unstable, note
    accuracy: pd.DataFrame  # metric, value, target, met
    agreement: pd.DataFrame  # kind, position, agreement (fraction of the batch with identical tokens)
    coverage: pd.DataFrame  # workbench.use_ops coverage: aten_op, calls, handled, fallback, reasons
    profile: pd.DataFrame  # phase, aten_op, native_calls, native_ms, workbench_calls, workbench_ms, ratio
    tokens: dict = field(default_factory=dict)  # (side, phase) -> generated tokens [batch, new_tokens] on cpu

    def ratios(self) -> pd.DataFrame:
        """Per phase: native and workbench tokens/s, workbench/native ratio (the median of the per-round
        ratios, with p20, p80 and the unstable flag), the target."""
        t = self.throughput
        rows = []
        for phase in dict.fromkeys(t["phase"]):
            side = t[t["phase"] == phase].set_index("side")
            native, ours = (side["tokens_per_s"].get(s) for s in SIDES)
            spread = {c: side[c].get("workbench") if c in side else None for c in SPREAD}
            if spread["ratio"] is None or pd.isna(spread["ratio"]):  # no rounds: the quotient of the medians
                spread["ratio"] = ours / native if native and ours else float("nan")  # NaN stays NaN
            ratio = spread["ratio"]
            target = TARGETS.get(phase, float("nan"))  # the sampling and loss phases have none
            rows.append(
                {
                    "phase": phase,
                    "native_tok_s": native,
                    "workbench_tok_s": ours,
                    **spread,
                    "target": target,
                    "met": bool(ratio >= target) if phase in TARGETS else None,
                    "note": "; ".join(n for n in side["note"] if n),
                }
            )
        return pd.DataFrame(
            rows, columns=["phase", "native_tok_s", "workbench_tok_s", *SPREAD, "target", "met", "note"]
        )

    def ops_served(self) -> list[str]:
        """Distinct ATen overloads that workbench kernels served at least once over the run (handled > 0;
        fused-op rows are module patches, not ATen ops, and are not counted)."""
        cov = self.coverage
        if cov.empty:
            return []
        return sorted(
            cov.loc[(cov["handled"] > 0) & cov["aten_op"].str.startswith("aten::"), "aten_op"].unique()
        )

    def summary(self) -> pd.DataFrame:
        """One row per headline metric (ratios, accuracy, ops served) with its target,
        plus the run's config."""
        rows = [
            {"metric": f"{r.phase}_ratio", "value": r.ratio, "target": r.target, "met": r.met}
            for r in self.ratios().itertuples()
        ]
        rows += self.accuracy.to_dict("records")
        served = len(self.ops_served())
        target = TARGETS["aten_ops_served"]
        rows.append(
            {"metric": "aten_ops_served", "value": float(served), "target": target, "met": served >= target}
        )
        df = pd.DataFrame(rows)
        for key, value in self.config.items():
            df[key] = value if not isinstance(value, (list, tuple)) else ",".join(map(str, value))
        return df


def _random_prompt(vocab: int, batch: int, length: int, seed: int, device: torch.device) -> torch.Tensor:
    gen = torch.Generator(device=device).manual_seed(seed)
    return torch.randint(0, vocab, (batch, length), generator=gen, device=device)


def _error_note(e: Exception) -> str:
    last = traceback.extract_tb(e.__traceback__)[-1]
    return (
        f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
        f"({Path(last.filename).name}:{last.lineno})"
    )


def _decode_profile_fn(model, ids: torch.Tensor, steps: int):
    """Prefill on a dynamic cache now; the returned callable runs `steps` eager greedy decode steps."""
    kw = measure.cache_kwarg(model)
    out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
    state = {"cache": getattr(out, kw), "tok": out.logits[:, -1].argmax(-1, keepdim=True)}

    def run():
        for _ in range(steps):
            o = model(input_ids=state["tok"], **{kw: state["cache"]}, use_cache=True, logits_to_keep=1)
            state["tok"] = o.logits[:, -1].argmax(-1, keepdim=True)

    return run


class _Sides:
    """Enters one side for a measurement: native = nothing; workbench = `workbench_side` (use_ops, or the
    forward compiled with the workbench backend). Every workbench context's coverage table is kept and
    summed at the end (compiled: the backend's node coverage of every graph compiled)."""

    def __init__(self, model, include, exclude, fuse: bool, execution: str):
        self.model, self.include, self.exclude, self.fuse = model, include, exclude, fuse
        self.execution = execution
        self.tables: list[pd.DataFrame] = []
        self.compiled = None

    @contextlib.contextmanager
    def __call__(self, side: str):
        with torch.inference_mode():
            if side == "native":
                yield
                return
            with workbench_side(self.model, self.include, self.exclude, self.fuse, self.execution) as cov:
                yield
            if self.execution == "eager":
                self.tables.append(cov.table())
            else:
                self.compiled = cov.table()

    def coverage(self) -> pd.DataFrame:
        if self.compiled is not None:
            return self.compiled
        columns = ["aten_op", "op", "calls", "handled", "fallback", "reasons"]
        frames = [t for t in self.tables if len(t)]
        if not frames:
            return pd.DataFrame(columns=columns)
        df = pd.concat(frames, ignore_index=True)
        df["op"] = df["op"].fillna("")
        df["reasons"] = df["reasons"].fillna("")
        merged = df.groupby(["aten_op", "op"], as_index=False, sort=False).agg(
            calls=("calls", "sum"),
            handled=("handled", "sum"),
            fallback=("fallback", "sum"),
            reasons=("reasons", _sum_reasons),
        )
        return merged.sort_values("calls", ascending=False, ignore_index=True)[columns]


def _sum_reasons(cells: Iterable[str]) -> str:
    """Join coverage `reasons` cells ("why (count); why (count)"), adding the counts of equal reasons."""
    counts: dict[str, int] = {}
    for cell in cells:
        for item in filter(None, cell.split("; ")):
            match = re.fullmatch(r"(.*) \((\d+)\)", item)
            why, n = (match.group(1), int(match.group(2))) if match else (item, 1)
            counts[why] = counts.get(why, 0) + n
    return "; ".join(f"{why} ({n})" for why, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def _measure(
    model,
    ids: torch.Tensor,
    sides: _Sides,
    mode: str,
    new_tokens: int,
    graphs,
    backend,
    warmup: int,
    reps: int,
    decode_reps: int,
    profile: bool,
    profile_steps: int,
    loss: bool,
    sample_tokens: int,
    seed: int,
) -> tuple[dict, str]:
    """Every phase of `mode`, each on both sides before the next; a phase that raises leaves a note."""
    batch, prompt_len = ids.shape
    res: dict = {s: {"rows": [], "profile": []} for s in SIDES}
    graphs_note = ""

    def row(side, phase, tokens, ms, note="", ratio=None):
        spread = dict(zip(SPREAD, (ratio.median, ratio.p20, ratio.p80, ratio.unstable))) if ratio else {}
        res[side]["rows"].append(
            {
                "phase": phase,
                "batch": batch,
                "tokens": tokens,
                "ms": ms,
                "tokens_per_s": tokens / (ms / 1e3) if ms > 0 else float("nan"),
                "note": note,
                **spread,
            }
        )

    for side in SIDES:
        with sides(side):
            logits = measure.prompt_logits(model, ids)
            res[side]["last_logits"] = logits[:, -1].float().cpu()
            res[side]["argmax"] = logits.argmax(-1).cpu()
            del logits
    if mode in ("prefill", "both"):

        def forward():
            return measure.prompt_logits(model, ids, keep=1)

        _alternate(
            res,
            sides,
            "prefill",
            batch * prompt_len,
            reps,
            row,
            prepare=lambda side: _repeat(forward, warmup),
            measure_once=lambda side, _: (None, measure.timed_ms(forward, backend)),
        )
        if loss:

            def loss_once(side, _):
                out = {}
                ms = measure.timed_ms(lambda: out.update(measure.prompt_loss(model, ids)), backend)
                res[side]["loss"] = {k: v.float().cpu() for k, v in out.items()}  # the last run's
                return None, ms

            _alternate(
                res,
                sides,
                "loss",
                batch * prompt_len,
                reps,
                row,
                prepare=lambda side: _repeat(lambda: measure.prompt_loss(model, ids), warmup),
                measure_once=loss_once,
            )
    if mode in ("decode", "both"):
        decoded = batch * (new_tokens - 1)
        _alternate(
            res,
            sides,
            "decode_eager",
            decoded,
            decode_reps,
            row,
            # one whole untimed generate first: compiles, autotunes and grows the caches and the
            # allocator to the timed rounds' sizes (a short one left the first timed round 3x slower)
            prepare=lambda side: (
                measure.generate_eager(model, ids, new_tokens, backend) if warmup > 0 else None
            ),
            measure_once=lambda side, _: measure.generate_eager(model, ids, new_tokens, backend),
        )
        if sample_tokens:

            def sample(side, tokens):
                return measure.generate_sampled(model, ids, tokens, backend, seed, **SAMPLING)

            _alternate(
                res,
                sides,
                "decode_sample",
                batch * (sample_tokens - 1),
                decode_reps,
                row,
                prepare=lambda side: sample(side, min(sample_tokens, 4)) if warmup > 0 else None,
                measure_once=lambda side, _: sample(side, sample_tokens),
            )
        if graphs is not None:

            def capture(side):
                if side == "workbench" and res["native"].get("graph_failed"):
                    return None  # graphs on both sides or on neither
                decoder = measure.StaticDecoder(model, batch, prompt_len, new_tokens, backend)
                decoder.capture(ids, graphs)
                return decoder

            _alternate(
                res,
                sides,
                "decode_graph",
                decoded,
                decode_reps,
                row,
                prepare=capture,
                measure_once=lambda side, decoder: decoder.run(ids),
            )
            if res["native"].get("graph_failed"):
                graphs_note = "graph capture failed on the native side: " + res["native"]["graph_failed"]
    if profile:
        for side in SIDES:
            with sides(side):
                if mode in ("prefill", "both"):
                    p = measure.profile_ops(lambda: measure.prompt_logits(model, ids, keep=1), backend)
                    res[side]["profile"].append(p.assign(phase="prefill"))
                if mode in ("decode", "both"):
                    p = measure.profile_ops(_decode_profile_fn(model, ids, profile_steps), backend)
                    res[side]["profile"].append(
                        p.assign(phase=f"decode ({profile_steps} step{'s' * (profile_steps != 1)})")
                    )
    return res, graphs_note


def _repeat(fn, n: int) -> None:
    """Warm-up: `n` untimed runs of `fn`, their outputs dropped."""
    for _ in range(n):
        fn()


def _alternate(
    res: dict, sides: _Sides, phase: str, tokens: int, reps: int, row, prepare, measure_once
) -> None:
    """`prepare(side)` once per side, then `reps` alternated rounds (timing.rounds_of: the side that goes
    first changes every round) of `measure_once(side, prepared)` -> (new tokens or None, ms). The rows get
    each side's median ms and the workbench row the spread of the per-round ratio; new tokens go to
    `res[side]["tokens_<kind>"]`."""
    from workbench.profiling.timing import rounds_of

    key = "tokens_" + phase.split("_")[-1]
    prepared, failed = {}, {}
    for side in SIDES:
        with sides(side):
            try:
                prepared[side] = prepare(side)
            except Exception as e:  # noqa: BLE001 (the phase's row carries the error; the run goes on)
                failed[side] = _error_note(e)
    if phase == "decode_graph" and "native" in failed:
        res["native"]["graph_failed"] = failed["native"]

    def sample(side):
        def once() -> float:
            if side in failed or (phase == "decode_graph" and prepared.get(side) is None):
                return float("nan")
            with sides(side):
                try:
                    new, ms = measure_once(side, prepared[side])
                except Exception as e:  # noqa: BLE001 (the phase's row carries the error; the run goes on)
                    failed[side] = _error_note(e)
                    return float("nan")
            if new is not None:
                res[side][key] = new.cpu()
            return ms

        return once

    rounds = rounds_of([sample(side) for side in SIDES], max(1, reps))
    both = not failed and all(not pd.isna(t) for times in rounds.times for t in times)
    for i, side in enumerate(SIDES):
        times = [t for t in rounds.times[i] if not pd.isna(t)]
        if side in failed:
            row(side, phase, tokens, float("nan"), failed[side])
        elif times:
            row(
                side,
                phase,
                tokens,
                float(pd.Series(times).median()),
                ratio=rounds.ratio(i, reference=0) if both and side != "native" else None,
            )
    prepared.clear()  # frees the static caches and graphs


def _reference_logits(model, ids: torch.Tensor, fp32_reference) -> tuple[dict | None, str]:
    """({"last_logits", "argmax", "loss"} of a float32 twin's prompt forward, note), or (None, why not).
    "loss" is the mean next-token cross-entropy of the prompt computed from those float32 logits."""
    if fp32_reference is False:
        return None, "not requested"
    ref_model = fp32_reference if isinstance(fp32_reference, torch.nn.Module) else None
    if ref_model is None:
        twin_bytes = sum(p.numel() * 4 for p in model.parameters())
        need = int(1.25 * twin_bytes) + (4 << 30)  # the twin, float32 logits and activations
        _empty_cache(model.device)  # blocks torch keeps cached count as used for the driver
        free = _free_device_bytes(model.device)
        if free is not None and free < need:
            if fp32_reference:
                raise ValueError(
                    f"fp32_reference: needs about {need / 2**30:.0f} GiB of device memory, "
                    f"{free / 2**30:.0f} GiB free"
                )
            return None, f"skipped: a float32 twin needs ~{need / 2**30:.0f} GiB, {free / 2**30:.0f} GiB free"
        ref_model = twin(model, torch.float32)
    with torch.inference_mode():
        logits = measure.prompt_logits(ref_model, ids)
        out = {"last_logits": logits[:, -1].float().cpu(), "argmax": logits.argmax(-1).cpu()}
        if ids.shape[1] > 1:  # one sequence at a time: a float32 copy of one row of logits at most
            total = sum(
                torch.nn.functional.cross_entropy(logits[i, :-1].float(), ids[i, 1:], reduction="sum")
                for i in range(ids.shape[0])
            )
            out["loss"] = (total / (ids.shape[0] * (ids.shape[1] - 1))).cpu()
    del logits
    if not isinstance(fp32_reference, torch.nn.Module):
        del ref_model
        _empty_cache(model.device)
    return out, ""


def _free_device_bytes(device: torch.device) -> int | None:
    module = getattr(torch, device.type, None)
    if device.type == "cpu" or not hasattr(module, "mem_get_info"):
        return None
    return module.mem_get_info(device)[0]


def _empty_cache(device: torch.device) -> None:
    module = getattr(torch, device.type, None)
    if device.type != "cpu" and hasattr(module, "empty_cache"):
        module.empty_cache()


def _agreement(kind: str, ours: torch.Tensor, native: torch.Tensor) -> pd.DataFrame:
    same = (ours == native).float().mean(0)
    return pd.DataFrame({"kind": kind, "position": range(len(same)), "agreement": same.numpy()})


def _first_divergence(ours: torch.Tensor, native: torch.Tensor) -> float:
    """Mean over the batch of the first position where the sequences differ (length if never)."""
    diff = ours != native
    first = torch.where(
        diff.any(1), diff.float().argmax(1), torch.full_like(diff[:, 0], diff.shape[1], dtype=torch.long)
    )
    return float(first.float().mean())


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def _accuracy(native: dict, ours: dict, reference: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    rel = _rel_err(ours["last_logits"], native["last_logits"])
    rows = [
        {
            "metric": "logits_rel_err",
            "value": rel,
            "target": TARGETS["logits_rel_err"],
            "met": rel <= TARGETS["logits_rel_err"],
        }
    ]
    tables = [_agreement("prompt (teacher-forced)", ours["argmax"], native["argmax"])]
    checks = [("prompt_token_agreement", "argmax")]
    for phase in ("eager", "graph"):
        key = f"tokens_{phase}"
        if key in native and key in ours:
            tables.append(_agreement(f"greedy decode_{phase}", ours[key], native[key]))
            checks.append((f"greedy_{phase}", key))
    for metric, key in checks:
        value = float((ours[key] == native[key]).float().mean())
        name = metric if key == "argmax" else f"{metric}_token_agreement"
        rows.append(
            {
                "metric": name,
                "value": value,
                "target": TARGETS["token_agreement"],
                "met": value >= TARGETS["token_agreement"],
            }
        )
        if key != "argmax":  # free-running: one flip changes every later token, so say where it starts
            rows.append(
                {
                    "metric": f"{metric}_first_divergence",
                    "value": _first_divergence(ours[key], native[key]),
                    "target": float("nan"),
                    "met": None,
                }
            )  # informational
    if "tokens_sample" in native and "tokens_sample" in ours:
        # Seeded alike, sampling picks the same tokens from the same logits; a near tie in the top-k, or
        # the cumulative probability at the draw moved a little, picks another one and the sequences part.
        # Informational: accuracy is judged on the greedy runs.
        tables.append(_agreement("sampled decode_sample", ours["tokens_sample"], native["tokens_sample"]))
        for name, value in (
            (
                "sampled_token_agreement",
                float((ours["tokens_sample"] == native["tokens_sample"]).float().mean()),
            ),
            ("sampled_first_divergence", _first_divergence(ours["tokens_sample"], native["tokens_sample"])),
        ):
            rows.append({"metric": name, "value": value, "target": float("nan"), "met": None})
    if "loss" in native and "loss" in ours:
        # The loss pass: transformers' cross-entropy loss and per-token log-probabilities, ours vs native.
        rows.append(
            {
                "metric": "loss_rel_err",
                "value": _rel_err(ours["loss"]["loss"], native["loss"]["loss"]),
                "target": float("nan"),
                "met": None,
            }
        )
        rows.append(
            {
                "metric": "token_logp_rel_err",
                "value": _rel_err(ours["loss"]["token_logp"], native["loss"]["token_logp"]),
                "target": float("nan"),
                "met": None,
            }
        )
        for side, res in (("native", native), ("workbench", ours)):
            rows.append(
                {
                    "metric": f"{side}_perplexity",
                    "value": float(res["loss"]["ppl"]),
                    "target": float("nan"),
                    "met": None,
                }
            )
    if reference is not None:
        # Both sides against a float32 run of the same weights: how far bf16 itself is from exact, and
        # whether our kernels add to it. Informational rows (no target).
        for side, res in (("native", native), ("workbench", ours)):
            rows.append(
                {
                    "metric": f"{side}_vs_fp32_logits_rel_err",
                    "value": _rel_err(res["last_logits"], reference["last_logits"]),
                    "target": float("nan"),
                    "met": None,
                }
            )
        if "loss" in reference:
            for side, res in (("native", native), ("workbench", ours)):
                if "loss" in res:
                    rows.append(
                        {
                            "metric": f"{side}_vs_fp32_loss_rel_err",
                            "value": _rel_err(res["loss"]["loss"], reference["loss"]),
                            "target": float("nan"),
                            "met": None,
                        }
                    )
        for side, res in (("native", native), ("workbench", ours)):
            rows.append(
                {
                    "metric": f"{side}_vs_fp32_token_agreement",
                    "value": float((res["argmax"] == reference["argmax"]).float().mean()),
                    "target": float("nan"),
                    "met": None,
                }
            )
            tables.append(_agreement(f"prompt vs fp32 ({side})", res["argmax"], reference["argmax"]))
    return pd.DataFrame(rows), pd.concat(tables, ignore_index=True)


def _side_by_side(native: list[pd.DataFrame], ours: list[pd.DataFrame]) -> pd.DataFrame:
    columns = [
        "phase",
        "aten_op",
        "native_calls",
        "native_ms",
        "workbench_calls",
        "workbench_ms",
        "ratio",
        "time",
    ]
    if not native and not ours:
        return pd.DataFrame(columns=columns)
    n = (
        pd.concat(native, ignore_index=True)
        if native
        else pd.DataFrame(columns=["phase", "aten_op", "calls", "ms"])
    )
    o = (
        pd.concat(ours, ignore_index=True)
        if ours
        else pd.DataFrame(columns=["phase", "aten_op", "calls", "ms"])
    )
    time_kind = (
        n["time"].iloc[0] if "time" in n and len(n) else o["time"].iloc[0] if "time" in o and len(o) else ""
    )
    df = n[["phase", "aten_op", "calls", "ms"]].merge(
        o[["phase", "aten_op", "calls", "ms"]],
        on=["phase", "aten_op"],
        how="outer",
        suffixes=("_native", "_workbench"),
    )
    df = df.rename(
        columns={
            "calls_native": "native_calls",
            "ms_native": "native_ms",
            "calls_workbench": "workbench_calls",
            "ms_workbench": "workbench_ms",
        }
    )
    df[["native_calls", "workbench_calls"]] = df[["native_calls", "workbench_calls"]].fillna(0).astype(int)
    df[["native_ms", "workbench_ms"]] = df[["native_ms", "workbench_ms"]].fillna(0.0)
    # ratio > 1: our side spends more time in this op than native does
    df["ratio"] = df["workbench_ms"] / df["native_ms"].where(df["native_ms"] > 0)
    df["time"] = time_kind
    df["_phase"] = df["phase"].map(
        {p: i for i, p in enumerate(dict.fromkeys(pd.concat([n["phase"], o["phase"]])))}
    )
    df["_order"] = df[["native_ms", "workbench_ms"]].max(axis=1)
    df = df.sort_values(["_phase", "_order"], ascending=[True, False]).drop(columns=["_phase", "_order"])
    return df[columns].reset_index(drop=True)


def resolve_model(
    preset: str | torch.nn.Module = "tiny", checkpoint: str | Path | None = None, seed: int = 0, **overrides
) -> tuple[torch.nn.Module, str]:
    """(model, label): an already built model passes through; else build the preset or the checkpoint."""
    if isinstance(preset, torch.nn.Module):
        return preset, getattr(preset.config, "name_or_path", "") or "model"
    if checkpoint is not None:
        return build_model(checkpoint=checkpoint), str(checkpoint)
    return build_model(preset, seed=seed, **overrides), preset


def run_model(
    preset: str | torch.nn.Module = "tiny",
    backend: str | None = None,
    mode: str = "both",
    prompt_len: int = 32,
    batch: int = 1,
    new_tokens: int = 8,
    cuda_graphs: bool | None = None,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    checkpoint: str | Path | None = None,
    seed: int = 0,
    warmup: int = 1,
    reps: int = 3,
    decode_reps: int = 1,
    profile: bool = True,
    profile_steps: int = 4,
    fuse: bool = True,
    execution: str | None = None,
    fp32_reference: bool | torch.nn.Module | None = None,
    loss: bool = True,
    sample_tokens: int | None = None,
    store: str | Path | None = None,
    progress: bool = False,
    train: bool = False,
    train_steps: int = 20,
    **overrides,
) -> ModelRun | TrainRun:
    """Run a Qwen3 model natively, then with workbench kernels (`use_ops(include, exclude)`), and compare.

    preset: a preset name (random weights from `seed`), or a model built by `build_model` (reused as is).
    mode: "prefill", "decode" or "both". cuda_graphs: None = where the backend can capture graphs,
    True = require them, False = eager only. include/exclude: registry op names, as for `use_ops`.
    execution: how our side runs: "compile" (torch.compile with the workbench backend: our ops in the
    ATen graph, fusion patterns, inductor for the rest) or "eager" (`use_ops`: every ATen call through the
    dispatcher); None = "compile" where the backend compiles kernels, "eager" in the interpreter.
    fuse: the fusion patterns (rms_norm, add_rms_norm, silu_and_mul, rope) of compiled execution.
    decode_reps: eager, sampled and graph decode repetitions, native and workbench in turn (median reported).
    loss: in prefill modes, also the loss pass (labels -> cross_entropy, token log-probs, perplexity).
    sample_tokens: in decode modes, tokens of the top-k sampling run (`SAMPLING`);
    None = new_tokens, 0 = none.
    fp32_reference: compare both sides with a float32 twin of the model too (None: where device memory
    allows; a model from `build.twin` is reused as is).
    store: a ResultStore path that receives `summary()` rows.
    train: instead, `train_steps` AdamW training steps (forward, loss, backward, update) of native and
    workbench copies of the model on the same batches of `batch` x `prompt_len` tokens, alternated step by
    step (`train.train_both`: our side's loss is the fused linear_cross_entropy; compiled execution replays
    CUDA graphs where the backend captures them, unless cuda_graphs is False); returns a
    `train.TrainRun` (per-step loss, grad norm, time, peak step memory).
    """
    if train:
        chosen = backends.active(backend)
        execution = default_execution(chosen) if execution is None else execution
        graphs, why_not = measure.graph_api(chosen)
        if cuda_graphs and (graphs is None or execution != "compile"):
            raise ValueError(
                f"cuda_graphs: requested, but {why_not or 'training replays only compiled graphs'}"
            )
        model, _ = resolve_model(preset, checkpoint, seed, **overrides)
        return train_both(
            model,
            steps=train_steps,
            batch=batch,
            seq=prompt_len,
            seed=seed,
            include=include,
            exclude=exclude,
            execution=execution,
            cudagraphs=execution == "compile" and graphs is not None and cuda_graphs is not False,
        )
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    for name, value, low in (
        ("prompt_len", prompt_len, 1),
        ("batch", batch, 1),
        ("new_tokens", new_tokens, 2),
    ):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")
    sample_tokens = new_tokens if sample_tokens is None else sample_tokens
    if (
        isinstance(sample_tokens, bool)
        or not isinstance(sample_tokens, int)
        or sample_tokens < 0
        or sample_tokens == 1
    ):
        raise ValueError(f"sample_tokens: expected None, 0 or an int >= 2, got {sample_tokens!r}")
    chosen = backends.active(backend)
    check_selection(include, exclude)  # unknown op names fail before any work
    execution = default_execution(chosen) if execution is None else execution
    if execution not in EXECUTIONS:
        raise ValueError(f"execution: expected one of {EXECUTIONS}, got {execution!r}")
    graphs, why_not = measure.graph_api(chosen)
    if cuda_graphs and graphs is None:
        raise ValueError(f"cuda_graphs: requested, but {why_not}")
    if cuda_graphs is False:
        graphs = None
    model, label = resolve_model(preset, checkpoint, seed, **overrides)
    ids = _random_prompt(model.config.vocab_size, batch, prompt_len, seed, model.device)
    if progress:
        print(
            f"[run_model] {label}: mode {mode}, batch {batch}, prompt {prompt_len}, native and workbench",
            flush=True,
        )
    sides = _Sides(model, include, exclude, fuse, execution)
    results, graphs_note = _measure(
        model,
        ids,
        sides,
        mode,
        new_tokens,
        graphs,
        chosen,
        warmup,
        reps,
        decode_reps,
        profile,
        profile_steps,
        loss and prompt_len > 1,
        sample_tokens,
        seed,
    )
    reference, reference_note = _reference_logits(model, ids, fp32_reference)
    throughput = pd.DataFrame([dict(r, side=s) for s in SIDES for r in results[s]["rows"]])
    throughput = throughput.reindex(
        columns=["phase", "side", "batch", "tokens", "ms", "tokens_per_s", *SPREAD, "note"]
    )
    accuracy, agreement = _accuracy(results["native"], results["workbench"], reference)
    from workbench.store.meta import run_metadata

    graphs_used = graphs is not None and not graphs_note
    config = {
        "model": label,
        "mode": mode,
        "batch": batch,
        "prompt_len": prompt_len,
        "new_tokens": new_tokens,
        "graphs": graphs_used,
        "graphs_note": graphs_note or ("" if graphs is not None else why_not),
        "fp32_reference": reference is not None,
        "fp32_reference_note": reference_note,
        "loss_pass": loss and prompt_len > 1 and mode != "decode",
        "sample_tokens": sample_tokens if mode != "prefill" else 0,
        **{f"sample_{k}": v for k, v in SAMPLING.items()},
        "include": list(include) if include is not None else "all",
        "exclude": list(exclude) if exclude is not None else "",
        "fuse": fuse,
        "execution": execution,
        "seed": seed,
        "dtype": str(model.dtype).replace("torch.", ""),
        **run_metadata(),
    }
    run = ModelRun(
        config=config,
        throughput=throughput,
        accuracy=accuracy,
        agreement=agreement,
        coverage=sides.coverage(),
        profile=_side_by_side(results["native"]["profile"], results["workbench"]["profile"]),
        tokens={
            (s, k): results[s][k]
            for s in SIDES
            for k in ("tokens_eager", "tokens_graph", "tokens_sample")
            if k in results[s]
        },
    )
    if store is not None:
        save(run, store)
    return run


def save(run: ModelRun, store) -> str:
    """Append the run's summary rows to a ResultStore (a path or a ResultStore) as kind "model"."""
    from workbench.store import ResultStore

    store = store if isinstance(store, ResultStore) else ResultStore(store)
    return store.append(run.summary(), kind="model", meta=run.config)


def write_tables(run: ModelRun, out_dir: str | Path, prefix: str = "") -> list[Path]:
    """Every table of `run` as CSV (with device and commit columns; config as JSON) under `out_dir`."""
    import json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = {
        "summary": run.summary(),
        "ratios": run.ratios(),
        "throughput": run.throughput,
        "accuracy": run.accuracy,
        "agreement": run.agreement,
        "coverage": run.coverage,
        "profile": run.profile,
    }
    stamp = {k: run.config.get(k) for k in ("device", "commit")}  # every table says where and from what
    paths = []
    for name, df in tables.items():
        paths.append(out / f"{prefix}{name}.csv")
        df.assign(**{k: v for k, v in stamp.items() if k not in df}).to_csv(paths[-1], index=False)
    paths.append(out / f"{prefix}config.json")
    paths[-1].write_text(json.dumps(run.config, indent=2, default=str))
    return paths
