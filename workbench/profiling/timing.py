"""Kernel time and host time of callables, on the backend's own clock, and alternated rounds for ratios.

Kernel time: each callable is warmed up first (compile, autotune, allocate, caches), then timed in rounds:
one round runs every callable once, each call preceded by an L2 flush (a write over a buffer larger than
any last-level cache) and timed with the backend's timer (CUDA events; `hardware_time` on MLU; wall
clock on cpu). The callable that goes first moves by one every round, so neither side of a comparison
always runs after the flush of the same neighbour, and drift (a clock that ramps, a busy host) hits
every callable alike. Rounds are queued in chunks behind a device-side hold (`Backend.hold`), so the
device never waits for the host between calls: host launch overhead stays out of kernel time. A chunk
whose queueing outlasted its hold (a slow or synchronising call) is queued again behind a longer one, up
to HOLD_TRIES times; chunks that still outran it are counted (`Rounds.host_gaps`), since their kernel
times may include host time. Device
clocks are not touched (not locked, not boosted): a measurement reports what the device gives, and
its spread says how steady that was.

A ratio (native ms / our ms) is taken per round, so both sides of a round share the same conditions;
it is reported as the median with its 20th and 80th percentiles over the rounds, and called unstable
when p80 - p20 exceeds UNSTABLE_SPREAD of the median (or when fewer than MIN_SPREAD_ROUNDS rounds ran,
which measure no spread). A win counts only beyond that spread (`beyond_spread`).
Host time: wall clock per call over many calls without synchronizing: the dispatch overhead that
decides decode-sized ops.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from workbench import backends
from workbench.backends import Backend
from workbench.ops._scratch import outside_graph_pools

FLUSH_BYTES = 256 * 1024 * 1024
CHUNK = 64  # timed calls queued behind one device hold
HOLD_FACTOR = 1.5  # a hold lasts this many times the chunk's estimated queueing time (+ HOLD_MARGIN_US)
HOLD_MARGIN_US = 50.0
HOLD_TRIES = 3  # queueings of a chunk whose hold ran out, each behind a 4x longer hold
MAX_EVENTS_IN_FLIGHT = 8192  # torch_mlu fails beyond this many outstanding event pairs (docs/mlu.md)
UNSTABLE_SPREAD = 0.05  # p80 - p20 of a ratio above this fraction of its median: unstable
MIN_SPREAD_ROUNDS = 3  # fewer rounds measure no spread: p20 and p80 are NaN and the ratio counts as unstable


@dataclass(frozen=True)
class KernelTime:
    ms: float  # median
    p20: float
    p80: float
    reps: int


@dataclass(frozen=True)
class Ratio:
    """A per-round ratio (reference ms / this ms: > 1 is faster) over the rounds."""

    median: float
    p20: float
    p80: float

    @property
    def unstable(self) -> bool:
        """Spread above UNSTABLE_SPREAD of the median, or not measured (NaN)."""
        return not self.p80 - self.p20 <= UNSTABLE_SPREAD * self.median

    @property
    def beyond_spread(self) -> bool:
        """Faster than the reference by more than the measured spread."""
        return beyond_spread(self.median, self.p20, self.p80)


def beyond_spread(median: float, p20: float, p80: float) -> bool:
    """A speedup `median` (p20, p80 over rounds) whose advantage exceeds its spread:
    median - 1 > p80 - p20."""
    return median - 1.0 > p80 - p20


@dataclass(frozen=True)
class Rounds:
    """ms per round of each callable: times[i][r] is callable i in round r. `host_gaps`: chunks of timed
    calls whose queueing outlasted the device hold every time (their times may include host time)."""

    times: list[list[float]]
    host_gaps: int = 0

    def kernel_time(self, i: int) -> KernelTime:
        t = self.times[i]
        return KernelTime(ms=_quantile(t, 0.5), p20=_quantile(t, 0.2), p80=_quantile(t, 0.8), reps=len(t))

    def ratio(self, i: int, reference: int = 0) -> Ratio:
        """reference ms / callable i's ms, round by round."""
        per_round = [a / b for a, b in zip(self.times[reference], self.times[i]) if b > 0]
        if len(per_round) < MIN_SPREAD_ROUNDS:
            median = _quantile(per_round, 0.5) if per_round else float("nan")
            return Ratio(median, float("nan"), float("nan"))
        return Ratio(_quantile(per_round, 0.5), _quantile(per_round, 0.2), _quantile(per_round, 0.8))


_flush_buffers: dict[str, torch.Tensor] = {}


def _flush(backend: Backend) -> None:
    if backend.interpreted:  # no device cache worth flushing, and the host cache is not ours to control
        return
    buf = _flush_buffers.get(backend.name)
    if buf is None:  # kept: made outside any CUDA graph's pool (tuning may run in a graph's warm-up)
        device = backend.device()
        buf = _flush_buffers[backend.name] = outside_graph_pools(
            device, lambda: torch.empty(FLUSH_BYTES // 4, dtype=torch.int32, device=device)
        )
    buf.zero_()


def _quantile(values: list[float], q: float) -> float:
    return float(torch.tensor(values, dtype=torch.float64).quantile(q))


def timed_rep(fn: Callable[[], object], backend: Backend):
    """Queue one flushed, timed call of `fn`; returns its (not yet read) timer."""
    _flush(backend)
    timer = backend.timer()
    timer.start()
    fn()
    timer.stop()
    return timer


def rounds_of(samples: Sequence[Callable[[], float]], rounds: int) -> Rounds:
    """`rounds` rounds of `samples` (each call measures itself and returns ms), the first one rotating."""
    n = len(samples)
    times: list[list[float]] = [[] for _ in range(n)]
    for r in range(rounds):
        for j in range(n):
            i = (r + j) % n
            times[i].append(samples[i]())
    return Rounds(times)


def alternated_rounds(
    fns: Sequence[Callable[[], object]],
    backend: Backend | None = None,
    warmup_ms: float = 25.0,
    rep_ms: float = 100.0,
    min_rounds: int = 5,
    max_rounds: int = 1000,
) -> Rounds:
    """Device time of each of `fns` in alternated rounds (L2 flushed before every call); about `rep_ms`
    of timed calls per callable, at least `min_rounds` rounds."""
    backend = backend or backends.active()
    estimates = []
    for fn in fns:
        fn()  # compile / autotune / allocate outside the measurement
        backend.synchronize()
        t0 = time.perf_counter()
        fn()
        backend.synchronize()
        estimates.append(max((time.perf_counter() - t0) * 1e3, 1e-3))
    for fn, estimate in zip(fns, estimates):
        for _ in range(min(int(warmup_ms / estimate), 100)):
            fn()
    rounds = int(min(max(rep_ms / max(estimates), min_rounds), max_rounds))
    n = len(fns)
    backend.synchronize()
    t0 = time.perf_counter()
    for fn in fns:
        timed_rep(fn, backend)
    enqueue_us = (time.perf_counter() - t0) * 1e6 / n  # host cost of queueing one timed call
    backend.synchronize()
    order = [(r + j) % n for r in range(rounds) for j in range(n)]  # callable of each timed call
    timers: list = []
    elapsed: list[float] = []
    factor, host_gaps = HOLD_FACTOR, 0
    for start in range(0, len(order), CHUNK):
        chunk = order[start : start + CHUNK]
        for _ in range(HOLD_TRIES):
            holding = backend.hold(len(chunk) * enqueue_us * factor + HOLD_MARGIN_US)
            queued = [timed_rep(fns[i], backend) for i in chunk]
            if holding is None or holding():
                break
            factor *= 4  # the host outran the hold: these times may hold gaps; queue the chunk again
        else:
            host_gaps += 1
        timers += queued
        if len(timers) + CHUNK > MAX_EVENTS_IN_FLIGHT:
            elapsed += [t.elapsed_ms() for t in timers]
            timers = []
    backend.synchronize()
    elapsed += [t.elapsed_ms() for t in timers]
    times: list[list[float]] = [[] for _ in range(n)]
    for i, ms in zip(order, elapsed):
        times[i].append(ms)
    return Rounds(times, host_gaps)


def kernel_time(
    fn: Callable[[], object],
    backend: Backend | None = None,
    warmup_ms: float = 25.0,
    rep_ms: float = 100.0,
    min_reps: int = 5,
    max_reps: int = 1000,
) -> KernelTime:
    """Median and p20/p80 of `fn`'s device time in ms, L2 flushed before every rep."""
    return alternated_rounds([fn], backend, warmup_ms, rep_ms, min_reps, max_reps).kernel_time(0)


def host_time_us(
    fn: Callable[[], object], backend: Backend | None = None, calls: int = 2000, repeats: int = 5
) -> float:
    """Best-of-`repeats` wall-clock microseconds per call, calls issued back to back without a sync."""
    backend = backend or backends.active()
    fn()
    backend.synchronize()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls * 1e6)
        backend.synchronize()
    return best
