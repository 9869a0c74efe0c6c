"""Scratch that a kernel keeps across launches: the partials and arrival counters of the launches whose
last program combines the others' work (split-K matmul; argmax and SDPA decode split over chunks). The
last program resets the counters, so one set, made once per stream, serves every later launch on it
(launches on one stream run one after another; two streams get two sets).

CUDA graphs need two exceptions, both about where the memory comes from:
- a kept set is made on a helper thread, on the device's default stream (`outside_graph_pools`, which
  the timer's L2-flush buffer uses too): CUDA-graph trees run a compiled model's warm-up with every
  allocation of the warming-up thread routed into the graph's private pool, where a tensor that outlives
  the call is refused ("tensors in the cudagraph pool not tracked as outputs"; a compiled training
  step's first matmul met it);
- while a graph is being captured, nothing may run on another stream, so a set that does not exist yet
  (or is too small) is made for that launch alone: the graph's memory, its zeroing recorded in the
  graph, and not kept.
Callers fetch their set at every launch and never store it in a per-geometry plan: a plan made during a
capture would otherwise hold the graph's memory after the graph is gone.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

# (name, device, stream) -> (sizes, tensors): sizes grown (never shrunk) to the largest launch so far.
_kept: dict[tuple, tuple[tuple[int, ...], tuple[torch.Tensor, ...]]] = {}


@functools.cache
def _device_module(device_type: str):
    """torch.cuda / torch.mlu for an accelerator; None on cpu (the interpreter: no streams)."""
    return None if device_type == "cpu" else torch.get_device_module(device_type)


@functools.cache
def _raw_stream(device_type: str):
    """torch's cheap current-stream query of the device type (an int), or None where it has none."""
    return getattr(torch._C, f"_{device_type}_getCurrentRawStream", None)


def _stream_key(module, device: torch.device):
    """The current stream of `device`, as cheaply as the device module allows (this runs every launch)."""
    if module is None:
        return None
    raw = _raw_stream(device.type)
    return (
        raw(device.index)
        if raw is not None and device.index is not None
        else module.current_stream(device).stream_id
    )


def _key(name: str, device: torch.device, module) -> tuple:
    return name, device, _stream_key(module, device)


def _capturing(module) -> bool:
    return module is not None and getattr(module, "is_current_stream_capturing", lambda: False)()


def outside_graph_pools(device: torch.device, make: Callable[[], object]):
    """`make()` on a helper thread, on `device`'s default stream: memory kept across calls must not come
    from a CUDA graph's private pool, which takes every allocation of the thread warming a graph up (where
    a kernel's first call may make its scratch, or tune). The current stream waits for that stream."""
    module = _device_module(device.type)
    if module is None:
        return make()
    index = module.current_device() if device.index is None else device.index  # the caller's device
    stream, default = module.current_stream(index), module.default_stream(index)

    def on_default_stream():
        with module.device(index), module.stream(default):
            return make()

    with ThreadPoolExecutor(1) as helper:
        made = helper.submit(on_default_stream).result()
    stream.wait_stream(default)  # e.g. counters zeroed before a launch reads them
    return made


def scratch(
    name: str,
    device: torch.device,
    sizes: tuple[int, ...],
    make: Callable[[tuple[int, ...]], tuple[torch.Tensor, ...]],
) -> tuple[torch.Tensor, ...]:
    """The tensors `make(sizes)` builds (counters at 0), at least `sizes` large, kept under `name` for the
    current stream of `device`, or made for this launch alone while a CUDA graph is being captured."""
    module = _device_module(device.type)
    key = _key(name, device, module)
    have = _kept.get(key)
    if have is not None and (have[0] is sizes or all(n <= h for n, h in zip(sizes, have[0]))):
        return have[1]
    if have is not None:
        sizes = tuple(max(n, h) for n, h in zip(sizes, have[0]))
    if _capturing(module):
        return make(sizes)
    tensors = outside_graph_pools(device, lambda: make(sizes))
    if module is not None:
        stream = module.current_stream(device)
        for old in have[1] if have is not None else ():
            old.record_stream(stream)  # not reused before the launches already queued on it end
    _kept[key] = (sizes, tensors)
    return tensors


def kept(name: str, device: torch.device) -> tuple[torch.Tensor, ...] | None:
    """The set kept under `name` for the current stream of `device` (tests read the counters back)."""
    have = _kept.get(_key(name, device, _device_module(device.type)))
    return None if have is None else have[1]
