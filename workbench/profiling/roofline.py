"""Device ceilings for the roofline: measured copy bandwidth and matmul rates, cached per device.

`peaks()` measures once per device name (a large device-to-device copy, counting bytes read plus
written; large matrix products in bf16, fp16 and fp32 — tf32 where torch allows it) and caches the
result as JSON. `roofline_pct` compares an op's time with the floor its cost model implies.
Known datasheet figures are kept beside the measurement: a rate above both is a measurement error.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from workbench import backends
from workbench.backends import Backend

from .timing import kernel_time

# Vendor datasheet peaks (dense): memory GB/s and TFLOP/s by dtype. Leads, not ceilings we reach.
DATASHEET = {
    "NVIDIA H100 80GB HBM3": {"gbps": 3350.0, "bf16": 989.0, "fp16": 989.0, "fp32": 67.0, "tf32": 495.0},
    "NVIDIA H200": {"gbps": 4800.0, "bf16": 989.0, "fp16": 989.0, "fp32": 67.0, "tf32": 495.0},
}


@dataclass
class Peaks:
    device: str
    gbps: float  # copy bandwidth, bytes read + written
    tflops: dict[str, float]  # by dtype name: bf16, fp16, fp32
    datasheet: dict[str, float] | None = None

    def flops_peak(self, dtype: str) -> float:
        return self.tflops.get(dtype, self.tflops.get("fp32", 0.0))

    def ceiling(self, key: str) -> float:
        """Largest believable rate: the max of measured and datasheet (gbps or a dtype's TFLOP/s)."""
        measured = self.gbps if key == "gbps" else self.flops_peak(key)
        return max(measured, (self.datasheet or {}).get(key, 0.0))


def cache_path() -> Path:
    root = os.environ.get("WORKBENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "workbench")
    return Path(root) / "peaks.json"


def copy_gbps(bytes_moved: int, backend: Backend | None = None, rep_ms: float = 100.0) -> float:
    """GB/s of a device-to-device copy that reads bytes_moved / 2 and writes as many (L2 flushed, as
    every kernel time): the roofline's bandwidth at large sizes, the reachable one at an op's own size."""
    backend = backend or backends.active()
    src = torch.empty(max(bytes_moved // 4, 1), dtype=torch.int16, device=backend.device())
    dst = torch.empty_like(src)
    return bytes_moved / kernel_time(lambda: dst.copy_(src), backend, rep_ms=rep_ms).ms / 1e6


def measure(backend: Backend | None = None) -> Peaks:
    """Measure the ceilings now (seconds on a GPU; small sizes and rough numbers on the interpreter)."""
    backend = backend or backends.active()
    device = backend.device()
    small = backend.interpreted
    n = (1 << 22) if small else (1 << 30)  # bytes copied
    gbps = copy_gbps(2 * n, backend, rep_ms=20 if small else 200)
    tflops = {}
    size = 512 if small else 8192
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", torch.float32)):
        a = torch.randn(size, size, device=device).to(dtype)
        b = torch.randn(size, size, device=device).to(dtype)
        t = kernel_time(lambda: torch.mm(a, b), backend, rep_ms=20 if small else 200)
        tflops[name] = 2 * size**3 / (t.ms * 1e-3) / 1e12
    name = backend.properties().name
    return Peaks(device=name, gbps=gbps, tflops=tflops, datasheet=DATASHEET.get(name))


def peaks(backend: Backend | None = None, refresh: bool = False) -> Peaks:
    """Cached ceilings for this device (measured on first use)."""
    backend = backend or backends.active()
    name = backend.properties().name
    path = cache_path()
    cached = json.loads(path.read_text()) if path.exists() else {}
    if name in cached and not refresh:
        return Peaks(**cached[name])
    result = measure(backend)
    cached[name] = asdict(result)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(cached, indent=1))
    tmp.replace(path)  # atomic: readers never see a half-written file
    return result


def roofline(bytes_moved: int, flops: int, ms: float, dtype: str, p: Peaks) -> dict:
    """Achieved rates, % of the roofline floor, and a flag when a rate beats every known ceiling."""
    seconds = ms * 1e-3
    gbps = bytes_moved / seconds / 1e9 if seconds > 0 else float("nan")
    tflops = flops / seconds / 1e12 if seconds > 0 else float("nan")
    floor_s = max(bytes_moved / (p.gbps * 1e9), flops / (p.flops_peak(dtype) * 1e12))
    suspect = []
    if gbps > p.ceiling("gbps") * 1.02:
        suspect.append(f"{gbps:.0f} GB/s is above the peak {p.ceiling('gbps'):.0f}")
    if tflops > p.ceiling(dtype) * 1.02:
        suspect.append(f"{tflops:.1f} TFLOP/s is above the peak {p.ceiling(dtype):.1f}")
    return {
        "gbps": gbps,
        "tflops": tflops,
        "roofline_pct": 100.0 * floor_s / seconds if seconds > 0 else float("nan"),
        "bound": "memory"
        if bytes_moved / (p.gbps * 1e9) >= flops / (p.flops_peak(dtype) * 1e12)
        else "compute",
        "suspect": "; ".join(suspect),
    }
