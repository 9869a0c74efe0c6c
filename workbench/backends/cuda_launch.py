"""Direct launches of already-compiled Triton kernels through the CUDA driver's cuLaunchKernel.

Triton's own launcher (3.x) pays, on every call, a Python wrapper that sizes scratch buffers and C code
that calls each tensor's `data_ptr()` and validates it with `cuPointerGetAttribute` before launching.
For decode-sized ops that is most of the host cost of a call. `DirectLauncher` keeps one ctypes slot
per kernel parameter, fills the slots and calls cuLaunchKernel. The parameter layout is Triton's:
runtime arguments in signature order with constexprs left out, then the global and profile scratch
pointers. Kernels that need anything more (scratch memory, clusters, cooperative or PDL launches,
tensor descriptors, tuple or half-precision scalar arguments) get no DirectLauncher and keep Triton's
launcher; so does everything when libcuda cannot be loaded.
"""

from __future__ import annotations

import ctypes
import functools

import torch

# Kernel parameter type (Triton signature string) -> the C type the kernel reads.
_SCALAR_SLOTS = {
    "i1": ctypes.c_int8, "i8": ctypes.c_int8, "i16": ctypes.c_int16, "i32": ctypes.c_int32,
    "i64": ctypes.c_int64, "u1": ctypes.c_uint8, "u8": ctypes.c_uint8, "u16": ctypes.c_uint16,
    "u32": ctypes.c_uint32, "u64": ctypes.c_uint64, "fp32": ctypes.c_float, "f32": ctypes.c_float,
}


@functools.cache
def _cu_launch_kernel():
    """libcuda's cuLaunchKernel with its argument types declared, or None without a driver library."""
    try:
        fn = ctypes.CDLL("libcuda.so.1").cuLaunchKernel
    except (OSError, AttributeError):
        return None
    u = ctypes.c_uint
    fn.argtypes = [ctypes.c_void_p, u, u, u, u, u, u, u, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    fn.restype = ctypes.c_int
    return fn


class DirectLauncher:
    """Launches one compiled kernel specialisation; `__call__(grid, stream, args)` with the runtime args."""

    def __init__(self, compiled, types: list[str], cu_launch_kernel):
        md = compiled.metadata
        self._function = compiled.function
        self._threads = 32 * md.num_warps
        self._shared = md.shared
        self._launch = cu_launch_kernel
        # (position in args, slot, is_pointer) for every parameter the kernel receives
        self._fills = []
        slots = []
        for i, ty in enumerate(types):
            if ty == "constexpr":
                continue
            slot = ctypes.c_uint64(0) if ty.startswith("*") else _SCALAR_SLOTS[ty]()
            self._fills.append((i, slot, ty.startswith("*")))
            slots.append(slot)
        slots += [ctypes.c_uint64(0), ctypes.c_uint64(0)]  # global and profile scratch: none needed
        self._slots = slots  # the params array points into these objects: keep them alive
        self._params = (ctypes.c_void_p * len(slots))(*[ctypes.addressof(s) for s in slots])

    @classmethod
    def build(cls, compiled, n_args: int) -> DirectLauncher | None:
        """A launcher for `compiled` called with `n_args` runtime args, or None when it needs Triton's."""
        cu_launch_kernel = _cu_launch_kernel()
        src, md = getattr(compiled, "src", None), getattr(compiled, "metadata", None)
        signature = getattr(src, "signature", None)
        if cu_launch_kernel is None or not isinstance(signature, dict) or compiled.function is None:
            return None
        types = list(signature.values())
        plain = (getattr(md, "global_scratch_size", 0) == 0 and getattr(md, "profile_scratch_size", 0) == 0
                 and getattr(md, "num_ctas", 1) == 1 and not getattr(md, "launch_cooperative_grid", False)
                 and not getattr(md, "launch_pdl", False))
        known = all(isinstance(t, str) and (t == "constexpr" or t.startswith("*") or t in _SCALAR_SLOTS)
                    for t in types[:n_args])
        if not plain or not known or any(t != "constexpr" for t in types[n_args:]):
            return None
        return cls(compiled, types[:n_args], cu_launch_kernel)

    def __call__(self, grid: tuple[int, ...], stream: int, args: tuple) -> None:
        for i, slot, is_pointer in self._fills:
            a = args[i]
            if is_pointer:
                slot.value = a.data_ptr() if isinstance(a, torch.Tensor) else (a or 0)
            else:
                slot.value = a
        g = tuple(grid) + (1, 1)
        if g[0] * g[1] * g[2] == 0:
            return
        status = self._launch(self._function, g[0], g[1], g[2], self._threads, 1, 1, self._shared, stream,
                              self._params, None)
        if status != 0:
            raise RuntimeError(f"cuLaunchKernel failed with CUresult {status}")
