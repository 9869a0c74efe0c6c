"""Who talks to whom: collective backend per device type, process-group start-up, cluster layout.

Processes are started by `torchrun` (or anything that sets its env: RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT); we never launch processes ourselves. Each rank has one device. Ranks are
grouped into clusters by a key — the device type unless the caller names one — and a job whose ranks
all share one key is *flat*; otherwise it is *hierarchical* (workbench.comm.hierarchical).
"""

from __future__ import annotations

import datetime
import importlib
import importlib.util
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from workbench import backends

ENV_COLLECTIVE = "WORKBENCH_COLLECTIVE"


def _flagcx_available() -> bool:
    """True when the flagcx package is importable and, once imported, registered a torch backend."""
    if importlib.util.find_spec("flagcx") is None:
        return False
    try:
        importlib.import_module("flagcx")  # registers the "flagcx" torch.distributed backend
    except Exception:  # noqa: BLE001 - a broken flagcx install must not stop the native path
        return False
    return "flagcx" in dist.Backend.backend_list


def collective_backend(device_type: str) -> str:
    """torch.distributed backend for tensors on `device_type`.

    $WORKBENCH_COLLECTIVE wins; then flagcx for accelerators when it is installed; else the device
    backend's own `collective` (cpu -> gloo, cuda -> nccl, mlu -> cncl).
    """
    forced = os.environ.get(ENV_COLLECTIVE, "").strip()
    if forced:
        return forced
    backend = next((b for b in backends.BACKENDS.values() if b.device_type == device_type), None)
    if backend is None:
        known = sorted(b.device_type for b in backends.BACKENDS.values())
        raise ValueError(f"device: expected a device type in {known}, got {device_type!r}")
    if device_type != "cpu" and _flagcx_available():
        return "flagcx"
    return backend.collective


def _env_int(name: str, default: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise RuntimeError(f"${name} is not set: start the job with torchrun (or set its environment)")
        return default
    return int(value)


def default_device() -> torch.device:
    """This rank's device: the detected backend's device type, index $LOCAL_RANK on accelerators."""
    backend = backends.detect()
    if backend.device_type == "cpu":
        return torch.device("cpu")
    local = _env_int("LOCAL_RANK", 0)
    count = _device_count(backend.device_type)
    return torch.device(backend.device_type, local % max(count, 1))


def _device_count(device_type: str) -> int:
    module = getattr(torch, device_type, None)
    return int(module.device_count()) if module is not None and hasattr(module, "device_count") else 0


def parse_device(device: str | torch.device | None) -> torch.device:
    """A full device (with index on accelerators, from $LOCAL_RANK when missing)."""
    if device is None:
        return default_device()
    device = torch.device(device)
    if device.type != "cpu" and device.index is None:
        count = _device_count(device.type)
        device = torch.device(device.type, _env_int("LOCAL_RANK", 0) % max(count, 1))
    return device


def as_timedelta(timeout: float | datetime.timedelta) -> datetime.timedelta:
    if isinstance(timeout, datetime.timedelta):
        return timeout
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"timeout: expected a positive number of seconds, got {timeout!r}")
    return datetime.timedelta(seconds=float(timeout))


def init_from_env(device: torch.device, collective: str, timeout: datetime.timedelta) -> bool:
    """Start the default process group from torchrun's environment unless one exists.

    The default group gets gloo for CPU tensors plus the device's collective for its tensors. No
    `device_id` is passed: that would create the device communicator eagerly over *all* ranks, which a
    heterogeneous job (some ranks without that device) could never complete. Returns True if it started one.
    """
    if dist.is_initialized():
        return False
    if device.type != "cpu":
        getattr(torch, device.type).set_device(device)
    spec = "gloo" if device.type == "cpu" else f"cpu:gloo,{device.type}:{collective}"
    dist.init_process_group(
        backend=spec,
        init_method="env://",
        rank=_env_int("RANK"),
        world_size=_env_int("WORLD_SIZE"),
        timeout=timeout,
    )
    return True


@dataclass(frozen=True)
class Cluster:
    """Ranks that share one device type and talk through its native collective."""

    key: str
    device_type: str
    collective: str
    ranks: tuple[int, ...]  # ascending global ranks

    @property
    def leader(self) -> int:
        return self.ranks[0]

    @property
    def size(self) -> int:
        return len(self.ranks)


@dataclass(frozen=True)
class Topology:
    """All clusters of a job, ordered by their lowest rank."""

    clusters: tuple[Cluster, ...]

    @property
    def hierarchical(self) -> bool:
        return len(self.clusters) > 1

    @property
    def world_size(self) -> int:
        return sum(c.size for c in self.clusters)

    def cluster_of(self, rank: int) -> Cluster:
        for c in self.clusters:
            if rank in c.ranks:
                return c
        raise ValueError(f"rank: expected a rank in [0, {self.world_size}), got {rank}")

    @property
    def leaders(self) -> tuple[int, ...]:
        return tuple(c.leader for c in self.clusters)

    @classmethod
    def from_ranks(cls, entries: list[tuple[str, str, str]]) -> Topology:
        """Build from one (cluster key, device type, collective) per rank, in rank order.

        Raises ValueError when ranks of one cluster disagree on device type or collective; every rank
        sees the same entries, so every rank raises the same error.
        """
        by_key: dict[str, list[int]] = {}
        for rank, (key, _, _) in enumerate(entries):
            by_key.setdefault(key, []).append(rank)
        clusters = []
        for key, ranks in by_key.items():
            kinds = {entries[r][1:] for r in ranks}
            if len(kinds) != 1:
                detail = ", ".join(f"rank {r}: {entries[r][1]}/{entries[r][2]}" for r in ranks)
                raise ValueError(
                    f"cluster: ranks of cluster {key!r} must share one device type and "
                    f"collective, got {detail}"
                )
            device_type, collective = next(iter(kinds))
            clusters.append(Cluster(key, device_type, collective, tuple(ranks)))
        return cls(tuple(sorted(clusters, key=lambda c: c.leader)))
