"""Low-overhead launches of already-compiled Triton kernels.

Triton's `kernel[grid](...)` binds and specialises every argument on every call (about 10 µs), which
dominates decode-sized ops called thousands of times per generated token. `launch(kernel, grid, *args,
**meta)` does the same launch, but remembers the compiled kernel under a key made of what Triton
specialises on — each tensor's dtype and 16-byte alignment, each int's value 1 / divisibility by 16 /
64-bit range, the constexpr and launch-option values — and later calls with the same key go straight
to the compiled kernel: the backend's direct launcher where it has one for that kernel
(`Backend.direct_launcher`; on cuda a cuLaunchKernel call, see backends/cuda_launch.py), else Triton's
compiled launcher. The first call of a key, interpreted backends, and Triton versions whose launcher we
have not seen take Triton's own path. WORKBENCH_FAST_LAUNCH=0 turns the cache off, =cached keeps the
cache but always uses Triton's compiled launcher (to measure what the direct launcher saves).
"""

from __future__ import annotations

import functools
import os

import torch

from workbench import backends

_MODE = os.environ.get("WORKBENCH_FAST_LAUNCH", "1")
if _MODE not in ("0", "1", "cached"):
    raise ValueError(f"WORKBENCH_FAST_LAUNCH: expected 0, 1 or cached, got {_MODE!r}")
_ENABLED = not backends.active().interpreted and _MODE != "0"
_DIRECT = _MODE == "1"
_cache: dict = {}
# While > 0 every launch takes Triton's own path, where the MLU launch-rules profile sees it.
watchers = 0


def _arg_key(a):
    if isinstance(a, torch.Tensor):
        return a.dtype, a.data_ptr() % 16 == 0
    if isinstance(a, bool):
        return "b", a
    if isinstance(a, int):
        return "i", a == 1, a % 16 == 0, -(2**31) <= a < 2**31
    if isinstance(a, float):
        return "f"
    return type(a), a


@functools.cache
def _driver():
    from triton.runtime import driver

    return driver.active


def _stream():
    d = _driver()
    return d.get_current_stream(d.get_current_device())


def _disable() -> None:
    global _ENABLED
    _ENABLED = False


def launch(kernel, grid: tuple[int, ...], *args, **meta) -> None:
    """`kernel[grid](*args, **meta)`, with positional runtime args and keyword constexprs/options."""
    if not _ENABLED or watchers:
        kernel[grid](*args, **meta)
        return
    key = (kernel, tuple(map(_arg_key, args)), tuple(meta.items()))
    entry = _cache.get(key)
    if entry is None:
        compiled = kernel[grid](*args, **meta)
        # The launcher takes every kernel parameter in signature order, constexprs included.
        tail = tuple(meta[name] for name in kernel.arg_names[len(args):])
        direct = backends.active().direct_launcher(compiled, len(args)) if _DIRECT else None
        _cache[key] = (compiled, tail, direct)
        return
    compiled, tail, direct = entry
    if direct is not None:
        direct(grid, _stream(), args)
        return
    g = tuple(grid) + (1, 1)
    try:
        compiled.run(g[0], g[1], g[2], _stream(), compiled.function, compiled.packed_metadata, None, None, None,
                     *args, *tail)
    except (TypeError, AttributeError):  # a launcher with another calling convention: use Triton's path
        _disable()
        kernel[grid](*args, **meta)
