"""Out-of-range indices raise as they do in torch, from a flag the kernels set on the device.

Kernels that read at an index (embedding, index_select, gather, cross_entropy's targets) take a pointer
to a one-element int32 buffer per device and, under their CHECK constexpr, store 1 there from every lane
whose index is out of range: no extra pass over the data and no atomics (every such lane stores the same
value). After the launch the wrapper reads the flag (`raise_if_set`); on a GPU that read waits for the
kernel, i.e. one device synchronisation per call. The flag is reset only after it was set, so a clean
call costs that read and nothing else. docs/ops.md gives the measured cost.

WORKBENCH_INDEX_CHECK=0 turns the check off: the kernels skip the store at compile time, nobody reads
the flag, and an out-of-range index then reads nothing (0, a NaN embedding row, a NaN loss). While a
CUDA graph is being captured the check is off too: a capture cannot synchronise.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

ENABLED: bool = os.environ.get("WORKBENCH_INDEX_CHECK", "1") != "0"

_flags: dict[torch.device, torch.Tensor] = {}


class IndexOutOfRange(IndexError, RuntimeError):
    """An index outside its dim. torch raises IndexError for embedding, index_select and cross_entropy
    targets and RuntimeError for gather: this is both, so either `except` catches it."""


def flag(device: torch.device) -> torch.Tensor:
    """The device's flag buffer (int32, one element, zero unless a checked launch met a bad index)."""
    buf = _flags.get(device)
    if buf is None:
        buf = _flags[device] = torch.zeros(1, dtype=torch.int32, device=device)
    return buf


def checking(t: torch.Tensor) -> bool:
    """Whether a launch on `t`'s device checks its indices (the CHECK constexpr) and must be followed
    by `raise_if_set`."""
    return ENABLED and not (t.is_cuda and torch.cuda.is_current_stream_capturing())


def raise_if_set(buf: torch.Tensor, message: Callable[[], str]) -> None:
    """Raise IndexOutOfRange(message()) if a checked launch set `buf`; the message is built only then
    (it may look for the offending index, which costs another pass)."""
    if buf.item():  # the device synchronisation the check costs
        buf.zero_()
        raise IndexOutOfRange(message())


def first_outside(index: torch.Tensor, size: int, allowed: int | None = None) -> str:
    """The first value of `index` outside [0, size) other than `allowed`, as text for an error message
    ("?" if there is none: another launch on the device set the flag)."""
    bad = (index < 0) | (index >= size)
    if allowed is not None:
        bad &= index != allowed
    found = index[bad]
    return str(int(found.flatten()[0])) if found.numel() else "?"


def out_of_bounds(op: str, index: torch.Tensor, dim: int, size: int) -> Callable[[], str]:
    """The message of an index outside dim `dim` of size `size`, in torch's words (both its phrasings)."""
    return lambda: (f"{op}: index out of range in self: index {first_outside(index, size)} is out of bounds "
                    f"for dimension {dim} with size {size}")
