"""mlu: Cambricon MLUs through torch_mlu (device type "mlu", dispatch key PrivateUse1).

Written against torch_mlu's documented API (docs/mlu.md). No MLU was available to us: the logic here
is tested with a stand-in for `torch.mlu` / `torch_mlu` / Triton's `BangUtils`, never on hardware.

What it provides beyond the Backend basics:
- on-device kernel time from `Event.hardware_time` (microseconds), with at most 8192 event pairs
  recorded and unread at any time (torch_mlu fails with CN_OPS_ERROR_OUT_OF_RESOURCES beyond that);
- the device figures kernels need: total cores = cluster_count x core_num_per_cluster (torch_mlu),
  NRAM per core from Triton's `BangUtils().get_device_properties(d)["max_nram_size"]`;
- collectives: "cncl", and "flagcx" where FlagCX's torch plugin is importable;
- MLU graphs (`torch.mlu.MLUGraph`, `torch.mlu.graph`) where this torch_mlu has them.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections import deque
from collections.abc import Callable
from typing import Any

import torch

from . import mlu_devices
from .base import Backend, Capabilities, DeviceProperties, LaunchPolicy, Timer
from .mlu_devices import MluDevice

MAX_EVENT_PAIRS = 8192  # recorded, unread event pairs torch_mlu tolerates (docs/mlu.md)


def _torch_mlu():
    """`torch.mlu` once torch_mlu has registered it, else None."""
    try:
        import torch_mlu  # noqa: F401  (registers torch.mlu)
    except ImportError:
        return None
    return getattr(torch, "mlu", None)


def _bang_properties(index: int) -> dict | None:
    """Triton's own device query on MLU (cluster_num, core_num_per_cluster, max_nram_size, ...)."""
    try:
        from triton.backends.mlu.driver import BangUtils  # type: ignore
    except ImportError:  # Triton's MLU backend is optional
        return None
    return dict(BangUtils().get_device_properties(index))


class _EventPairs:
    """Timers whose two events are recorded but not yet read; never more than `cap` of them.

    Reading a pair (hardware_time) releases its events. Before admitting one pair too many, all
    pending pairs are read after one synchronize, so callers may time any number of reps.
    """

    def __init__(self, cap: int = MAX_EVENT_PAIRS):
        self.cap = cap
        self.pending: deque[MluEventTimer] = deque()
        self.high_water = 0

    def admit(self, timer: MluEventTimer) -> None:
        if len(self.pending) >= self.cap:
            self.drain(timer._mlu)
        self.pending.append(timer)
        self.high_water = max(self.high_water, len(self.pending))

    def drain(self, mlu) -> None:
        """One synchronize, then read (and release) every pending pair."""
        mlu.synchronize()
        while self.pending:
            self.pending.popleft()._read()


class MluEventTimer(Timer):
    """On-device time of the work between start() and stop(): `Event.hardware_time` is in µs."""

    def __init__(self, mlu, pairs: _EventPairs):
        self._mlu = mlu
        self._pairs = pairs
        self._ms: float | None = None
        self._start = self._end = None

    def start(self) -> None:
        self._ms = None
        self._pairs.admit(self)
        self._start = self._mlu.Event(enable_timing=True)
        self._end = self._mlu.Event(enable_timing=True)
        self._start.record()

    def stop(self) -> None:
        self._end.record()

    def _read(self) -> None:
        self._ms = self._start.hardware_time(self._end) / 1000.0
        self._start = self._end = None  # release the pair

    def elapsed_ms(self) -> float:
        if self._ms is None:
            if self._end is None:
                raise RuntimeError("elapsed_ms: the timer was never started and stopped")
            self._pairs.drain(self._mlu)  # reads this pair and every other pending one
        return self._ms


class MluGraph:
    """A captured MLU graph and the outputs its capture produced; `replay()` reruns it."""

    def __init__(self, graph, outputs):
        self.graph = graph
        self.outputs = outputs

    def replay(self):
        self.graph.replay()
        return self.outputs


class MluBackend(Backend):
    name = "mlu"
    device_type = "mlu"
    dispatch_key = "PrivateUse1"
    collective = "cncl"
    interpreted = False

    def __init__(self) -> None:
        self._pairs = _EventPairs()
        self._figures: dict[int, MluDevice] = {}

    def missing(self) -> str | None:
        mlu = _torch_mlu()
        if mlu is None:
            hint = " (cnmon is present: an MLU driver exists)" if shutil.which("cnmon") else ""
            return f"package torch_mlu is not installed{hint}"
        if not mlu.is_available():
            return "torch_mlu is installed but sees no MLU device (check the driver with cnmon)"
        return None

    # ---- device figures --------------------------------------------------------------------------

    def device_figures(self, index: int | None = None) -> MluDevice:
        """Cores and NRAM of the device: torch_mlu for the core count, BangUtils for NRAM.

        Without BangUtils (Triton's MLU backend absent) NRAM comes from the named figures whose name
        the device's name contains, else from the default device's figures; `confirmed` says which.
        """
        mlu = _torch_mlu()
        index = mlu.current_device() if index is None else index
        if index in self._figures:
            return self._figures[index]
        props = mlu.get_device_properties(index)
        bang = _bang_properties(index)
        cores = props.cluster_count * props.core_num_per_cluster
        known = next((d for key, d in mlu_devices.DEVICES.items() if key in str(props.name).upper()), None)
        if bang and bang.get("max_nram_size"):
            nram, source = int(bang["max_nram_size"]), "cores from torch_mlu, NRAM from BangUtils"
            bang_cores = bang.get("cluster_num", 0) * bang.get("core_num_per_cluster", 0)
            if bang_cores and bang_cores != cores:
                source += f" (BangUtils counts {bang_cores} cores)"
        else:
            fallback = known or mlu_devices.default_device()
            nram, source = fallback.nram_bytes, f"cores from torch_mlu, NRAM from the {fallback.name} figures"
        figures = MluDevice(
            name=str(props.name),
            clusters=props.cluster_count,
            cores_per_cluster=props.core_num_per_cluster,
            nram_bytes=nram,
            tf32=known.tf32 if known else False,
            fp8=False,
            confirmed=source,
        )
        self._figures[index] = figures
        return figures

    @property
    def capabilities(self) -> Capabilities:  # type: ignore[override]
        # No float64 in kernels, no int64 atomics (docs/mlu.md, rules `float64` and `atomic_dtype`).
        tf32 = self.device_figures().tf32 if self.is_available() else False
        return Capabilities(fp64=False, bf16=True, bf16_dot=True, tf32=tf32, fp8=False, int64_atomics=False)

    @property
    def policy(self) -> LaunchPolicy:  # type: ignore[override]
        figures = self.device_figures() if self.is_available() else mlu_devices.default_device()
        return figures.policy()

    def properties(self) -> DeviceProperties:
        mlu = _torch_mlu()
        index = mlu.current_device()
        props = mlu.get_device_properties(index)
        figures = self.device_figures(index)
        bang = _bang_properties(index) or {}
        return DeviceProperties(
            name=str(props.name),
            cores=figures.cores,
            memory_bytes=props.total_memory,
            extra={
                "cluster_count": props.cluster_count,
                "core_num_per_cluster": props.core_num_per_cluster,
                "nram_bytes": figures.nram_bytes,
                "figures_source": figures.confirmed,
                "dram_bandwidth": getattr(props, "dram_bandwidth", None),
                "isa_version": bang.get("isa_version"),
                "max_shared_mem": bang.get("max_shared_mem"),
            },
        )

    # ---- runtime ---------------------------------------------------------------------------------

    def synchronize(self) -> None:
        _torch_mlu().synchronize()

    def timer(self) -> Timer:
        return MluEventTimer(_torch_mlu(), self._pairs)

    def time_calls(
        self, fn: Callable[[], Any], reps: int, before: Callable[[], Any] | None = None
    ) -> list[float]:
        """Device ms of each of `reps` calls of `fn` (`before` runs untimed ahead of each, e.g. a cache
        flush). Any number of reps: at most MAX_EVENT_PAIRS pairs are ever recorded and unread."""
        if reps < 1:
            raise ValueError(f"reps: expected at least 1, got {reps}")
        timers = []
        for _ in range(reps):
            if before is not None:
                before()
            t = self.timer()
            t.start()
            fn()
            t.stop()
            timers.append(t)
        self.synchronize()
        return [t.elapsed_ms() for t in timers]

    # ---- collectives -----------------------------------------------------------------------------

    def collective_backends(self) -> tuple[str, ...]:
        """torch.distributed backends usable for MLU tensors, preferred first: cncl, then flagcx."""
        names = [self.collective]
        if importlib.util.find_spec("flagcx") is not None:
            names.append("flagcx")
        return tuple(names)

    def process_group_backend(self, use_flagcx: bool = False) -> str:
        """The `backend=` string for init_process_group: "cncl", or FlagCX for MLU with gloo for CPU."""
        if not use_flagcx:
            return self.collective
        if "flagcx" not in self.collective_backends():
            raise ValueError("use_flagcx: FlagCX's torch plugin (module flagcx) is not installed")
        return "cpu:gloo,mlu:flagcx"

    # ---- graphs ----------------------------------------------------------------------------------

    def graphs_available(self) -> bool:
        mlu = _torch_mlu()
        return mlu is not None and hasattr(mlu, "MLUGraph") and hasattr(mlu, "graph")

    def capture_graph(self, fn: Callable[[], Any], warmup: int = 1) -> MluGraph:
        """Run `fn` `warmup` times (compiles kernels, allocates), then capture one call into a graph."""
        if not self.graphs_available():
            raise NotImplementedError("this torch_mlu has no torch.mlu.MLUGraph / torch.mlu.graph")
        mlu = _torch_mlu()
        for _ in range(warmup):
            fn()
        mlu.synchronize()
        graph = mlu.MLUGraph()
        with mlu.graph(graph):
            outputs = fn()
        return MluGraph(graph, outputs)
