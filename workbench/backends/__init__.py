"""Device backends: `get(name)`, `detect()` and the process-wide `active()` backend.

Triton decides at kernel *definition* time whether a kernel is interpreted (TRITON_INTERPRET=1) or
compiled. To make a mix impossible, the backend is chosen once per process, by `active()`, before any
workbench kernel module is imported, and it sets TRITON_INTERPRET to match. Asking for a different
backend later raises instead of silently mixing modes.
"""

from __future__ import annotations

import os
import sys

from .base import Backend, BackendUnavailable, Capabilities, DeviceProperties, LaunchPolicy, Timer
from .cpu import CpuBackend
from .cuda import CudaBackend
from .mlu import MluBackend

__all__ = [
    "Backend",
    "BackendUnavailable",
    "Capabilities",
    "DeviceProperties",
    "LaunchPolicy",
    "Timer",
    "BACKENDS",
    "get",
    "detect",
    "active",
]

BACKENDS: dict[str, Backend] = {b.name: b for b in (CpuBackend(), CudaBackend(), MluBackend())}
ENV_VAR = "WORKBENCH_BACKEND"
_active: Backend | None = None


def get(name: str) -> Backend:
    """The backend called `name` (available or not)."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; expected one of {sorted(BACKENDS)}") from None


def detect() -> Backend:
    """$WORKBENCH_BACKEND if set (it must be available), else the first available of mlu > cuda > cpu.

    TRITON_INTERPRET=1 set by the user without WORKBENCH_BACKEND means cpu.
    """
    wanted = os.environ.get(ENV_VAR, "").strip()
    if wanted:
        return get(wanted).require()
    if os.environ.get("TRITON_INTERPRET") == "1":
        return get("cpu").require()
    for name in ("mlu", "cuda", "cpu"):
        if BACKENDS[name].is_available():
            return BACKENDS[name]
    return get("cpu").require()


def _check_triton_mode(chosen: Backend) -> None:
    """Triton's own library kernels are defined when triton.language is imported: they must match."""
    language = sys.modules.get("triton.language")
    if language is None:
        return
    interpreted = type(language.standard.sum).__name__ == "InterpretedFunction"
    if interpreted != chosen.interpreted:
        mode = "interpreted" if interpreted else "compiled"
        raise BackendUnavailable(
            f"triton was imported in {mode} mode before workbench chose backend {chosen.name!r}; "
            "import workbench before triton"
            + (" (or start Python with TRITON_INTERPRET=1)" if chosen.interpreted else "")
        )


def active(name: str | None = None) -> Backend:
    """The backend workbench kernels in this process run on, fixed by the first call.

    `name` (or $WORKBENCH_BACKEND) chooses it on the first call; later calls must agree.
    """
    global _active
    if _active is None:
        chosen = get(name).require() if name else detect()
        interpret = os.environ.get("TRITON_INTERPRET")
        if interpret == "1" and not chosen.interpreted:
            raise BackendUnavailable(
                f"TRITON_INTERPRET=1 is set but backend {chosen.name!r} compiles kernels; "
                f"unset TRITON_INTERPRET or use {ENV_VAR}=cpu"
            )
        _check_triton_mode(chosen)
        os.environ["TRITON_INTERPRET"] = "1" if chosen.interpreted else "0"
        _active = chosen
    elif name and name != _active.name:
        raise BackendUnavailable(
            f"workbench kernels in this process are bound to backend {_active.name!r}; "
            f"start a new process with {ENV_VAR}={name} to use {name!r}"
        )
    return _active
