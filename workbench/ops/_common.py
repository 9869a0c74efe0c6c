"""Input validation and output allocation shared by every op wrapper.

Errors name the argument and say what was expected and what was given: TypeError for a wrong type or
dtype, ValueError for a wrong device or shape, RuntimeError for a number that does not fit a dtype (as
torch's own).
"""

from __future__ import annotations

import contextlib
import functools
import math

import torch

from workbench import backends

from .mlu.persistent import persistent
from .spec import FLOAT_DTYPES

_poison = False


@functools.cache
def _device_flag() -> tuple[backends.Backend, str | None]:
    """(the active backend, the Tensor property saying a tensor is on its device type ("is_cuda") where
    torch has one: several times cheaper than `t.device.type`). The backend is fixed per process."""
    backend = backends.active()
    name = f"is_{backend.device_type}"
    return backend, (name if hasattr(torch.Tensor, name) else None)


def check_tensor(name: str, t, dtypes=FLOAT_DTYPES) -> torch.Tensor:
    """`t` must be a tensor of one of `dtypes` on the active backend's device type."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in dtypes:
        names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name}: expected dtype in ({names}), got {str(t.dtype).replace('torch.', '')}")
    backend, flag = _device_flag()
    if not (getattr(t, flag) if flag else t.device.type == backend.device_type):
        raise ValueError(
            f"{name}: expected a tensor on device type {backend.device_type!r} "
            f"(workbench backend {backend.name!r}), got a tensor on {t.device}"
        )
    return t


def is_on_device(t, dtypes=FLOAT_DTYPES) -> bool:
    """Whether `check_tensor(name, t, dtypes)` accepts `t`, in a few attribute reads: the test that opens
    the fast paths of decode-sized calls (anything else takes the checked path, which says what is wrong)."""
    if not isinstance(t, torch.Tensor) or t.dtype not in dtypes:
        return False
    backend, flag = _device_flag()
    return getattr(t, flag) if flag else t.device.type == backend.device_type


def geometry(*tensors) -> tuple | None:
    """(shape, strides, dtype, device) of each tensor: the key of a per-geometry plan (`Plans`); None when
    an argument is not a tensor (the checked path then names it)."""
    try:  # a list, not a generator: a third less time, paid on every call of an op with plans
        return tuple([(t.shape, t.stride(), t.dtype, t.device) for t in tensors])
    except AttributeError:
        return None


class Plans(dict):
    """An op's launch plans by input geometry: what its checks, layout and launch sizing worked out for
    one geometry (sizes, strides, grid, constexprs), so that a repeated call skips that work. Only
    geometries whose checks passed get a plan. Cleared when full: a generate loop's growing KV length
    must not grow it forever."""

    def __init__(self, limit: int = 1024):
        super().__init__()
        self.limit = limit

    def get(self, key, default=None):
        """The plan of `key`; none in the persistent launch style, whose launches plans do not hold."""
        return default if persistent() else dict.get(self, key, default)

    def put(self, key, plan) -> None:
        if key is None or persistent():
            return
        if len(self) >= self.limit:
            self.clear()
        self[key] = plan


def check_same_device(**tensors: torch.Tensor) -> None:
    """All named tensors live on one device (0-dim CPU tensors excepted, as in torch)."""
    items = [(n, t) for n, t in tensors.items() if isinstance(t, torch.Tensor) and t is not None]
    if not items:
        return
    first_name, first = items[0]
    for name, t in items[1:]:
        if t.device != first.device:
            raise ValueError(f"{name}: expected a tensor on {first.device} like {first_name}, got {t.device}")


def check_dtype_match(name: str, t: torch.Tensor, expected: torch.dtype, other: str) -> None:
    if t.dtype != expected:
        raise TypeError(f"{name}: expected dtype {expected} to match {other}, got {t.dtype}")


def as_tensor_operand(name: str, value, like: torch.Tensor) -> torch.Tensor:
    """A tensor operand; a 0-dim CPU tensor moves to `like`'s device, as torch allows for scalars."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a tensor or a number, got {type(value).__name__}")
    if value.dim() == 0 and value.device.type == "cpu" and like.device.type != "cpu":
        return value.to(like.device)
    return value


@functools.cache
def _range(dtype: torch.dtype) -> tuple[float | int, float | int]:
    info = torch.finfo(dtype) if dtype.is_floating_point else torch.iinfo(dtype)
    return info.min, info.max


def scalar_as(op: str, name: str, value, dtype: torch.dtype) -> int | float:
    """The Python number `value` converted to `dtype` as torch converts a scalar argument it checks
    (fill, masked_fill, where, alpha): a float for a float dtype, an int (truncated) for an integer one.

    Raises RuntimeError, as torch does, for a finite value outside the dtype's range (no rounding: torch
    refuses 65519 for float16 too) and for NaN or inf into an integer dtype; floats keep inf and NaN.
    """
    if not isinstance(value, (int, float)):  # bool is an int
        raise TypeError(f"{op}: {name}: expected a real number, got {type(value).__name__}")
    if dtype == torch.bool:
        return bool(value)
    lo, hi = _range(dtype)
    if dtype.is_floating_point:
        if not math.isfinite(value) or lo <= value <= hi:
            return float(value)
    elif math.isfinite(value) and lo <= value <= hi:
        return int(value)
    raise RuntimeError(
        f"{op}: {name} {value} cannot be converted to type {str(dtype).replace('torch.', '')} "
        f"without overflow"
    )


@contextlib.contextmanager
def poisoned_outputs():
    """Inside, every output an op allocates starts as NaN (integers: their minimum), so unwritten
    elements show up in checks."""
    global _poison
    previous, _poison = _poison, True
    try:
        yield
    finally:
        _poison = previous


def _poisoned(out: torch.Tensor) -> torch.Tensor:
    if out.is_floating_point():
        out.fill_(float("nan"))
    elif out.dtype != torch.bool:
        out.fill_(torch.iinfo(out.dtype).min)
    return out


def new_output(shape, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    out = torch.empty(shape, dtype=dtype, device=device)
    return _poisoned(out) if _poison else out


def new_output_of(like: torch.Tensor, shape, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A contiguous output of `shape` on `like`'s device, in `like`'s dtype unless given: `new_empty`
    parses fewer arguments than torch.empty(shape, dtype=..., device=...), a few µs per call."""
    out = (
        like.new_empty(shape) if dtype is None or dtype == like.dtype else like.new_empty(shape, dtype=dtype)
    )
    return _poisoned(out) if _poison else out


def new_output_as(x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A contiguous output of `x`'s shape and device (and dtype, unless given). For a contiguous `x` it
    comes from empty_like, which skips torch.empty's argument parsing: several µs per call, which
    decode-sized ops called thousands of times per token feel."""
    if not x.is_contiguous():
        return new_output(x.shape, dtype or x.dtype, x.device)
    out = torch.empty_like(x) if dtype is None or dtype == x.dtype else torch.empty_like(x, dtype=dtype)
    return _poisoned(out) if _poison else out


def new_output_like(
    x: torch.Tensor, dtype: torch.dtype, memory_format: torch.memory_format = torch.preserve_format
) -> torch.Tensor:
    """Like `new_output`, with `x`'s strides where torch's empty_like keeps them (dense inputs)."""
    out = torch.empty_like(x, dtype=dtype, memory_format=memory_format)
    if _poison:
        out.copy_(new_output(out.shape, dtype, out.device))  # the same poison values
    return out
