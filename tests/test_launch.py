"""The launch cache: first call through Triton, later calls straight to the compiled launcher."""

import ctypes

import pytest
import torch

from workbench.backends import cuda_launch
from workbench.backends.cuda_launch import DirectLauncher
from workbench.ops import _launch


class FakeCompiled:
    function, packed_metadata = "fn", "meta"

    def __init__(self):
        self.calls = []

    def run(self, *args):
        self.calls.append(args)


class FakeKernel:
    arg_names = ["x", "n", "BLOCK", "FLAG"]

    def __init__(self):
        self.compiled = FakeCompiled()
        self.slow_calls = 0

    def __getitem__(self, grid):
        def run(*args, **meta):
            self.slow_calls += 1
            return self.compiled

        return run


def test_cached_launch_passes_every_parameter_in_order(monkeypatch):
    monkeypatch.setattr(_launch, "_ENABLED", True)
    monkeypatch.setattr(_launch, "_cache", {})
    monkeypatch.setattr(_launch, "_stream", lambda: "stream")
    kernel, x = FakeKernel(), torch.empty(64)
    _launch.launch(kernel, (4,), x, 64, BLOCK=16, FLAG=True, num_warps=4)
    _launch.launch(kernel, (5,), x, 128, BLOCK=16, FLAG=True, num_warps=4)  # same specialisation: n % 16 == 0
    assert kernel.slow_calls == 1
    assert kernel.compiled.calls == [(5, 1, 1, "stream", "fn", "meta", None, None, None, x, 128, 16, True)]
    _launch.launch(kernel, (5,), x, 7, BLOCK=16, FLAG=True, num_warps=4)  # n not divisible by 16: new key
    _launch.launch(kernel, (5,), x[1:], 64, BLOCK=16, FLAG=True, num_warps=4)  # misaligned pointer: new key
    _launch.launch(kernel, (5,), x, 64, BLOCK=32, FLAG=True, num_warps=4)  # other constexpr: new key
    assert kernel.slow_calls == 4


def test_specialisation_key():
    key = _launch._arg_key
    assert key(1) != key(17) and key(32) != key(33) and key(2**40) != key(2**4)
    assert key(torch.empty(8, dtype=torch.float16)) != key(torch.empty(8))
    assert key(2.5) == key(0.5)


class FakeSource:
    signature = {"x": "*bf16", "out": "*bf16", "n": "i32", "big": "i64", "eps": "fp32", "one": "constexpr",
                 "BLOCK": "constexpr"}


class FakeMetadata:
    num_warps, shared, global_scratch_size, profile_scratch_size, num_ctas = 4, 1024, 0, 0, 1
    launch_cooperative_grid = launch_pdl = False


class FakeDirectCompiled:
    src, metadata, function = FakeSource(), FakeMetadata(), 0xF00


def test_direct_launcher_fills_triton_parameter_layout():
    calls = []

    def cu_launch_kernel(function, gx, gy, gz, bx, by, bz, shared, stream, params, extra):
        # read every parameter back through the pointer array, as the driver does
        ptr = [ctypes.c_uint64, ctypes.c_uint64, ctypes.c_int32, ctypes.c_int64, ctypes.c_float,
               ctypes.c_uint64, ctypes.c_uint64]
        values = [ctypes.cast(params[i], ctypes.POINTER(t)).contents.value for i, t in enumerate(ptr)]
        calls.append((function, (gx, gy, gz), (bx, by, bz), shared, stream, values, extra))
        return 0

    compiled = FakeDirectCompiled()
    launcher = DirectLauncher(compiled, list(FakeSource.signature.values())[:6], cu_launch_kernel)
    x, out = torch.empty(8), torch.empty(8)
    launcher((3,), 77, (x, out, 8, 2**40, 0.5, 1))
    assert calls == [(0xF00, (3, 1, 1), (128, 1, 1), 1024, 77,
                      [x.data_ptr(), out.data_ptr(), 8, 2**40, 0.5, 0, 0], None)]
    launcher((0, 2), 77, (x, out, 8, 2**40, 0.5, 1))  # an empty grid launches nothing
    assert len(calls) == 1
    failing = DirectLauncher(compiled, ["*fp32"], lambda *a: 700)
    with pytest.raises(RuntimeError, match="CUresult 700"):
        failing((1,), 0, (x,))


def test_direct_launcher_declines_kernels_it_cannot_launch(monkeypatch):
    monkeypatch.setattr(cuda_launch, "_cu_launch_kernel", lambda: (lambda *a: 0))
    assert DirectLauncher.build(FakeDirectCompiled(), 6) is not None
    scratch = FakeDirectCompiled()
    scratch.metadata = type("M", (FakeMetadata,), {"global_scratch_size": 64})()
    half_scalar = FakeDirectCompiled()
    half_scalar.src = type("S", (), {"signature": {"x": "*fp16", "s": "fp16"}})()
    assert DirectLauncher.build(scratch, 6) is None
    assert DirectLauncher.build(half_scalar, 2) is None
    assert DirectLauncher.build(FakeDirectCompiled(), 3) is None  # a runtime arg where constexprs belong
    monkeypatch.setattr(cuda_launch, "_cu_launch_kernel", lambda: None)  # no libcuda
    assert DirectLauncher.build(FakeDirectCompiled(), 6) is None
