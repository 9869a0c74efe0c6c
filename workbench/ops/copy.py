"""copy: a converted copy `x.to(dtype, copy=True)` (ATen _to_copy), and in-place `dst.copy_(src)`.

Both run the strided copy kernel of _movement: any dtype pair among float32/16, bfloat16, ints and bool,
src broadcast to dst, strided destinations. The result of `copy` keeps x's strides where torch's
preserve_format does (dense inputs), so a transposed input gives a transposed output, as natively.
"""

import torch

from ._common import Plans, check_tensor, is_on_device, new_output_as, new_output_like
from ._elementwise import BIG, BLOCK
from ._launch import Site, aligned
from ._movement import MOVE_DTYPES, _copy_kernel, copy_into
from ._shapes import cdiv
from .mlu.persistent import persistent
from .spec import Case, Cost, OpSpec, Unsupported, nbytes, randn, register


def prepare(
    x: torch.Tensor,
    dtype: torch.dtype | None = None,
    memory_format: torch.memory_format = torch.preserve_format,
) -> torch.Tensor:
    """Validate copy's arguments and allocate its output (shared by the generic op and its variants)."""
    check_tensor("x", x, MOVE_DTYPES)
    dtype = x.dtype if dtype is None else dtype
    if dtype not in MOVE_DTYPES:
        names = ", ".join(str(d).replace("torch.", "") for d in MOVE_DTYPES)
        raise TypeError(f"dtype: expected one of ({names}), got {str(dtype).replace('torch.', '')}")
    return new_output_like(x, dtype, memory_format)


def copy(
    x: torch.Tensor,
    dtype: torch.dtype | None = None,
    *,
    memory_format: torch.memory_format = torch.preserve_format,
) -> torch.Tensor:
    if (
        is_on_device(x, MOVE_DTYPES)
        and (dtype is None or dtype in MOVE_DTYPES)
        and x.is_contiguous()
        and memory_format in _DENSE
        and not persistent()
    ):
        # The common case in a few reads: a contiguous x into a new contiguous output (no overlap to
        # check), one flat range, with the arguments copy_into's layout gives it (one compiled kernel).
        out = new_output_as(x, dtype)
        n = out.numel()
        if n:
            key = (x.dtype, out.dtype, n)
            site = _flat_sites.get(key)
            if site is None:
                site = Site(
                    _copy_kernel,
                    CONTIGUOUS=True,
                    BLOCK=BLOCK,
                    TO_BF16=out.dtype == torch.bfloat16 and x.dtype != torch.bfloat16,
                )
                _flat_sites.put(key, site)
            site((cdiv(n, BLOCK),), x, out, n, 1, 1, n, 0, 0, 0, 1, 0, 0, 0, 1, aligned=aligned(x))
        return out
    return copy_into(prepare(x, dtype, memory_format), x)


_DENSE = (torch.preserve_format, torch.contiguous_format)
# The fast path's launches by (input dtype, output dtype, size): a Site skips the launch cache's key of
# 13 arguments; a decode step repeats a few sizes.
_flat_sites = Plans()


copy.into = copy_into  # the in-place form (aten::copy_); a variant sets its own launcher's


def _reference(x, dtype=None, *, memory_format=torch.preserve_format):
    return x.to(dtype=dtype, copy=True, memory_format=memory_format)


def _aten_to_copy(
    impl,
    self,
    *,
    dtype=None,
    layout=None,
    device=None,
    pin_memory=None,
    non_blocking=False,
    memory_format=None,
):
    """aten::_to_copy: a dtype change (or plain copy) on the same device; other requests fall back."""
    if not isinstance(self, torch.Tensor):  # a scalar that a native kernel wrapped: nothing to launch for
        raise Unsupported(f"self is a Python {type(self).__name__} (a wrapped scalar), not a tensor")
    if layout not in (None, torch.strided):
        raise Unsupported(f"layout {layout} (only strided tensors)")
    if device is not None:
        device = torch.device(device)
        if device.type != self.device.type or (
            device.index is not None and device.index != self.device.index
        ):
            raise Unsupported(f"device change {self.device} -> {device} is a transfer, not a kernel")
    if pin_memory:
        raise Unsupported("pin_memory=True (host memory)")
    return impl(self, dtype, memory_format=memory_format or torch.preserve_format)


def _aten_copy_(impl, self, src, non_blocking=False):
    """aten::copy_(self, src, non_blocking): in place into self, which it returns, with the launcher of the
    backend's implementation (a variant without one, e.g. a promoted candidate, gets the generic one)."""
    return getattr(impl, "into", copy_into)(self, src)


def _cost(x, dtype=None, **_):
    out = torch.empty(0, dtype=dtype or x.dtype).element_size() * x.numel()
    return Cost(bytes=nbytes(x) + out, flops=0)


def _case(name, shape, to, transform=None, src=None, big=False, **kwargs):
    """`to`: a dtype, or a function of the case dtype (e.g. the other half precision); `src`: x's dtype
    instead of the case's."""

    def make(d, dev, g):
        x = randn(shape, src or d, dev, g, scale=4.0)
        target = to(d) if callable(to) else to
        return ((transform(x) if transform else x), target), dict(kwargs)

    return Case(name, make, big=big)


def _other_half(d):
    return torch.float16 if d != torch.float16 else torch.bfloat16


SPEC = register(
    OpSpec(
        name="copy",
        reference=_reference,
        impl=copy,
        cases={
            "quick": lambda: [
                _case("to fp32 64x300", (64, 300), torch.float32),
                _case("to half 1000", (1000,), _other_half),
            ],
            "edge": lambda: [
                _case("same dtype (plain copy) 5x7", (5, 7), None),
                _case(
                    "transposed keeps its strides 33x65", (65, 33), torch.float32, transform=lambda x: x.t()
                ),
                _case(
                    "rank5 permuted keeps its strides",
                    (2, 3, 4, 5, 6),
                    torch.bfloat16,
                    transform=lambda x: x.permute(4, 2, 0, 3, 1),
                ),
                _case(
                    "strided slice x[:, ::2] to fp32", (8, 50), torch.float32, transform=lambda x: x[:, ::2]
                ),
                _case(
                    "contiguous_format from transposed",
                    (30, 20),
                    torch.float16,
                    transform=lambda x: x.t(),
                    memory_format=torch.contiguous_format,
                ),
                _case("to int32 (truncates)", (9, 31), torch.int32),
                _case("to bool", (9, 31), torch.bool),
                _case("zero-size 0x16", (0, 16), torch.float32),
                _case(f"big {BIG} to fp16", (BIG,), torch.float16, big=True),
            ],
            "llm": lambda: [
                _case("rms_norm upcast 2048x4096 to fp32", (2048, 4096), torch.float32),
                _case("decode hidden 64x4096 to fp32", (64, 4096), torch.float32),
                _case("logits 64x151936 to fp32", (64, 151936), torch.float32),
                _case("downcast 2048x4096 fp32 -> case dtype", (2048, 4096), lambda d: d, src=torch.float32),
            ],
        },
        cost=_cost,
        aten_impls={"aten::_to_copy": _aten_to_copy, "aten::copy_": _aten_copy_},
    )
)
