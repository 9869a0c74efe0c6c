"""cpu: Triton kernels run through the Triton interpreter on CPU tensors (CI and laptops)."""

from __future__ import annotations

import importlib.util
import os

import torch

from .base import Backend, Capabilities, DeviceProperties, LaunchPolicy


class CpuBackend(Backend):
    name = "cpu"
    device_type = "cpu"
    dispatch_key = "CPU"
    collective = "gloo"
    interpreted = True
    # The interpreter computes bf16 tl.dot wrongly and rejects bf16 atomic_add (docs/interpreter.md).
    capabilities = Capabilities(
        fp64=True, bf16=True, bf16_dot=False, tf32=False, fp8=False, int64_atomics=True
    )
    # Programs run one after another in numpy: few, big blocks are fastest.
    policy = LaunchPolicy(num_warps=(1, 2, 4, 8), onchip_bytes=1 << 30, block_scale=16)

    def missing(self) -> str | None:
        if importlib.util.find_spec("triton") is None:  # never import it here: see backends.active
            return "package triton is not installed (pip install triton)"
        return None

    def properties(self) -> DeviceProperties:
        import platform

        return DeviceProperties(
            name=f"cpu ({platform.processor() or platform.machine()}, Triton interpreter)",
            cores=os.cpu_count() or 1,
            memory_bytes=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
            extra={"torch_threads": torch.get_num_threads()},
        )
