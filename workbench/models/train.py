"""Training steps of a Qwen3 model: native vs workbench on the same initial weights and the same data.

One step is forward with labels (transformers' causal-LM loss: shift, cross-entropy), backward and an AdamW
update. Both sides start from copies of one model and see the same batches; the workbench side runs
under `use_ops` (our forward and backward kernels where an op has them, native elsewhere). Steps alternate
between the sides, so that a drifting machine load touches both alike; each side's step time, loss and
gradient norm are recorded per step, and peak device memory per side where the device reports it (both
copies, with their gradients and optimizer states, stay resident: a side's peak includes the other's).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import pandas as pd
import torch

from workbench import backends

SIDES = ("native", "workbench")


@dataclass
class TrainRun:
    """Per-step rows (side, step, loss, grad_norm, seconds, tokens) and per-side peak memory."""

    steps: pd.DataFrame
    peak_mem: dict[str, int | None]
    tokens_per_step: int
    coverage: pd.DataFrame

    def summary(self) -> dict:
        """tokens/s per side (warm-up step left out), their ratio, peak memory ratio and the largest
        relative loss and grad-norm differences over the steps."""
        s = self.steps
        warm = s[s.step > 0] if s.step.max() > 0 else s
        tps = {side: float(self.tokens_per_step * len(g) / g.seconds.sum())
               for side, g in warm.groupby("side")}
        native, ours = (s[s.side == side].set_index("step") for side in SIDES)
        loss_rel = ((ours.loss - native.loss).abs() / native.loss.abs()).max()
        gn_rel = ((ours.grad_norm - native.grad_norm).abs() / native.grad_norm.abs()).max()
        mem = self.peak_mem
        return {"tokens_per_s_native": tps["native"], "tokens_per_s_workbench": tps["workbench"],
                "step_vs_native": tps["workbench"] / tps["native"],
                "peak_mem_native": mem["native"], "peak_mem_workbench": mem["workbench"],
                "peak_mem_vs_native": (mem["workbench"] / mem["native"]) if mem["native"] else None,
                "loss_rel_diff_max": float(loss_rel), "grad_norm_rel_diff_max": float(gn_rel),
                "steps": int(s.step.max()) + 1}


def batches(vocab: int, batch: int, seq: int, steps: int, seed: int, device) -> list[torch.Tensor]:
    """Fixed random token batches (the labels are the inputs: causal-LM loss)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return [torch.randint(0, vocab, (batch, seq), generator=gen).to(device) for _ in range(steps)]


def _peak(device: torch.device) -> int | None:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def step(model, optimizer, ids: torch.Tensor) -> tuple[float, float]:
    """One training step; (loss, global grad norm before the update)."""
    optimizer.zero_grad(set_to_none=True)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
    optimizer.step()
    return float(loss.detach()), float(norm)


def train_both(model: torch.nn.Module, steps: int = 20, batch: int = 2, seq: int = 16, lr: float = 1e-3,
               seed: int = 0, include=None, exclude=None) -> TrainRun:
    """`steps` AdamW steps of native and workbench copies of `model`, alternated step by step."""
    import workbench

    backend = backends.active()
    device = next(model.parameters()).device
    models = {side: copy.deepcopy(model).train() for side in SIDES}
    optimizers = {side: torch.optim.AdamW(m.parameters(), lr=lr, foreach=False) for side, m in models.items()}
    data = batches(model.config.vocab_size, batch, seq, steps, seed, device)
    rows, peak = [], {side: 0 for side in SIDES}
    coverage = workbench.dispatch.Coverage()
    for i, ids in enumerate(data):
        for side in SIDES:
            _reset_peak(device)
            backend.synchronize()
            start = time.perf_counter()
            if side == "native":
                loss, norm = step(models[side], optimizers[side], ids)
            else:
                with workbench.use_ops(include, exclude) as cov:
                    loss, norm = step(models[side], optimizers[side], ids)
                coverage.merge(cov)
            backend.synchronize()
            rows.append({"side": side, "step": i, "loss": loss, "grad_norm": norm,
                         "seconds": time.perf_counter() - start})
            mem = _peak(device)
            peak[side] = None if mem is None else max(peak[side] or 0, mem)
    return TrainRun(pd.DataFrame(rows), peak, batch * seq, coverage.table())
