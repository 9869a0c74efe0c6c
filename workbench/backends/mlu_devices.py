"""Named Cambricon MLU device figures, and the MLU that mlu-style kernels size their launches for.

An mlu-style kernel launches as many programs as the device has cores (or clusters) and sizes its
blocks from on-chip NRAM, so it must know the core count and the NRAM size. On a real MLU they come
from the device (`MluBackend`); anywhere else (the cpu interpreter, a CUDA GPU, the MLU launch-rules
profile) they come from one of the named figures below, chosen by `targeting()` or
$WORKBENCH_MLU_DEVICE, default MLU590.

Where the figures come from:
- NRAM per core: Cambricon/mlu-ops `build.sh` help text (commit fe6a636): `--mlu370`:
  `__MLU_NRAM_SIZE__ = 768KB`; `--mlu590`: `__MLU_NRAM_SIZE__ = 512KB`. Confirmed from that source.
- tf32 in tl.dot: Cambricon/mlu-ops test executor `isPlatformSupportTf32()` returns true only for
  MLU590 (MLU370: false). Confirmed from that source, for mlu-ops' own kernels.
- Clusters x cores per cluster: NOT CONFIRMED. MLU370 8 x 4 = 32 and MLU590 12 x 4 = 48 are working
  assumptions (4 IPU cores per cluster is the usual MLU layout); on hardware the adapter reads the
  real figures from torch_mlu / BangUtils. Override them with `--cores` or `MluDevice.with_overrides()`.
- fp8 in tl.dot: NOT CONFIRMED for either chip; assumed absent.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace

from .base import LaunchPolicy

ENV_VAR = "WORKBENCH_MLU_DEVICE"
DEFAULT = "MLU590"
LEGAL_NUM_WARPS = (1, 4)  # docs/mlu.md: num_warps is the task shape; 1 and 4 are the legal values


@dataclass(frozen=True)
class MluDevice:
    """The figures of one MLU that launch rules and mlu-style kernels depend on."""

    name: str
    clusters: int
    cores_per_cluster: int
    nram_bytes: int  # on-chip NRAM of one core: the budget of one program
    tf32: bool = False  # tl.dot on fp32 operands may use input_precision="tf32"
    fp8: bool = False  # tl.dot accepts fp8 operands
    confirmed: str = ""  # which figures were confirmed from a source, in words

    @property
    def cores(self) -> int:
        return self.clusters * self.cores_per_cluster

    def policy(self) -> LaunchPolicy:
        return LaunchPolicy(
            max_programs=self.cores,
            num_warps=LEGAL_NUM_WARPS,
            onchip_bytes=self.nram_bytes,
            block_scale=16,
            persistent=True,
        )

    def with_overrides(self, cores: int | None = None, nram_bytes: int | None = None) -> MluDevice:
        """The same device with another core count and/or NRAM size (named as custom)."""
        if cores is None and nram_bytes is None:
            return self
        if cores is not None and (not isinstance(cores, int) or cores < 1):
            raise ValueError(f"cores: expected a positive integer, got {cores!r}")
        if nram_bytes is not None and (not isinstance(nram_bytes, int) or nram_bytes < 1024):
            raise ValueError(f"nram_bytes: expected an integer of at least 1024, got {nram_bytes!r}")
        parts = [self.name]
        changes = {}
        if cores is not None:
            parts.append(f"cores={cores}")
            changes.update(clusters=cores, cores_per_cluster=1)
        if nram_bytes is not None:
            parts.append(f"nram={nram_bytes // 1024}KiB")
            changes["nram_bytes"] = nram_bytes
        return replace(self, name=" ".join(parts), confirmed=self.confirmed + "; overridden", **changes)


DEVICES: dict[str, MluDevice] = {
    "MLU370": MluDevice(
        "MLU370",
        clusters=8,
        cores_per_cluster=4,
        nram_bytes=768 * 1024,
        tf32=False,
        confirmed="NRAM and tf32 from mlu-ops; core count unconfirmed",
    ),
    "MLU590": MluDevice(
        "MLU590",
        clusters=12,
        cores_per_cluster=4,
        nram_bytes=512 * 1024,
        tf32=True,
        confirmed="NRAM and tf32 from mlu-ops; core count unconfirmed",
    ),
}

_pinned: MluDevice | None = None


def device(name: str) -> MluDevice:
    """The named device figures (case-insensitive: 'mlu590', 'MLU590')."""
    key = name.upper()
    if key not in DEVICES:
        raise ValueError(f"MLU device: expected one of {sorted(DEVICES)}, got {name!r}")
    return DEVICES[key]


def default_device() -> MluDevice:
    return device(os.environ.get(ENV_VAR, DEFAULT))


@contextlib.contextmanager
def targeting(dev: MluDevice) -> Iterator[MluDevice]:
    """Inside, mlu-style kernels size their launches for `dev` (used by the MLU launch-rules profile)."""
    global _pinned
    previous, _pinned = _pinned, dev
    try:
        yield dev
    finally:
        _pinned = previous


def target() -> MluDevice:
    """The MLU that mlu-style kernels launch for now: pinned by `targeting()`, else the real device on
    the mlu backend, else $WORKBENCH_MLU_DEVICE (default MLU590)."""
    if _pinned is not None:
        return _pinned
    from . import active

    backend = active()
    if backend.name == "mlu":
        return backend.device_figures()
    return default_device()
