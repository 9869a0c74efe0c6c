"""Op wrappers run without their kernels: their own Python (host) cost, measurable and testable on a cpu.

Inside `no_kernels("wrapper")`, launches do nothing: what is left of a call is validation, layout,
allocation and argument building. Inside `no_kernels("cached")`, the launch cache runs as on a compiling
backend, but its compile path returns a fake compiled kernel whose launcher does nothing;
`KernelStub.compiles` counts those calls, so a call that should hit the cache and does not shows there.
In both, autotuners take their first config unmeasured. Outputs are left unwritten: for timing and cache
checks, not results. Both go through the launch layer's public hook (`ops._launch.launch_hook`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from workbench.ops._launch import launch_hook


@dataclass
class KernelStub:
    compiles: int = 0  # calls of the fake compile path ("cached" mode)


class _FakeCompiled:
    function = packed_metadata = None

    def run(self, *args) -> None:
        return None


@contextlib.contextmanager
def no_kernels(mode: str) -> Iterator[KernelStub]:
    """Launches do nothing (`mode` "wrapper") or go through the launch cache to a fake kernel ("cached")."""
    if mode not in ("wrapper", "cached"):
        raise ValueError(f"mode: expected 'wrapper' or 'cached', got {mode!r}")
    stub = KernelStub()

    def fake_compile(kernel, grid, args, meta) -> _FakeCompiled:
        stub.compiles += 1
        return _FakeCompiled()

    with launch_hook(fake_compile if mode == "cached" else lambda *_: None, cache=mode == "cached"):
        yield stub
