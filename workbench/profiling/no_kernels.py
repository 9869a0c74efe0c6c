"""Op wrappers run without their kernels: their own Python (host) cost, measurable and testable on a cpu.

Inside `no_kernels("wrapper")`, ops/_launch.launch does nothing, wherever it was imported: what is left
of a call is validation, layout, allocation and argument building. Inside `no_kernels("cached")`, the
launch cache runs as on a compiling backend, but its compile path (`kernel[grid](...)`) returns a fake
compiled kernel whose launcher does nothing; `KernelStub.compiles` counts those calls, so a call that
should hit the cache and does not shows there. In both, tuned kernels take their first candidate config
unmeasured.
Outputs are left unwritten: for timing and cache checks, not results.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass

from workbench.ops import _elementwise, _launch, _tuning

_real_launch = _launch.launch


@dataclass
class KernelStub:
    compiles: int = 0  # calls of the fake compile path ("cached" mode)


class _FakeCompiled:
    function = packed_metadata = None

    def run(self, *args) -> None:
        return None


def _noop_launch(kernel, grid, *args, **meta) -> None:
    return None


def _bind_launch(fn) -> None:
    """Bind `launch` to `fn` in every workbench module that imported it."""
    for name, module in list(sys.modules.items()):
        if name.startswith("workbench.") and getattr(module, "launch", None) in (_real_launch, _noop_launch):
            module.launch = fn


@contextlib.contextmanager
def no_kernels(mode: str):
    """Launches do nothing (`mode` "wrapper") or go through the launch cache to a fake kernel ("cached")."""
    if mode not in ("wrapper", "cached"):
        raise ValueError(f"mode: expected 'wrapper' or 'cached', got {mode!r}")
    stub = KernelStub()
    jit_class = type(_elementwise._unary_kernel)  # the class of jit kernels (not of autotuners)
    saved = (jit_class.__dict__.get("__getitem__"), _tuning.measuring, _launch._ENABLED, _launch._stream,
             _launch._cache, _launch._by_value)

    def fake_getitem(kernel, grid):
        def compile_and_launch(*args, **meta):
            stub.compiles += 1
            return _FakeCompiled()

        return compile_and_launch

    _tuning.measuring = False
    _launch.generation += 1  # ops' plans may hold entries of the real cache: they must not launch meanwhile
    if mode == "wrapper":
        _bind_launch(_noop_launch)
    else:
        jit_class.__getitem__ = fake_getitem
        _launch._ENABLED, _launch._stream, _launch._cache, _launch._by_value = True, lambda: None, {}, {}
    try:
        yield stub
    finally:
        _launch.generation += 1  # nor may entries of the fake cache afterwards
        _bind_launch(_real_launch)
        (getitem, _tuning.measuring, _launch._ENABLED, _launch._stream, _launch._cache,
         _launch._by_value) = saved
        if getitem is None:
            if "__getitem__" in jit_class.__dict__:
                del jit_class.__getitem__
        else:
            jit_class.__getitem__ = getitem
