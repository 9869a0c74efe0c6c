"""Training steps of a Qwen3 model: native vs workbench on the same initial weights and the same data.

One step is forward (no KV cache), loss, backward, the global gradient norm and an AdamW update. Both
sides start from copies of one model and see the same batches (labels = inputs: the causal-LM loss,
shifted by one token).

- native: transformers' own forward with labels (LM head, logits upcast to fp32, cross-entropy), torch's
  kernels throughout.
- workbench: the model's body runs our ops through `side.workbench_side` (`execution="eager"`:
  `use_ops`, our forward and backward kernels where an op has them, native elsewhere; `"compile"`: the
  body compiled with the workbench backend), and, with `fused_loss`, the LM head and the loss are our
  fused `linear_cross_entropy` on the final hidden states: the same loss, without the [tokens, vocab]
  logits in memory (their fp32 copy, log-softmax and gradients are the largest tensors of a step).

- native_compiled (optional, `native_compiled=True`): transformers' forward with labels under
  `torch.compile` (inductor default): what a user would run instead of our kernels once they compile.

With `cudagraphs` (compiled execution) our side's graphs replay as CUDA graphs, and the native compiled
side compiles with mode="reduce-overhead", the same: a step's launches then cost no host time. Torch's
CUDA graph trees run a graph's first call as is and record it on the second, so the first two steps are
warm-up there (one without graphs). A replay allocates nothing (its memory stays in the graph pool), so
a replaying side's peak step memory is that of its recording step, which allocates as a step without
graphs does.

The optimizer is torch's AdamW (its default implementation) on every side. Steps alternate between the
sides, and so does the side that goes first, so that a drifting machine load touches all alike; each
side's step time, loss and gradient norm are recorded per step. Peak memory (where the device reports
it) is a step's peak above what was allocated when it began (both models, their optimizer states and
the other side's gradients stay resident and are left out): the memory the step itself needs.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import pandas as pd
import torch

from workbench import backends

SIDES = ("native", "workbench")
NATIVE_COMPILED = "native_compiled"  # the optional third side
IGNORE_INDEX = -100  # transformers' label padding


@dataclass
class TrainRun:
    """Per-step rows (side, step, loss, grad_norm, seconds, peak_mem), the coverage of our side, and (when
    asked for) the per-op profile of one more step of each side (`measure.profile_ops` rows with `side`)."""

    steps: pd.DataFrame
    tokens_per_step: int
    coverage: pd.DataFrame
    profile: pd.DataFrame | None = None
    warmup_steps: int = 1  # steps that compile, tune or record graphs: left out of tokens/s

    def summary(self) -> dict:
        """tokens/s per side over the steps after the warm-up ones, the largest step peak memory per side
        from step 1 on (step 0 compiles and tunes kernels, and the optimizer allocates its state there),
        their ratios, and the largest relative loss and grad-norm differences over all steps."""
        s = self.steps
        timed = s[s.step >= self.warmup_steps] if s.step.max() >= self.warmup_steps else s
        warm = s[s.step > 0] if s.step.max() > 0 else s
        tps = {
            side: float(self.tokens_per_step * len(g) / g.seconds.sum()) for side, g in timed.groupby("side")
        }
        native, ours = (s[s.side == side].set_index("step") for side in SIDES)
        loss_rel = ((ours.loss - native.loss).abs() / native.loss.abs()).max()
        gn_rel = ((ours.grad_norm - native.grad_norm).abs() / native.grad_norm.abs()).max()
        mem = {
            side: None if g.peak_mem.isna().all() else int(g.peak_mem.max())
            for side, g in warm.groupby("side")
        }
        out = {
            "tokens_per_s_native": tps["native"],
            "tokens_per_s_workbench": tps["workbench"],
            "step_vs_native": tps["workbench"] / tps["native"],
            "peak_mem_native": mem["native"],
            "peak_mem_workbench": mem["workbench"],
            "peak_mem_vs_native": (
                mem["workbench"] / mem["native"] if mem["native"] and mem["workbench"] is not None else None
            ),
            "loss_rel_diff_max": float(loss_rel),
            "grad_norm_rel_diff_max": float(gn_rel),
            "steps": int(s.step.max()) + 1,
        }
        if NATIVE_COMPILED in tps:
            out["tokens_per_s_native_compiled"] = tps[NATIVE_COMPILED]
            out["step_vs_native_compiled"] = tps["workbench"] / tps[NATIVE_COMPILED]
            out["peak_mem_native_compiled"] = mem[NATIVE_COMPILED]
        return out


def batches(vocab: int, batch: int, seq: int, steps: int, seed: int, device) -> list[torch.Tensor]:
    """Fixed random token batches (the labels are the inputs: causal-LM loss)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return [torch.randint(0, vocab, (batch, seq), generator=gen).to(device) for _ in range(steps)]


def _allocated(device: torch.device) -> int | None:
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else None


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> int | None:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def fused_causal_lm_loss(model, ids: torch.Tensor) -> torch.Tensor:
    """transformers' causal-LM loss of `ids` (labels = ids, shifted by one, the last position ignored, mean
    over the rest) from the model's body and our fused `linear_cross_entropy` for the LM head and loss."""
    from workbench.ops import linear_cross_entropy

    hidden = model.model(input_ids=ids, use_cache=False).last_hidden_state
    targets = torch.nn.functional.pad(ids[:, 1:], (0, 1), value=IGNORE_INDEX)
    return linear_cross_entropy(
        hidden.reshape(-1, hidden.shape[-1]),
        model.lm_head.weight,
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
    )


def _grad_norm(model) -> float:
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])))


def train_both(
    model: torch.nn.Module,
    steps: int = 20,
    batch: int = 2,
    seq: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    include=None,
    exclude=None,
    execution: str = "eager",
    fused_loss: bool = True,
    progress: bool = False,
    profile: bool = False,
    native_compiled: bool = False,
    fastest: bool = False,
    cudagraphs: bool = False,
) -> TrainRun:
    """`steps` AdamW steps of native and workbench copies of `model`, alternated step by step (see the
    module docstring); `include` / `exclude` select our ops as for `use_ops`; `profile`: one more step
    of each side after them, its per-op times in `TrainRun.profile` (`measure.profile_ops`);
    `native_compiled`: a third copy, native under torch.compile; `fastest` and `cudagraphs` (compiled
    execution): our kernel only on nodes where it times faster than the ATen op, graphs replayed as CUDA
    graphs (`side.workbench_side`; see the module docstring)."""
    from workbench.dispatch import Coverage

    from .measure import profile_ops
    from .side import workbench_side

    backend = backends.active()
    device = next(model.parameters()).device
    sides = SIDES + ((NATIVE_COMPILED,) if native_compiled else ())
    models = {side: copy.deepcopy(model).train() for side in sides}
    compiled_native = None
    if native_compiled:
        m = models[NATIVE_COMPILED]
        compiled_native = torch.compile(m, mode="reduce-overhead") if cudagraphs else torch.compile(m)
    replaying = {"workbench", NATIVE_COMPILED} if cudagraphs else set()  # sides that replay CUDA graphs
    optimizers = {side: torch.optim.AdamW(m.parameters(), lr=lr) for side, m in models.items()}
    data = batches(model.config.vocab_size, batch, seq, steps, seed, device)
    rows, merged, compiled = [], Coverage(), None
    from tqdm.auto import tqdm

    def step(side: str, ids: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Forward, loss, backward and AdamW update of one side: (its loss, detached; its gradient norm)."""
        nonlocal compiled
        m = models[side]
        optimizers[side].zero_grad(set_to_none=True)
        if side in replaying:  # a new step: the graphs' outputs of the last one may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        if side != "workbench":
            forward = compiled_native if side == NATIVE_COMPILED else m
            loss = forward(input_ids=ids, labels=ids, use_cache=False).loss
            loss.backward()
        else:
            with workbench_side(
                m.model, include, exclude, execution=execution, fastest=fastest, cudagraphs=cudagraphs
            ) as cov:
                loss = (
                    fused_causal_lm_loss(m, ids)
                    if fused_loss
                    else m(input_ids=ids, labels=ids, use_cache=False).loss
                )
                loss.backward()
            if isinstance(cov, Coverage):
                merged.merge(cov)
            else:
                compiled = cov  # the compile backend's coverage: one table for every graph
        norm = _grad_norm(m)
        optimizers[side].step()
        return loss.detach(), norm

    # the first step compiles and tunes every kernel of both passes: minutes on a GPU, hence the bar
    for i, ids in enumerate(tqdm(data, desc="train steps", unit="step", disable=not progress)):
        for side in sides[i % len(sides) :] + sides[: i % len(sides)]:  # each side goes first in turn
            backend.synchronize()
            base = _allocated(device)
            _reset_peak(device)
            start = time.perf_counter()
            loss, norm = step(side, ids)
            backend.synchronize()
            seconds = time.perf_counter() - start
            peak = _peak(device)
            rows.append(
                {
                    "side": side,
                    "step": i,
                    "loss": float(loss),
                    "grad_norm": norm,
                    "seconds": seconds,
                    "peak_mem": None if peak is None else peak - base,
                }
            )
    coverage = compiled.table() if compiled is not None else merged.table()  # the timed steps' calls
    profiles = None
    if profile:  # one more step of each side on the last batch, its ops timed by the profiler
        profiles = pd.concat(
            [
                profile_ops(lambda side=side: step(side, data[-1]), backend).assign(side=side)
                for side in sides
            ],
            ignore_index=True,
        )
    return TrainRun(pd.DataFrame(rows), batch * seq, coverage, profiles, warmup_steps=2 if cudagraphs else 1)
