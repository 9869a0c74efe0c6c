"""The MLU adapter's own logic, against a test double of torch_mlu / torch.mlu / Triton's BangUtils.

Nothing here ran on an MLU: the double imitates the documented API (docs/mlu.md), including
the failure torch_mlu reports when more than 8192 timing event pairs are recorded and unread.
"""

import contextlib
import importlib.machinery
import sys
import types

import pytest
import torch

from workbench.backends import mlu_devices
from workbench.backends.mlu import MAX_EVENT_PAIRS, MluBackend


class FakeMlu:
    """Just enough of `torch.mlu` for the adapter: a clock kernels advance, events, properties, graphs."""

    def __init__(self, name="MLU590-H8", clusters=12, cores=4, available=True, graphs=True):
        self.clock_us = 0.0
        self.unread_events = 0
        self.most_unread = 0
        self.synchronized = 0
        self.available = available
        self.props = types.SimpleNamespace(
            name=name,
            cluster_count=clusters,
            core_num_per_cluster=cores,
            total_memory=80 << 30,
            dram_bandwidth=2765,
            multi_processor_count=clusters * cores,
        )
        self.replays = 0
        if graphs:
            self.MLUGraph = self._graph_class()

    # runtime
    def is_available(self):
        return self.available

    def current_device(self):
        return 0

    def get_device_properties(self, index):
        assert index == 0
        return self.props

    def synchronize(self, device=None):
        self.synchronized += 1

    def run_kernel(self, us):
        self.clock_us += us

    def Event(self, enable_timing=False):  # noqa: N802 (torch's name)
        assert enable_timing
        return FakeEvent(self)

    # graphs
    def _graph_class(self):
        runtime = self

        class MLUGraph:
            def __init__(self):
                self.captured = []

            def replay(self):
                runtime.replays += 1

        return MLUGraph

    @contextlib.contextmanager
    def graph(self, g):
        self.capturing = g
        yield
        self.capturing = None


class FakeEvent:
    def __init__(self, runtime):
        self.runtime = runtime
        self.time = None

    def record(self, stream=None):
        rt = self.runtime
        if rt.unread_events + 1 > 2 * MAX_EVENT_PAIRS:
            raise RuntimeError("CN_OPS_ERROR_OUT_OF_RESOURCES")
        rt.unread_events += 1
        rt.most_unread = max(rt.most_unread, rt.unread_events)
        self.time = rt.clock_us

    def synchronize(self):
        pass

    def hardware_time(self, end):
        """Microseconds between this event and `end`, measured on the device (torch_mlu's API)."""
        self.runtime.unread_events -= 2
        return end.time - self.time


@pytest.fixture
def fake_mlu(monkeypatch):
    """Install the double as `torch_mlu` + `torch.mlu`; returns a function that builds a new one."""

    def install(**kwargs):
        runtime = FakeMlu(**kwargs)
        monkeypatch.setitem(sys.modules, "torch_mlu", types.ModuleType("torch_mlu"))
        monkeypatch.setattr(torch, "mlu", runtime, raising=False)
        return runtime

    return install


@pytest.fixture
def bang(monkeypatch):
    """Install a double of `triton.backends.mlu.driver.BangUtils` reporting `props`."""

    def install(**props):
        driver = types.ModuleType("triton.backends.mlu.driver")

        class BangUtils:
            def get_device_properties(self, index):
                return dict(props)

        driver.BangUtils = BangUtils
        monkeypatch.setitem(sys.modules, "triton.backends.mlu", types.ModuleType("triton.backends.mlu"))
        monkeypatch.setitem(sys.modules, "triton.backends.mlu.driver", driver)

    return install


def test_identity():
    b = MluBackend()
    assert (b.name, b.device_type, b.dispatch_key, b.collective) == ("mlu", "mlu", "PrivateUse1", "cncl")
    assert not b.interpreted


def test_missing_says_why(fake_mlu, monkeypatch):
    fake_mlu(available=False)
    assert "sees no MLU device" in MluBackend().missing()
    monkeypatch.setitem(sys.modules, "torch_mlu", None)  # import torch_mlu -> ImportError
    assert MluBackend().missing().startswith("package torch_mlu is not installed")
    assert MluBackend().policy == mlu_devices.default_device().policy()  # figures to size kernels for


def test_figures_from_torch_mlu_and_bangutils(fake_mlu, bang):
    fake_mlu(name="MLU590-H8", clusters=12, cores=4)
    bang(
        cluster_num=12,
        core_num_per_cluster=4,
        max_nram_size=480 * 1024,
        max_shared_mem=2 << 20,
        isa_version=592,
    )
    b = MluBackend()
    assert b.missing() is None
    figures = b.device_figures()
    assert (figures.cores, figures.nram_bytes, figures.tf32) == (48, 480 * 1024, True)
    assert figures.confirmed == "cores from torch_mlu, NRAM from BangUtils"
    assert (b.policy.max_programs, b.policy.num_warps, b.policy.onchip_bytes) == (48, (1, 4), 480 * 1024)
    assert b.policy.grid(1000, num_warps=4) == 12
    caps = b.capabilities
    assert (caps.fp64, caps.int64_atomics, caps.bf16, caps.tf32) == (False, False, True, True)
    props = b.properties()
    assert (props.name, props.cores, props.memory_bytes) == ("MLU590-H8", 48, 80 << 30)
    assert props.extra["cluster_count"] == 12 and props.extra["isa_version"] == 592


def test_figures_without_bangutils_come_from_the_named_device(fake_mlu, bang):
    fake_mlu(name="MLU370-X8", clusters=6, cores=4)
    figures = MluBackend().device_figures()  # no triton.backends.mlu installed here
    assert (figures.cores, figures.nram_bytes, figures.tf32) == (24, 768 * 1024, False)
    assert figures.confirmed == "cores from torch_mlu, NRAM from the MLU370 figures"
    bang(cluster_num=8, core_num_per_cluster=4, max_nram_size=768 * 1024)
    assert MluBackend().device_figures().confirmed.endswith("(BangUtils counts 32 cores)")


def test_event_timer_reads_hardware_time_in_microseconds(fake_mlu):
    rt = fake_mlu()
    t = MluBackend().timer()
    t.start()
    rt.run_kernel(250.0)
    t.stop()
    assert t.elapsed_ms() == pytest.approx(0.25)
    assert t.elapsed_ms() == pytest.approx(0.25)  # read once, remembered
    assert rt.unread_events == 0


def test_never_more_than_8192_event_pairs_in_flight(fake_mlu):
    rt = fake_mlu()
    b = MluBackend()
    times = b.time_calls(lambda: rt.run_kernel(3.0), reps=3 * MAX_EVENT_PAIRS + 5)
    assert len(times) == 3 * MAX_EVENT_PAIRS + 5 and times == pytest.approx([0.003] * len(times))
    assert rt.most_unread == 2 * MAX_EVENT_PAIRS and rt.unread_events == 0
    assert rt.synchronized >= 3  # one drain per full batch, then the final read
    # a caller that keeps its own timers and reads them late (profiling.timing) is kept under the cap too
    rt2 = fake_mlu()
    b2 = MluBackend()
    timers = []
    for _ in range(MAX_EVENT_PAIRS + 10):
        t = b2.timer()
        t.start()
        rt2.run_kernel(1.0)
        t.stop()
        timers.append(t)
    assert [t.elapsed_ms() for t in timers] == pytest.approx([0.001] * len(timers))
    assert rt2.most_unread <= 2 * MAX_EVENT_PAIRS
    with pytest.raises(ValueError, match="reps: expected at least 1"):
        b2.time_calls(lambda: None, reps=0)


def test_collective_backends(fake_mlu, monkeypatch):
    fake_mlu()
    b = MluBackend()
    monkeypatch.setitem(sys.modules, "flagcx", None)  # not installed
    assert b.collective_backends() == ("cncl",)
    assert b.process_group_backend() == "cncl"
    with pytest.raises(ValueError, match="use_flagcx: FlagCX's torch plugin"):
        b.process_group_backend(use_flagcx=True)
    flagcx = types.ModuleType("flagcx")
    flagcx.__spec__ = importlib.machinery.ModuleSpec("flagcx", None)
    monkeypatch.setitem(sys.modules, "flagcx", flagcx)
    assert b.collective_backends() == ("cncl", "flagcx")
    assert b.process_group_backend(use_flagcx=True) == "cpu:gloo,mlu:flagcx"


def test_graph_capture_and_replay(fake_mlu):
    rt = fake_mlu()
    b = MluBackend()
    calls = []

    def step():
        calls.append(getattr(rt, "capturing", None))
        return "out"

    assert b.graphs_available()
    g = b.capture_graph(step, warmup=2)
    assert calls[:2] == [None, None] and calls[2] is g.graph  # warm-up outside, one call captured
    assert g.replay() == "out" and g.replay() == "out" and rt.replays == 2
    fake_mlu(graphs=False)
    assert not b.graphs_available()
    with pytest.raises(NotImplementedError, match="MLUGraph"):
        b.capture_graph(step)
