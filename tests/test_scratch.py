"""Scratch kept across launches (`workbench/ops/_scratch.py`): kept per stream and grown, made on a
helper thread on the default stream (out of a CUDA-graph pool), made for one launch alone while a graph
is captured."""

import contextlib
import threading

import pytest
import torch

from workbench.ops import _scratch


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.setattr(_scratch, "_kept", {})


def _counts(sizes):
    return (torch.zeros(sizes[0], dtype=torch.int32),)


def test_kept_and_grown_never_shrunk():
    cpu = torch.device("cpu")
    first = _scratch.scratch("t", cpu, (8,), _counts)
    assert _scratch.scratch("t", cpu, (4,), _counts)[0] is first[0]  # smaller: the same set
    grown = _scratch.scratch("t", cpu, (16,), _counts)
    assert grown[0].numel() == 16 and _scratch.kept("t", cpu)[0] is grown[0]
    assert _scratch.scratch("other", cpu, (4,), _counts)[0] is not grown[0]  # one set per name


class _FakeStream:
    def __init__(self, stream_id):
        self.stream_id, self.waited = stream_id, []

    def wait_stream(self, other):
        self.waited.append(other)


class _FakeCuda:
    """The device module's stream API, recording which stream each allocation ran on."""

    def __init__(self):
        self.default, self.side = _FakeStream(0), _FakeStream(7)
        self.current, self.capturing, self.made_on = self.side, False, []
        self.device_index = 3  # a thread's current device; a new thread's is 0, as in CUDA

    @contextlib.contextmanager
    def _set(self, attribute, value):
        before = getattr(self, attribute)
        setattr(self, attribute, value)
        yield
        setattr(self, attribute, before)

    def current_device(self):
        return self.device_index

    def device(self, index):
        return self._set("device_index", index)

    def current_stream(self, device):
        return self.current

    def default_stream(self, device):
        return self.default

    def stream(self, s):
        return self._set("current", s)

    def is_current_stream_capturing(self):
        return self.capturing


def test_kept_sets_are_made_on_the_default_stream_and_captures_get_their_own(monkeypatch):
    fake = _FakeCuda()
    monkeypatch.setattr(_scratch, "_device_module", lambda device: fake)
    # (the stream query itself: torch's, looked up once per process, may be bound already)
    monkeypatch.setattr(_scratch, "_raw_stream", lambda device_type: lambda index: fake.current.stream_id)
    device = torch.device("cuda", 0)

    threads = []

    def make(sizes):
        fake.made_on.append(fake.current.stream_id)
        threads.append(threading.get_ident())
        return _counts(sizes)

    kept = _scratch.scratch("t", device, (8,), make)
    assert fake.made_on == [0] and fake.side.waited == [fake.default]  # warm-up on a side stream
    assert threads[0] != threading.get_ident()  # CUDA-graph trees route this thread's allocations
    assert _scratch.scratch("t", device, (8,), make) is kept and fake.made_on == [0]
    fake.capturing = True
    assert _scratch.scratch("t", device, (8,), make) is kept  # an existing set serves a capture
    during = _scratch.scratch("t", device, (32,), make)  # too small: made for this launch, on its stream
    assert fake.made_on == [0, 7] and during[0].numel() == 32
    assert _scratch.kept("t", device) is kept  # and not kept
    fake.current = fake.default
    assert _scratch.kept("t", device) is None  # one set per stream


def test_kept_memory_is_made_on_a_helper_thread_on_the_callers_device(monkeypatch):
    """`outside_graph_pools`: not this thread (a CUDA graph's warm-up takes its allocations), the default
    stream, the caller's current device when the device names none; the caller's stream waits."""
    fake = _FakeCuda()
    monkeypatch.setattr(_scratch, "_device_module", lambda device: fake)
    seen = []

    def make():
        seen.append((threading.get_ident(), fake.current.stream_id, fake.device_index))
        return "made"

    assert _scratch.outside_graph_pools(torch.device("cuda"), make) == "made"
    assert seen == [(seen[0][0], 0, 3)] and seen[0][0] != threading.get_ident()
    assert fake.side.waited == [fake.default]
    _scratch.outside_graph_pools(torch.device("cuda", 1), make)
    assert seen[1][2] == 1 and fake.device_index == 3


def test_the_timers_flush_buffer_is_made_outside_graph_pools(monkeypatch):
    """Tuning may time a kernel during a CUDA graph's warm-up: the L2-flush buffer it keeps must not come
    from the graph's pool."""
    from types import SimpleNamespace

    from workbench.profiling import timing

    made = []

    def spy(device, make):
        made.append(device)
        return make()

    monkeypatch.setattr(timing, "_flush_buffers", {})
    monkeypatch.setattr(timing, "outside_graph_pools", spy)
    monkeypatch.setattr(timing, "FLUSH_BYTES", 64)
    backend = SimpleNamespace(interpreted=False, name="fake", device=lambda: torch.device("cpu"))
    timing._flush(backend)
    timing._flush(backend)
    assert made == [torch.device("cpu")] and timing._flush_buffers["fake"].numel() == 16
