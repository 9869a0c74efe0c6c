"""The launch cache: first call through Triton, later calls straight to the compiled launcher."""

import torch

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


class FakeCudaLauncher:
    """Triton 3.6's CudaLauncher: a Python wrapper around the C launch function `launch`."""

    global_scratch_size = profile_scratch_size = 0
    launch_cooperative_grid, launch_pdl = False, True

    def __init__(self):
        self.c_calls = []

    def launch(self, *args):
        self.c_calls.append(args)

    def __call__(self, *args):
        raise AssertionError("the Python wrapper is skipped")


def test_cached_launch_calls_triton_36_c_launcher_directly(monkeypatch):
    monkeypatch.setattr(_launch, "_ENABLED", True)
    monkeypatch.setattr(_launch, "_RAW_LAUNCH", True)
    monkeypatch.setattr(_launch, "_cache", {})
    monkeypatch.setattr(_launch, "_stream", lambda: "stream")
    kernel, x = FakeKernel(), torch.empty(64)
    kernel.compiled.run = FakeCudaLauncher()
    _launch.launch(kernel, (4,), x, 64, BLOCK=16, FLAG=True, num_warps=4)
    _launch.launch(kernel, (5, 2), x, 128, BLOCK=16, FLAG=True, num_warps=4)
    assert kernel.compiled.run.c_calls == [
        (5, 2, 1, "stream", "fn", False, True, None, None, "meta", None, None, None, x, 128, 16, True)
    ]
    scratch = FakeCudaLauncher()
    scratch.global_scratch_size = 128  # needs the wrapper's allocation: no raw launch
    assert _launch._raw_launch(type("C", (), {"run": scratch})()) is None
    monkeypatch.setattr(_launch, "_RAW_LAUNCH", False)  # another Triton version
    assert _launch._raw_launch(type("C", (), {"run": FakeCudaLauncher()})()) is None


def test_value_key_keeps_every_specialisation_apart():
    key = _launch._value_key
    x = torch.empty(8)
    assert key((1,)) != key((True,)) and key((1,)) != key((1.0,)) and key((0,)) != key((None,))
    assert key((x,)) != key((x[1:],)) and key((x,)) != key((x.half(),))
    assert key((x, 64, 2.5)) == key((torch.empty(8), 64, 0.5))  # floats are not specialised on
    # equal value keys have equal specialisation keys
    samples = [(x, 64), (x, 128), (x[4:], 64), (x.half(), 64), (x, 1), (x, 2**40), (x, True), (x, 3.0)]
    for a in samples:
        for b in samples:
            if key(a) == key(b):
                assert tuple(map(_launch._arg_key, a)) == tuple(map(_launch._arg_key, b))


def test_new_int_values_reuse_the_compiled_kernel_and_the_value_cache_stays_bounded(monkeypatch):
    monkeypatch.setattr(_launch, "_ENABLED", True)
    monkeypatch.setattr(_launch, "_cache", {})
    monkeypatch.setattr(_launch, "_by_value", {})
    monkeypatch.setattr(_launch, "MAX_BY_VALUE", 3)
    monkeypatch.setattr(_launch, "_stream", lambda: "stream")
    kernel, x = FakeKernel(), torch.empty(64)
    for n in range(16, 16 * 10, 16):  # one specialisation (n % 16 == 0), nine values
        _launch.launch(kernel, (1,), x, n, BLOCK=16, FLAG=True)
    assert kernel.slow_calls == 1 and len(_launch._cache) == 1
    assert len(kernel.compiled.calls) == 8 and kernel.compiled.calls[-1][-3] == 144
    assert len(_launch._by_value) <= 3


def test_value_cache_keeps_its_kernels_alive_so_their_ids_stay_theirs(monkeypatch):
    import gc
    import weakref

    monkeypatch.setattr(_launch, "_ENABLED", True)
    monkeypatch.setattr(_launch, "_cache", {})
    monkeypatch.setattr(_launch, "_by_value", {})
    monkeypatch.setattr(_launch, "_stream", lambda: "stream")
    kernel, x = FakeKernel(), torch.empty(64)
    for _ in range(2):
        _launch.launch(kernel, (1,), x, 64, BLOCK=16, FLAG=True)
    ref = weakref.ref(kernel)
    _launch._cache.clear()
    del kernel
    gc.collect()
    assert ref() is not None  # the value key holds id(kernel): its entry must keep the kernel alive
    other = FakeKernel()
    _launch.launch(other, (1,), x, 64, BLOCK=16, FLAG=True)
    assert other.slow_calls == 1  # never the first kernel's compiled launch


def test_stream_skips_torch_cuda_current_devices_python_wrapper(monkeypatch):
    class Driver:
        get_current_device = torch.cuda.current_device

        @staticmethod
        def get_current_stream(device):
            return ("stream of", device)

    def c_get_device():  # torch._C._cuda_getDevice, which a cpu build of torch lacks
        return 0

    monkeypatch.setattr(torch._C, "_cuda_getDevice", c_get_device, raising=False)
    monkeypatch.setattr(_launch, "_driver", lambda: Driver)
    monkeypatch.setattr(_launch, "_stream", _launch._bind_stream)  # unbound, as before any launch
    _launch._stream_getters.cache_clear()
    try:
        get_stream, get_device = _launch._stream_getters()
        assert get_device is c_get_device and get_stream is Driver.get_current_stream
        Driver.get_current_device = staticmethod(lambda: 3)  # another driver's getter is kept
        _launch._stream_getters.cache_clear()
        assert _launch._stream() == ("stream of", 3)
    finally:
        _launch._stream_getters.cache_clear()


def test_site_relaunches_its_aligned_entry_and_refreshes_a_stale_one(monkeypatch):
    monkeypatch.setattr(_launch, "_ENABLED", True)
    monkeypatch.setattr(_launch, "_cache", {})
    monkeypatch.setattr(_launch, "_by_value", {})
    monkeypatch.setattr(_launch, "_stream", lambda: "stream")
    kernel, x = FakeKernel(), torch.empty(64)
    site = _launch.Site(kernel, BLOCK=16, FLAG=True)
    site((1,), x, 64)  # compiles: the entry is kept
    entry = site.entry
    assert entry is not None and kernel.slow_calls == 1
    monkeypatch.setattr(_launch, "_value_key", lambda args: (_ for _ in ()).throw(AssertionError("keyed")))
    site((2,), x, 64)  # straight to the entry, no key built
    assert kernel.compiled.calls[-1][:2] == (2, 1) and kernel.compiled.calls[-1][-4:] == (x, 64, 16, True)
    monkeypatch.undo()
    monkeypatch.setattr(_launch, "_ENABLED", True)
    monkeypatch.setattr(_launch, "_stream", lambda: "stream")
    monkeypatch.setattr(_launch, "_cache", {})
    monkeypatch.setattr(_launch, "_by_value", {})
    site((3,), x[1:], 64, aligned=False)  # a misaligned tensor takes the keyed path, keeping the entry
    assert site.entry is entry and kernel.slow_calls == 2
    monkeypatch.setattr(_launch, "generation", _launch.generation + 1)  # caches swapped since
    site((4,), x, 64)
    assert site.entry is not entry and site.entry[4] == _launch.generation and kernel.slow_calls == 3


def test_aligned():
    x = torch.empty(64)
    assert _launch.aligned(x, x[4:]) and not _launch.aligned(x, x[1:])
