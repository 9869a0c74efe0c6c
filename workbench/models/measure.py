"""Measurements on a transformers causal LM, each the same for the native side and the workbench side.

- `prompt_logits` / `time_prefill`: one forward over a prompt (no cache), logits of the last position.
- `generate_eager`: greedy decode as users run it (`model.generate`, dynamic KV cache); a stopping
  criterion stamps the clock after every new token, so decode time excludes the prefill.
- `generate_sampled`: the same with top-k / temperature sampling (`do_sample=True`), the device's random
  generator seeded before each run, so both sides draw the same uniform numbers.
- `prompt_loss`: the language-modelling loss of the prompt as transformers computes it (`labels` ->
  cross_entropy) and, as evaluation harnesses do, per-token log-probabilities (log_softmax + gather)
  and the perplexity from them.
- `StaticDecoder`: greedy decode on a static KV cache, one step per call or, where the backend has a
  graph API (CUDA graphs, MLU graphs), the whole step (forward, argmax, cache and position updates)
  captured once and replayed — host overhead drops out and kernel speed decides.
- `profile_ops`: per-ATen-op time from torch.profiler (device time on a GPU, CPU time in the interpreter).
- `profile_kernels`: device time per kernel, for compiled graphs, whose kernels have no ATen op above them.

All of it speaks to transformers through public arguments (`input_ids`, `position_ids`, `attention_mask`,
the cache argument, `logits_to_keep`) and adapts to the two cache-argument spellings (`cache` in
transformers >= 5.x, `past_key_values` before; `cache_position` where the forward still takes it).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch

from workbench.backends import Backend


def _forward_params(model) -> set[str]:
    return set(inspect.signature(model.forward).parameters)


def cache_kwarg(model) -> str:
    """Name of the KV-cache argument of `model.forward` in this transformers version."""
    return "cache" if "cache" in _forward_params(model) else "past_key_values"


def prompt_logits(model, ids: torch.Tensor, keep: int = 0) -> torch.Tensor:
    """Logits [batch, positions, vocab] of one cache-free forward; `keep` > 0 keeps only the last `keep`."""
    return model(input_ids=ids, use_cache=False, logits_to_keep=keep).logits


def timed_ms(fn: Callable[[], object], backend: Backend) -> float:
    """Device time of one run of `fn` (backend events; wall clock on cpu)."""
    timer = backend.timer()
    timer.start()
    fn()
    timer.stop()
    return timer.elapsed_ms()


def median_ms(fn: Callable[[], object], backend: Backend, warmup: int, reps: int) -> float:
    """Median device time of `fn` over `reps` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    return float(pd.Series([timed_ms(fn, backend) for _ in range(max(1, reps))]).median())


def time_prefill(model, ids: torch.Tensor, backend: Backend, warmup: int = 1, reps: int = 3) -> float:
    """Median ms of a prefill forward that computes only the last position's logits, as generate does."""
    return median_ms(lambda: prompt_logits(model, ids, keep=1), backend, warmup, reps)


class _StepClock:
    """A generate stopping criterion that never stops, only stamps the time after each new token."""

    def __init__(self, backend: Backend, batch: int, device: torch.device):
        self.backend = backend
        self.stamps: list[float] = []
        self._running = torch.zeros(batch, dtype=torch.bool, device=device)  # made once: no op per step

    def __call__(self, input_ids, scores, **kwargs) -> torch.Tensor:
        self.backend.synchronize()
        self.stamps.append(time.perf_counter())
        return self._running


def _greedy_config(model, new_tokens: int):
    from transformers import GenerationConfig

    # Random weights may produce any id, so no id ends a sequence: every run makes exactly `new_tokens`.
    return GenerationConfig(
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        num_beams=1,
        use_cache=True,
        eos_token_id=None,
        pad_token_id=0,
        temperature=None,
        top_p=None,
        top_k=None,
    )


def generate_eager(model, ids: torch.Tensor, new_tokens: int, backend: Backend) -> tuple[torch.Tensor, float]:
    """Greedy `model.generate`: (new tokens [batch, new_tokens], ms of the new_tokens - 1 decode steps)."""
    from transformers import StoppingCriteriaList

    if new_tokens < 2:
        raise ValueError(
            f"new_tokens: expected at least 2 (one prefill token + decode steps), got {new_tokens}"
        )
    clock = _StepClock(backend, ids.shape[0], ids.device)
    out = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        generation_config=_greedy_config(model, new_tokens),
        stopping_criteria=StoppingCriteriaList([clock]),
    )
    if len(clock.stamps) != new_tokens:
        raise RuntimeError(
            f"generate called the step clock {len(clock.stamps)} times for {new_tokens} tokens"
        )
    return out[:, ids.shape[1] :], (clock.stamps[-1] - clock.stamps[0]) * 1e3


def _sampling_config(new_tokens: int, top_k: int, temperature: float):
    from transformers import GenerationConfig

    return GenerationConfig(
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=True,
        top_k=top_k,
        temperature=temperature,
        top_p=None,
        num_beams=1,
        use_cache=True,
        eos_token_id=None,
        pad_token_id=0,
    )


def generate_sampled(
    model,
    ids: torch.Tensor,
    new_tokens: int,
    backend: Backend,
    seed: int = 0,
    top_k: int = 50,
    temperature: float = 0.8,
) -> tuple[torch.Tensor, float]:
    """Top-k / temperature sampling with `model.generate`: (new tokens [batch, new_tokens], ms of the
    new_tokens - 1 decode steps). torch's generators are seeded with `seed` first: the same logits give
    the same tokens on both sides."""
    from transformers import StoppingCriteriaList

    if new_tokens < 2:
        raise ValueError(
            f"new_tokens: expected at least 2 (one prefill token + decode steps), got {new_tokens}"
        )
    clock = _StepClock(backend, ids.shape[0], ids.device)
    torch.manual_seed(seed)  # every device's default generator, which multinomial draws from
    out = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        generation_config=_sampling_config(new_tokens, top_k, temperature),
        stopping_criteria=StoppingCriteriaList([clock]),
    )
    if len(clock.stamps) != new_tokens:
        raise RuntimeError(
            f"generate called the step clock {len(clock.stamps)} times for {new_tokens} tokens"
        )
    return out[:, ids.shape[1] :], (clock.stamps[-1] - clock.stamps[0]) * 1e3


def prompt_loss(model, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Loss pass over the prompt: {"loss": transformers' mean next-token cross-entropy (labels = ids),
    "token_logp": log-probability of each next token [batch, positions - 1] (float32 log_softmax of the
    logits, gathered at the tokens), "ppl": exp of their negative mean}."""
    out = model(input_ids=ids, labels=ids, use_cache=False)
    logp = torch.log_softmax(out.logits[:, :-1].float(), dim=-1)
    token_logp = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
    return {"loss": out.loss, "token_logp": token_logp, "ppl": torch.exp(-token_logp.mean())}


@dataclass(frozen=True)
class GraphApi:
    """A backend's graph capture API, found on its torch device module (torch.cuda, torch.mlu)."""

    graph_cls: type
    capture: Callable  # context manager: capture(graph)
    module: object  # the torch device module (Stream, stream, current_stream)


def graph_api(backend: Backend) -> tuple[GraphApi | None, str]:
    """(api, "") where the backend can capture and replay graphs, else (None, why not)."""
    module = getattr(torch, backend.device_type, None)
    graph_cls = next((getattr(module, n) for n in ("CUDAGraph", "MLUGraph") if hasattr(module, n)), None)
    if backend.interpreted or module is None or graph_cls is None or not hasattr(module, "graph"):
        return None, f"backend {backend.name!r} has no graph capture API"
    return GraphApi(graph_cls, module.graph, module), ""


def _static_cache(model, batch: int, max_len: int):
    from transformers import StaticCache

    params = set(inspect.signature(StaticCache.__init__).parameters)
    offered = {
        "config": model.config,
        "max_cache_len": max_len,
        "max_batch_size": batch,
        "device": model.device,
        "dtype": model.dtype,
    }
    return StaticCache(**{k: v for k, v in offered.items() if k in params})


class StaticDecoder:
    """Greedy decoding of `new_tokens` tokens on a static KV cache; steps run eagerly or as one graph.

    Every step is a fixed-shape function of device buffers (next token, position, step index), so the
    same code runs eagerly (any backend) and, captured once, replays on a graph-capable backend.
    """

    def __init__(self, model, batch: int, prompt_len: int, new_tokens: int, backend: Backend):
        if new_tokens < 2:
            raise ValueError(f"new_tokens: expected at least 2, got {new_tokens}")
        self.model, self.backend = model, backend
        self.batch, self.prompt_len, self.new_tokens = batch, prompt_len, new_tokens
        self.max_len = prompt_len + new_tokens
        device = model.device
        self.cache = _static_cache(model, batch, self.max_len)
        self._cache_kw = cache_kwarg(model)
        self._takes_cache_position = "cache_position" in _forward_params(model)
        self._tok = torch.zeros(batch, 1, dtype=torch.long, device=device)
        self._pos = torch.zeros(batch, 1, dtype=torch.long, device=device)
        self._cpos = torch.zeros(1, dtype=torch.long, device=device)
        self._step_idx = torch.zeros(1, dtype=torch.long, device=device)
        self._keys = torch.arange(self.max_len, device=device)
        self.tokens = torch.zeros(batch, new_tokens, dtype=torch.long, device=device)
        self._graph = None

    def _extra(self, cache_position: torch.Tensor) -> dict:
        extra = {self._cache_kw: self.cache, "use_cache": True, "logits_to_keep": 1}
        if self._takes_cache_position:
            extra["cache_position"] = cache_position
        return extra

    def prefill(self, ids: torch.Tensor) -> None:
        """Reset the cache, run the prompt, and set the buffers to produce token 1 next."""
        if tuple(ids.shape) != (self.batch, self.prompt_len):
            raise ValueError(f"ids: expected shape {(self.batch, self.prompt_len)}, got {tuple(ids.shape)}")
        self.cache.reset()
        positions = torch.arange(self.prompt_len, device=ids.device)
        logits = self.model(input_ids=ids, **self._extra(positions)).logits
        first = logits[:, -1].argmax(-1)
        self._tok.copy_(first[:, None])
        self._pos.fill_(self.prompt_len)
        self._cpos.fill_(self.prompt_len)
        self.tokens.zero_()
        self.tokens[:, 0] = first
        self._step_idx.fill_(1)

    def step(self) -> None:
        """One decode step, in place on the buffers; the same ops eagerly and under graph capture."""
        # Explicit 4-D boolean mask (True = attend): transformers passes a 4-D mask through unchanged, so no
        # mask-building code with host-side checks runs inside the step.
        mask = (self._keys[None, :] <= self._pos)[:, None, None, :]
        logits = self.model(
            input_ids=self._tok, position_ids=self._pos, attention_mask=mask, **self._extra(self._cpos)
        ).logits
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        self._tok.copy_(nxt)
        self.tokens.index_copy_(1, self._step_idx, nxt)
        self._pos.add_(1)
        self._cpos.add_(1)
        self._step_idx.add_(1)

    def capture(self, ids: torch.Tensor, api: GraphApi, warmup_steps: int = 2) -> None:
        """Warm up (compiles and autotunes every kernel) on a side stream, then capture one step."""
        mod = api.module
        self.prefill(ids)
        stream = mod.Stream()
        stream.wait_stream(mod.current_stream())
        with mod.stream(stream):
            for _ in range(warmup_steps):
                self.step()
        mod.current_stream().wait_stream(stream)
        self.prefill(ids)  # the warm-up wrote into the cache and buffers: start over
        graph = api.graph_cls()
        failure = None
        try:
            with api.capture(graph):
                try:
                    self.step()
                except Exception as e:
                    failure = e
                    raise
        except Exception as e:
            # Ending an invalidated capture raises its own error: report the step's, which says why.
            if failure is not None and e is not failure:
                raise failure from e
            raise
        self._graph = graph

    def run(self, ids: torch.Tensor) -> tuple[torch.Tensor, float]:
        """(new tokens [batch, new_tokens], ms of the new_tokens - 1 decode steps)."""
        self.prefill(ids)
        timer = self.backend.timer()
        timer.start()
        for _ in range(self.new_tokens - 1):
            if self._graph is not None:
                self._graph.replay()
            else:
                self.step()
        timer.stop()
        return self.tokens.clone(), timer.elapsed_ms()


def _profiler_activity(backend: Backend):
    from torch.profiler import ProfilerActivity

    if backend.device_type == "cpu":
        return None
    return getattr(ProfilerActivity, backend.device_type.upper(), None) or getattr(
        ProfilerActivity, backend.dispatch_key, None
    )


def _self_device_ms(evt) -> float:
    self_device = getattr(evt, "self_device_time_total", None)
    return (evt.self_cuda_time_total if self_device is None else self_device) / 1e3


def profile_ops(fn: Callable[[], object], backend: Backend) -> pd.DataFrame:
    """Per-ATen-op calls and self time (ms) while `fn` runs: device time where the profiler sees the
    device, else CPU time (the interpreter runs kernels on the host). Fused workbench calls appear as
    `workbench::<op>`; device time under no op is one `(other)` row; `(total)` is all of it."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    activity = _profiler_activity(backend)
    activities = [ProfilerActivity.CPU] + ([activity] if activity is not None else [])
    with profile(activities=activities) as prof:
        fn()
        backend.synchronize()
    ops = ("aten::", "workbench::")
    rows, device_total = [], 0.0
    for evt in prof.key_averages():
        if activity is None:
            if evt.key.startswith(ops):
                rows.append({"aten_op": evt.key, "calls": evt.count, "ms": evt.self_cpu_time_total / 1e3})
            continue
        if evt.device_type == DeviceType.CPU:
            if evt.key.startswith(ops):  # profiler bookkeeping (e.g. "Command Buffer Full") goes to (other)
                rows.append({"aten_op": evt.key, "calls": evt.count, "ms": _self_device_ms(evt)})
        else:  # a kernel or memcpy on the device
            device_total += _self_device_ms(evt)
    df = pd.DataFrame(rows, columns=["aten_op", "calls", "ms"])
    total = device_total if activity is not None else df["ms"].sum()
    other = total - df["ms"].sum()
    extra = [{"aten_op": "(total)", "calls": int(df["calls"].sum()), "ms": total}]
    if other > 1e-3:
        extra.append({"aten_op": "(other)", "calls": 0, "ms": other})
    df = pd.concat([df, pd.DataFrame(extra)], ignore_index=True)
    df["time"] = "cpu" if activity is None else "device"
    return df.sort_values("ms", ascending=False, ignore_index=True)


def profile_kernels(fn: Callable[[], object], backend: Backend, top: int = 25) -> pd.DataFrame:
    """Launches and device time (ms) per kernel while `fn` runs: the `top` largest by time, a `(rest)` row
    for the others and `(total)`. Where a compiled graph's time goes: inductor's kernels and CUDA-graph
    replays have no ATen op above them for `profile_ops` to name. Empty where the profiler sees no device
    (the interpreter runs kernels on the host)."""
    from torch.profiler import profile

    activity = _profiler_activity(backend)
    if activity is None:
        return pd.DataFrame(columns=["kernel", "launches", "ms"])
    with profile(activities=[activity]) as prof:
        fn()
        backend.synchronize()
    return kernel_table(prof.key_averages(), top)


def kernel_table(events, top: int) -> pd.DataFrame:
    """`profile_kernels`' table from the profiler's averaged events (those on the device count)."""
    from torch.autograd import DeviceType

    rows = [
        {"kernel": e.key, "launches": e.count, "ms": _self_device_ms(e)}
        for e in events
        if e.device_type != DeviceType.CPU
    ]
    df = pd.DataFrame(rows, columns=["kernel", "launches", "ms"]).sort_values("ms", ascending=False)
    shown, rest = df.iloc[:top], df.iloc[top:]
    extra = [{"kernel": "(total)", "launches": int(df.launches.sum()), "ms": float(df.ms.sum())}]
    if len(rest):
        extra.append({"kernel": "(rest)", "launches": int(rest.launches.sum()), "ms": float(rest.ms.sum())})
    return pd.concat([pd.DataFrame(extra), shown], ignore_index=True)
