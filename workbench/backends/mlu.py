"""mlu: Cambricon MLUs through torch_mlu (device type "mlu", dispatch key PrivateUse1).

Written against the APIs listed in shared/MLU_PORTING.md. No MLU was available to us: the logic here
is tested with a stand-in for `torch.mlu`, never on hardware.
"""

from __future__ import annotations

import shutil

import torch

from .base import Backend, Capabilities, DeviceProperties, LaunchPolicy, Timer


def _torch_mlu():
    try:
        import torch_mlu  # noqa: F401  (registers torch.mlu)
    except ImportError:
        return None
    return getattr(torch, "mlu", None)


class MluEventTimer(Timer):
    """On-device time: `Event.hardware_time` is in microseconds (MLU_PORTING.md)."""

    def __init__(self, mlu):
        self._mlu = mlu

    def start(self) -> None:
        self._start = self._mlu.Event(enable_timing=True)
        self._end = self._mlu.Event(enable_timing=True)
        self._start.record()

    def stop(self) -> None:
        self._end.record()

    def elapsed_ms(self) -> float:
        self._end.synchronize()
        return self._start.hardware_time(self._end) / 1000.0


class MluBackend(Backend):
    name = "mlu"
    device_type = "mlu"
    dispatch_key = "PrivateUse1"
    collective = "cncl"
    interpreted = False
    # No float64 in kernels, no int64 atomics (MLU_PORTING.md, Triton on MLU 4 and 6).
    capabilities = Capabilities(fp64=False, bf16=True, bf16_dot=True, tf32=False, fp8=False, int64_atomics=False)

    def missing(self) -> str | None:
        mlu = _torch_mlu()
        if mlu is None:
            hint = " (cnmon is present: an MLU driver exists)" if shutil.which("cnmon") else ""
            return f"package torch_mlu is not installed{hint}"
        if not mlu.is_available():
            return "torch_mlu is installed but sees no MLU device (check the driver with cnmon)"
        return None

    @property
    def policy(self) -> LaunchPolicy:  # type: ignore[override]
        mlu = _torch_mlu()
        if mlu is None or not mlu.is_available():
            return LaunchPolicy(max_programs=48, num_warps=(1, 4), onchip_bytes=512 * 1024, block_scale=16)
        props = mlu.get_device_properties(mlu.current_device())
        cores = props.cluster_count * props.core_num_per_cluster
        return LaunchPolicy(max_programs=cores, num_warps=(1, 4), onchip_bytes=self._nram_bytes(), block_scale=16)

    @staticmethod
    def _nram_bytes() -> int:
        try:
            from triton.backends.mlu.driver import BangUtils  # type: ignore

            return int(BangUtils().get_device_properties(torch.mlu.current_device())["max_nram_size"])
        except Exception:  # Triton's MLU backend is optional; fall back to a conservative budget
            return 512 * 1024

    def synchronize(self) -> None:
        _torch_mlu().synchronize()

    def timer(self) -> Timer:
        return MluEventTimer(_torch_mlu())

    def properties(self) -> DeviceProperties:
        mlu = _torch_mlu()
        props = mlu.get_device_properties(mlu.current_device())
        return DeviceProperties(
            name=props.name,
            cores=props.cluster_count * props.core_num_per_cluster,
            memory_bytes=props.total_memory,
            extra={"cluster_count": props.cluster_count, "core_num_per_cluster": props.core_num_per_cluster},
        )
