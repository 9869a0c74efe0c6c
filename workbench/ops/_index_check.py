"""Out-of-range indices raise as they do in torch, from a flag the kernels set, read without waiting.

Kernels that read at an index (embedding, index_select, gather, cross_entropy's targets) take a pointer
to a one-element int32 flag per device and, under their CHECK constexpr, store 1 there from every lane
whose index is out of range: no extra pass over the data and no atomics (every such lane stores the same
value).

Where the flag lives decides what reading it costs. On CUDA it is pinned host memory, which the device
writes through unified addressing: the host reads it as plain memory, with no device synchronisation.
A wrapper reads it after its launch (`raise_if_set`): on the interpreter the kernel has run by then, so
the call itself raises; on a GPU the kernel usually has not, and the error is raised by the first checked
call, or `raise_pending()`, that sees the flag set: asynchronously, as CUDA's own device-side index
asserts are (torch's native kernels report those at a later synchronisation). The error names the call
that met the bad index: the last PENDING checked calls are kept, and on the error path the device is
synchronised and each is tested. A kept call holds its indices weakly: it must not keep them alive (a
CUDA graph's memory pool refuses a tensor that outlives the graph's call, such as the copy of a compiled
decode step's token ids), so an error whose indices are gone names the op without the index. `use_ops`
calls `raise_pending()` when it ends, so a run under the override cannot end with an unreported bad
index. Other device types keep the flag in device memory and read it after every launch, which waits
for the kernel (one synchronisation per call).

WORKBENCH_INDEX_CHECK=0 turns the check off: the kernels skip the store at compile time, nobody reads
the flag, and an out-of-range index then reads nothing (0, a NaN embedding row, a NaN loss). The flag in
host memory also works during CUDA graph capture and replay (no read waits for the device).
"""

from __future__ import annotations

import collections
import os
import weakref
from collections.abc import Callable

import torch
import triton
import triton.language as tl

ENABLED: bool = os.environ.get("WORKBENCH_INDEX_CHECK", "1") != "0"
PENDING = 64  # checked calls kept to name the one that set the flag

_flags: dict[torch.device, tuple[torch.Tensor, object]] = {}  # device -> (flag, its host view or None)
# (op, message or None when its indices are in range) of the last checked calls, oldest first
_pending: collections.deque = collections.deque(maxlen=PENDING)


class IndexOutOfRange(IndexError, RuntimeError):
    """An index outside its dim. torch raises IndexError for embedding, index_select and cross_entropy
    targets and RuntimeError for gather: this is both, so either `except` catches it."""


def _new_flag(device: torch.device) -> tuple[torch.Tensor, object]:
    if device.type == "cpu":  # the interpreter: host memory already
        buf = torch.zeros(1, dtype=torch.int32)
        return buf, buf.numpy()
    if device.type == "cuda":
        buf = torch.zeros(1, dtype=torch.int32, pin_memory=True)
        # No probe can run inside a CUDA graph capture (it synchronises): the host flag is taken as is.
        if torch.cuda.is_current_stream_capturing() or _device_writes(buf, device):
            return buf, buf.numpy()
    return torch.zeros(1, dtype=torch.int32, device=device), None


@triton.jit
def _set_kernel(flag_ptr):
    tl.store(flag_ptr, 1)


def _device_writes(buf: torch.Tensor, device: torch.device) -> bool:
    """Whether a kernel on `device` can store into the pinned host buffer `buf` (unified addressing):
    tried once per device; else the flag stays in device memory and is read with a wait."""
    try:
        with torch.cuda.device(device):
            _set_kernel[(1,)](buf)
            torch.cuda.synchronize(device)
    except Exception:  # noqa: BLE001 (a driver that refuses the host pointer: the device flag then)
        return False
    written = bool(buf[0])
    buf.zero_()
    return written


def flag(device: torch.device) -> torch.Tensor:
    """The flag the kernels on `device` store into (int32, one element, zero unless a checked launch met
    a bad index since the last report)."""
    entry = _flags.get(device)
    if entry is None:
        entry = _flags[device] = _new_flag(device)
    return entry[0]


def checking(t: torch.Tensor) -> bool:
    """Whether a launch on `t`'s device checks its indices (the CHECK constexpr) and must be followed
    by `raise_if_set`: on every device while the check is on (a host flag needs no wait, so CUDA graph
    capture keeps it too)."""
    return ENABLED


def raise_if_set(device: torch.device, message: Callable[[], str | None], op: str) -> None:
    """After a checked launch on `device`: remember the call (`message()` says what its bad index is, or
    None when it has none) and raise IndexOutOfRange if the flag is set, now (host flag: no wait) or once
    the kernel is done (device flag: this read waits for it)."""
    _pending.append((op, message))
    buf, view = _flags[device]
    if view is None:
        # A device flag: the read waits for the device, which a CUDA graph capture cannot; the flag is then
        # read by the next checked call outside it, or by raise_pending.
        if not (buf.is_cuda and torch.cuda.is_current_stream_capturing()) and buf.item():
            _report(device)
    elif view[0]:
        _report(device)


def raise_pending() -> None:
    """Wait for the devices and raise IndexOutOfRange if a checked launch met a bad index that no call
    has reported yet."""
    if not _pending:  # no checked call since the last report or confirmation
        return
    for device, (buf, view) in list(_flags.items()):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if view[0] if view is not None else buf.item():
            _report(device)
    _pending.clear()  # every kept call's kernel is done and set no flag


def _report(device: torch.device) -> None:
    """Raise for `device`'s set flag, naming the kept call whose indices are out of range (the device is
    waited for first, so that their values are final)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    buf, view = _flags[device]
    calls = list(_pending)
    _pending.clear()
    if view is not None:
        view[0] = 0
    else:
        buf.zero_()
    for _, message in calls:
        text = message()
        if text is not None:
            raise IndexOutOfRange(text)
    ops = ", ".join(sorted({op for op, _ in calls})) or "an indexing op"
    raise IndexOutOfRange(
        f"{ops}: index out of range in self: a checked call met an index outside its dimension (its "
        f"indices are freed, or it came before the last {PENDING} checked calls)"
    )


def held_weakly(t: torch.Tensor) -> Callable[[], torch.Tensor | None]:
    """A function giving `t` back while the tensor that owns its memory (its base, for a view made inside
    an op) is alive, else None: a kept call must not keep its indices alive."""
    if t._base is None:
        return weakref.ref(t)
    owner = weakref.ref(t._base)
    size, stride, offset = t.size(), t.stride(), t.storage_offset()

    def get() -> torch.Tensor | None:
        base = owner()
        return None if base is None else base.as_strided(size, stride, offset)

    return get


def first_outside(index: torch.Tensor | None, size: int, allowed: int | None = None) -> int | None:
    """The first value of `index` outside [0, size) other than `allowed`, or None (None too for no
    `index`: a weakly held one that is gone)."""
    if index is None:
        return None
    bad = (index < 0) | (index >= size)
    if allowed is not None:
        bad &= index != allowed
    found = index[bad]
    return int(found.flatten()[0]) if found.numel() else None


def out_of_bounds(op: str, index: torch.Tensor, dim: int, size: int) -> Callable[[], str | None]:
    """The message of an index outside dim `dim` of size `size`, in torch's words (both its phrasings),
    or None when `index` has none (or is freed by then: it is held weakly)."""
    index = held_weakly(index)

    def message() -> str | None:
        bad = first_outside(index(), size)
        return (
            None
            if bad is None
            else (
                f"{op}: index out of range in self: index {bad} is out of bounds "
                f"for dimension {dim} with size {size}"
            )
        )

    return message
