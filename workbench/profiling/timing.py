"""Kernel time and host time of a callable, on the backend's own clock.

Kernel time: warm-up first, then many reps, each preceded by an L2 flush (a write over a buffer larger
than any last-level cache), timed with the backend's timer (CUDA events; `hardware_time` on MLU; wall
clock on cpu). Reps are queued in chunks behind a device-side hold (`Backend.hold`), so the device
never waits for the host between them: host launch overhead stays out of kernel time and is reported
separately. Reported as median with the 20th and 80th percentiles.
Host time: wall clock per call over many calls without synchronizing: the dispatch overhead that
decides decode-sized ops.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch

from workbench import backends
from workbench.backends import Backend

FLUSH_BYTES = 256 * 1024 * 1024
CHUNK = 64  # reps queued behind one device hold
MAX_EVENTS_IN_FLIGHT = 8192  # torch_mlu fails beyond this many outstanding event pairs (docs/mlu.md)


@dataclass(frozen=True)
class KernelTime:
    ms: float  # median
    p20: float
    p80: float
    reps: int


_flush_buffers: dict[str, torch.Tensor] = {}


def _flush(backend: Backend) -> None:
    if backend.interpreted:  # no device cache worth flushing, and the host cache is not ours to control
        return
    buf = _flush_buffers.get(backend.name)
    if buf is None:
        buf = _flush_buffers[backend.name] = torch.empty(FLUSH_BYTES // 4, dtype=torch.int32,
                                                         device=backend.device())
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


def kernel_time(fn: Callable[[], object], backend: Backend | None = None, warmup_ms: float = 25.0,
                rep_ms: float = 100.0, min_reps: int = 5, max_reps: int = 1000) -> KernelTime:
    """Median and p20/p80 of `fn`'s device time in ms, L2 flushed before every rep."""
    backend = backend or backends.active()
    fn()  # compile / autotune / allocate outside the measurement
    backend.synchronize()
    t0 = time.perf_counter()
    fn()
    backend.synchronize()
    estimate_ms = max((time.perf_counter() - t0) * 1e3, 1e-3)
    for _ in range(min(int(warmup_ms / estimate_ms), 100)):
        fn()
    reps = int(min(max(rep_ms / estimate_ms, min_reps), max_reps))
    backend.synchronize()
    t0 = time.perf_counter()
    timed_rep(fn, backend)
    enqueue_us = (time.perf_counter() - t0) * 1e6  # host cost of queueing one rep
    backend.synchronize()
    times: list[float] = []
    pending: list = []
    for start in range(0, reps, CHUNK):
        chunk = min(CHUNK, reps - start)
        backend.hold(chunk * enqueue_us * 1.5 + 50)
        pending += [timed_rep(fn, backend) for _ in range(chunk)]
        if len(pending) + CHUNK > MAX_EVENTS_IN_FLIGHT:
            times += [t.elapsed_ms() for t in pending]
            pending = []
    backend.synchronize()
    times += [t.elapsed_ms() for t in pending]
    return KernelTime(ms=_quantile(times, 0.5), p20=_quantile(times, 0.2), p80=_quantile(times, 0.8), reps=reps)


def host_time_us(fn: Callable[[], object], backend: Backend | None = None, calls: int = 2000,
                 repeats: int = 5) -> float:
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
