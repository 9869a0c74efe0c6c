"""Low-overhead launches of already-compiled Triton kernels.

Triton's `kernel[grid](...)` binds and specialises every argument on every call (about 10 µs), which
dominates decode-sized ops called thousands of times per generated token. `launch(kernel, grid, *args,
**meta)` does the same launch, but remembers the compiled kernel under a key made of what Triton
specialises on — each tensor's dtype and 16-byte alignment, each int's value 1 / divisibility by 16 /
64-bit range, the constexpr and launch-option values — and later calls with the same key go straight
to the compiled kernel's launcher. Building that key costs a function call per argument, so calls are
first looked up by a cheaper key that holds each int by value (a decode step repeats the same sizes and
strides); equal value keys have equal specialisation keys, and a new value key costs one lookup of the
specialisation key, never a compile. The value key holds the kernel by identity (hashing a JITFunction
runs Python). With Triton 3.6 (the version this path was read against) that is
the launcher's C function itself, skipping its Python wrapper, which only sizes scratch buffers our
kernels do not use; with other versions, the compiled kernel's `run`. The first call of a key,
interpreted backends, and launchers of another calling convention take Triton's own path.
WORKBENCH_FAST_LAUNCH=0 turns the cache off (benchmarks/host_overhead.py measures both).

`launch` returns the entry it used. A `Site` (one launch of an op's per-geometry plan, whose sizes,
strides and constexprs are fixed) keeps the entry of its first launch with aligned tensors and calls it
directly afterwards: no key at all, only an alignment test of the caller's tensors.
`launch_hook(path, cache)` replaces Triton's path (compile on first use, then launch) for the length of
a context, e.g. with a stub that launches nothing to measure an op's host cost; `autotune` runs an
autotuner's first call through the same switch.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator

import torch
import triton
from triton.tools.tensor_descriptor import TensorDescriptor

from workbench import backends

_ENABLED = not backends.active().interpreted and os.environ.get("WORKBENCH_FAST_LAUNCH", "1") != "0"
_RAW_LAUNCH = triton.__version__.startswith("3.6.")
# specialisation key -> `_entry`: (launch function, its leading arguments, constexpr tail, key)
_cache: dict = {}
_by_value: dict = {}  # value key -> the same entries; cleared when it reaches MAX_BY_VALUE
MAX_BY_VALUE = 4096  # distinct int values (e.g. one KV length per decode step) must not grow it forever
_PLAIN = frozenset((int, bool, float, str, type(None)))  # constexpr types held by value in value keys
# While > 0 every launch takes Triton's own path, where the MLU launch-rules profile sees it.
watchers = 0
# Bumped whenever the caches are swapped (profiling.no_kernels): `Site`s stop using entries from before.
generation = 0


def _triton_launch(kernel, grid, args: tuple, meta: dict):
    """Triton's own path: `kernel[grid](*args, **meta)` (compiled on first use); the compiled kernel."""
    return kernel[grid](*args, **meta)


_triton_path = _triton_launch  # what a launch taking Triton's path calls; `launch_hook` swaps it


def _arg_key(a):
    t = type(a)
    if t is int:  # the most common argument: sizes and strides
        return "i", a == 1, a % 16 == 0, -(2**31) <= a < 2**31
    if isinstance(a, torch.Tensor):
        return a.dtype, a.data_ptr() % 16 == 0
    if isinstance(a, bool):
        return "b", a
    if isinstance(a, int):
        return "i", a == 1, a % 16 == 0, -(2**31) <= a < 2**31
    if isinstance(a, float):
        return "f"
    if isinstance(a, TensorDescriptor):  # specialised on its dtype and tiles; shape and strides to be safe
        return "desc", a.base.dtype, tuple(a.block_shape), tuple(a.shape), tuple(a.strides), a.padding
    return type(a), a


def _value_key(args) -> list:
    """Each int by value, each tensor's dtype and 16-byte alignment, anything else as `_arg_key`: one
    comprehension without a call for the common arguments. Equal value keys give equal `_arg_key`s."""
    return [
        a
        if type(a) is int
        else (a.dtype, not a.data_ptr() & 15)
        if isinstance(a, torch.Tensor)
        else "f"
        if type(a) is float
        else _arg_key(a)
        for a in args
    ]


@functools.cache
def _driver():
    from triton.runtime import driver

    return driver.active


@functools.cache
def _stream_getters():
    """(current stream of a device, current device) of the active driver. torch.cuda.current_device is
    Python around torch._C._cuda_getDevice (which initialises CUDA itself where needed): the C function
    is called directly."""
    d = _driver()
    get_device = d.get_current_device
    if get_device is getattr(torch.cuda, "current_device", None):
        get_device = getattr(torch._C, "_cuda_getDevice", get_device)
    return d.get_current_stream, get_device


def _bind_stream():
    """The current stream of the current device. `_stream` starts as this function, which on first use
    rebinds `_stream` to a function of the two getters, saving a cached call per launch."""
    global _stream
    get_stream, get_device = _stream_getters()

    def current():
        return get_stream(get_device())

    _stream = current
    return current()


_stream = _bind_stream


def _disable() -> None:
    global _ENABLED
    _ENABLED = False


def aligned(*tensors: torch.Tensor) -> bool:
    """Whether every tensor's data is 16-byte aligned: what relaunching an entry made for aligned tensors
    needs (`Site`; fresh allocations always are)."""
    bits = 0
    for t in tensors:
        bits |= t.data_ptr()
    return not bits & 15


def launch(kernel, grid: tuple[int, ...], *args, **meta) -> tuple | None:
    """`kernel[grid](*args, **meta)`, with positional runtime args and keyword constexprs/options.

    Returns the cache entry it launched through (for `Site`), or None where Triton's own path ran."""
    if not _ENABLED or watchers:
        _triton_path(kernel, grid, args, meta)
        return None
    # The kernel and non-plain constexprs (an op's jit math function) by identity: hashing a JITFunction
    # runs Triton's Python `cache_key` under a lock. Each entry holds its specialisation key, which holds
    # those objects, so their ids cannot be reused while the entry is cached.
    value_key = (
        id(kernel),
        *meta,
        *[v if type(v) in _PLAIN else id(v) for v in meta.values()],
        *_value_key(args),
    )
    entry = _by_value.get(value_key)
    if entry is None:
        key = (kernel, tuple(map(_arg_key, args)), tuple(meta.items()))
        entry = _cache.get(key)
        if entry is None:
            compiled = _triton_path(kernel, grid, args, meta)
            # The launcher takes every kernel parameter in signature order, constexprs included.
            tail = tuple(meta[name] for name in kernel.arg_names[len(args) :])
            entry = _cache[key] = _entry(compiled, tail, key)
            return entry
        if len(_by_value) >= MAX_BY_VALUE:
            _by_value.clear()
        _by_value[value_key] = entry
    _call(entry, grid, args)
    return entry


class Site:
    """One launch of a per-geometry plan: its kernel and constexprs, and (once launched with aligned
    tensors) the cache entry that later calls go to without building a key. The plan fixes what else a
    launch specialises on — dtypes, and runtime ints (sizes, strides) and with them their classes
    (1, multiple of 16, 64-bit); the caller says whether this call's tensors are 16-byte aligned
    (`aligned`; fresh allocations always are)."""

    __slots__ = ("entry", "kernel", "meta")

    def __init__(self, kernel, **meta):
        self.kernel, self.meta, self.entry = kernel, meta, None

    def __call__(self, grid: tuple[int, ...], *args, aligned: bool = True) -> None:
        entry = self.entry
        # An entry from before the caches were swapped (`generation`) or turned off is not used.
        if entry is not None and aligned and entry[4] == generation and _ENABLED and not watchers:
            if len(grid) == 1:  # `_call`'s common case inlined: a decode-sized call repeats it
                call, prefix, tail, _, _ = entry
                try:
                    call(grid[0], 1, 1, _stream(), *prefix, *args, *tail)
                    return
                except (TypeError, AttributeError):
                    pass  # `_call` below handles another calling convention
            _call(entry, grid, args)
            return
        entry = launch(self.kernel, grid, *args, **self.meta)
        if aligned:
            self.entry = entry


def _call(entry: tuple, grid: tuple[int, ...], args: tuple) -> None:
    call, prefix, tail, key, _ = entry
    try:
        if len(grid) == 1:
            call(grid[0], 1, 1, _stream(), *prefix, *args, *tail)
        else:
            g0, g1, g2 = (*grid, 1)[:3]
            call(g0, g1, g2, _stream(), *prefix, *args, *tail)
    except (TypeError, AttributeError):  # a launcher with another calling convention: use Triton's path
        _disable()
        kernel, _, meta = key
        _triton_path(kernel, grid, args, dict(meta))


def _entry(compiled, tail: tuple, key: tuple) -> tuple:
    """(launch function, its arguments between the stream and the kernel's, constexpr tail, key,
    generation) of `compiled`: Triton 3.6's C launch function where `_raw_launch` allows it, else the
    compiled kernel's `run`."""
    c_launch = _raw_launch(compiled)
    if c_launch is not None:
        launcher = compiled.run
        prefix = (
            compiled.function,
            launcher.launch_cooperative_grid,
            launcher.launch_pdl,
            None,
            None,
            compiled.packed_metadata,
            None,
            None,
            None,
        )
        return c_launch, prefix, tail, key, generation
    return (
        compiled.run,
        (compiled.function, compiled.packed_metadata, None, None, None),
        tail,
        key,
        generation,
    )


def _raw_launch(compiled):
    """Triton 3.6's C launch function of `compiled`, to be called as its Python wrapper would call it
    (`_entry` builds those arguments), or None.

    The wrapper (CudaLauncher.__call__) allocates global / profile scratch when a kernel needs it and
    passes (grid, stream, function, cooperative, pdl, global scratch, profile scratch, metadata,
    launch metadata, enter hook, exit hook, *args). Kernels with scratch keep the wrapper.
    """
    launcher = getattr(compiled, "run", None)
    c_launch = getattr(launcher, "launch", None)
    if (
        not _RAW_LAUNCH
        or c_launch is None
        or getattr(launcher, "global_scratch_size", 1) != 0
        or getattr(launcher, "profile_scratch_size", 1) != 0
    ):
        return None
    return c_launch


def autotune(tuner, grid, *args, **meta) -> dict:
    """`tuner[grid](*args, **meta)` (time the autotuner's configs, launch the best); the best config's
    keywords. Under a `launch_hook` nothing is timed or launched: the first config."""
    if _triton_path is not _triton_launch:
        return tuner.configs[0].all_kwargs()
    tuner[grid](*args, **meta)
    return tuner.best_config.all_kwargs()


@contextlib.contextmanager
def launch_hook(path: Callable, cache: bool) -> Iterator[None]:
    """Inside, a launch that takes Triton's path calls `path(kernel, grid, args, meta)` instead (it
    returns what `kernel[grid](*args, **meta)` would: a compiled kernel, whose `run` the cache calls).
    cache=False: every launch takes that path. cache=True: the launch cache runs as on a compiling
    backend, from empty and on a null stream, so that only a cache miss takes it."""
    global _triton_path, _ENABLED, _cache, _by_value, _stream, generation
    saved = _triton_path, _ENABLED, _cache, _by_value, _stream
    _triton_path, _ENABLED, _cache, _by_value = path, cache, {}, {}
    generation += 1  # the ops' plans (`Site`) hold entries of the real cache: not launched meanwhile
    if cache:
        _stream = _null_stream
    try:
        yield
    finally:
        _triton_path, _ENABLED, _cache, _by_value, _stream = saved
        generation += 1  # nor entries of the hook's cache afterwards


def _null_stream() -> None:
    return None
