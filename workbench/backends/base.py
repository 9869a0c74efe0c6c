"""The Backend abstraction: what a kernel and the profiler need to know about one device runtime.

A backend is mostly data (capabilities, launch policy, dispatch key, collective name) plus a few
methods that touch the runtime (availability, synchronize, event timing, device properties).
Kernels read capabilities and the launch policy; they never test which vendor they run on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch


class BackendUnavailable(RuntimeError):
    """Raised when a backend is asked for but its package, driver or device is missing."""


@dataclass(frozen=True)
class Capabilities:
    """What the device can do; kernels pick code paths from these flags."""

    fp64: bool = True  # float64 tensors inside kernels
    bf16: bool = True
    bf16_dot: bool = True  # tl.dot on bf16 operands gives correct results
    tf32: bool = False
    fp8: bool = False
    int64_atomics: bool = True
    tma: bool = False  # tensor-memory-accelerator descriptors (NVIDIA Hopper and later)


@dataclass(frozen=True)
class LaunchPolicy:
    """Rules every kernel launch on this backend must respect."""

    max_programs: int = 2**31 - 1  # grid cap along axis 0 (MLU: number of cores)
    num_warps: tuple[int, ...] = (1, 2, 4, 8, 16, 32)  # legal values
    onchip_bytes: int = 228 * 1024  # shared memory / NRAM budget of one program
    block_scale: int = 1  # elementwise blocks are multiplied by this (big blocks on MLU and the interpreter)
    # The shared launchers' style here: persistent grid-stride programs that fill the cores (MLU), or
    # one program per tile (ops.mlu.persistent).
    persistent: bool = False

    def grid(self, tiles: int, num_warps: int = 1) -> int:
        """Programs to launch for `tiles` tiles: all of them, or the core count for grid-stride kernels
        (each program of `num_warps` warps takes that many cores)."""
        return max(1, min(tiles, self.max_programs // max(1, num_warps)))


@dataclass(frozen=True)
class DeviceProperties:
    name: str
    cores: int  # streaming multiprocessors (CUDA) / total cores (MLU) / CPU threads
    memory_bytes: int
    extra: dict = field(default_factory=dict)


class Backend:
    """One device runtime. Subclasses fill in the class attributes and the runtime hooks."""

    name: str = ""
    device_type: str = ""  # torch device type of tensors this backend runs kernels on
    dispatch_key: str = ""  # ATen dispatch key that overrides register under
    collective: str = ""  # torch.distributed backend name
    interpreted: bool = False  # kernels run through the Triton interpreter
    capabilities: Capabilities = Capabilities()
    policy: LaunchPolicy = LaunchPolicy()

    def missing(self) -> str | None:
        """None when usable, else what is missing (package, driver, device) in words."""
        raise NotImplementedError

    def is_available(self) -> bool:
        return self.missing() is None

    def require(self) -> Backend:
        why = self.missing()
        if why is not None:
            raise BackendUnavailable(f"backend {self.name!r} is not available: {why}")
        return self

    def device(self, index: int | None = None) -> torch.device:
        return torch.device(self.device_type, index) if index is not None else torch.device(self.device_type)

    def synchronize(self) -> None:
        pass

    def properties(self) -> DeviceProperties:
        raise NotImplementedError

    def timer(self) -> Timer:
        """A start/stop timer on the device's own clock (events on GPUs, wall clock on cpu)."""
        return WallTimer()

    def hold(self, us: float) -> Callable[[], bool] | None:
        """Queue about `us` of device-side busy work, so that launches issued meanwhile run back to back;
        returns a probe that says whether the hold is still running (no wait).

        Timing uses it to keep host launch overhead out of kernel time, and the probe to notice when the
        host outran it. A no-op returning None where the runtime has no such primitive (then kernel times
        of very short ops include launch gaps)."""
        return None

    def __repr__(self) -> str:
        return f"<Backend {self.name}>"


class Timer:
    """Interval timer: `start()`, `stop()`, then `elapsed_ms()` (which may synchronize)."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def elapsed_ms(self) -> float:
        raise NotImplementedError


class WallTimer(Timer):
    def start(self) -> None:
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        self._t1 = time.perf_counter()

    def elapsed_ms(self) -> float:
        return (self._t1 - self._t0) * 1e3
