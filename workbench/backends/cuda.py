"""cuda: NVIDIA GPUs through torch.cuda; kernels compiled by Triton's NVIDIA backend."""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable

import torch

from .base import Backend, Capabilities, DeviceProperties, LaunchPolicy, Timer


class CudaEventTimer(Timer):
    def start(self) -> None:
        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)
        self._start.record()

    def stop(self) -> None:
        self._end.record()

    def elapsed_ms(self) -> float:
        self._end.synchronize()
        return self._start.elapsed_time(self._end)


class CudaBackend(Backend):
    name = "cuda"
    device_type = "cuda"
    dispatch_key = "CUDA"
    collective = "nccl"
    interpreted = False

    def missing(self) -> str | None:
        if torch.version.cuda is None:
            return (
                f"this torch build ({torch.__version__}) has no CUDA support; install a CUDA build of torch"
            )
        if not torch.cuda.is_available():
            return "torch has CUDA support but sees no GPU (no NVIDIA driver or no visible device)"
        if importlib.util.find_spec("triton") is None:  # never import it here: see backends.active
            return "package triton is not installed"
        return None

    # Capabilities and policy are read once: a process runs its kernels on one device.
    @functools.cached_property
    def capabilities(self) -> Capabilities:  # type: ignore[override]
        major, minor = torch.cuda.get_device_capability() if torch.cuda.is_available() else (0, 0)
        return Capabilities(
            fp64=True,
            bf16=major >= 8,
            bf16_dot=major >= 8,
            tf32=major >= 8,
            fp8=(major, minor) >= (8, 9),
            int64_atomics=True,
            tma=major >= 9,
        )

    @functools.cached_property
    def policy(self) -> LaunchPolicy:  # type: ignore[override]
        smem = 48 * 1024
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(torch.cuda.current_device())
            smem = getattr(props, "shared_memory_per_block_optin", smem)
        return LaunchPolicy(onchip_bytes=smem)

    def synchronize(self) -> None:
        torch.cuda.synchronize()

    def timer(self) -> Timer:
        return CudaEventTimer()

    def hold(self, us: float) -> Callable[[], bool]:
        torch.cuda._sleep(int(us * 2000))  # spin cycles; at up to ~2 GHz this holds at least `us`
        released = torch.cuda.Event()
        released.record()
        return lambda: not released.query()

    def properties(self) -> DeviceProperties:
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        return DeviceProperties(
            name=props.name,
            cores=props.multi_processor_count,
            memory_bytes=props.total_memory,
            extra={
                "capability": f"{props.major}.{props.minor}",
                "l2_bytes": getattr(props, "L2_cache_size", None),
            },
        )
