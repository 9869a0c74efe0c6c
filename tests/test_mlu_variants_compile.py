"""Every launch the mlu variants make on the quick cases (and long rows) also compiles for a GPU (sm_90),
without a GPU, and what the launch-rules profile reads from those builds (TTIR) keeps to the rules.

The interpreter accepts kernels a compiler rejects (loop bounds of mixed int types, tiny dot shapes) and
says nothing about compile time, so each distinct launch seen here (kernel, argument types, constexprs,
num_warps) is compiled by Triton for a CUDA target in a subprocess (workbench.profiling.gpu_build). The
MLU compiler is not available; this is the nearest check that the same source builds for real hardware.
"""

import importlib

import pytest
import torch

from workbench import backends
from workbench.backends import mlu_devices
from workbench.ops import REGISTRY
from workbench.ops.mlu import _kernel_trace as kt
from workbench.ops.mlu.rules import LaunchRules
from workbench.profiling import gpu_build
from workbench.profiling.correctness import make_inputs

pytestmark = pytest.mark.skipif(not backends.active().interpreted, reason="a GPU run compiles them anyway")


def _record_launches(dtype=torch.bfloat16) -> list[dict]:
    """Run every mlu variant on its quick cases (and long rows) and collect the distinct launches, typed
    without the JIT's specialisation (the rules read the kernels as written)."""

    def run_variants():
        for spec in REGISTRY.values():
            if "mlu" in spec.variant_names():  # quick cases, and the long rows that take the streamed paths
                long_rows = [c for c in spec.case_list("edge") if c.name.startswith("long row")]
                cases = spec.case_list("quick") + long_rows
                for i, case in enumerate(cases):
                    args, kwargs = make_inputs(case, dtype, seed=i)
                    spec.variant("mlu")(*args, **kwargs)

    return gpu_build.record_launches(run_variants, specialise=False)


def test_mlu_variant_launches_compile_for_a_gpu(tmp_path):
    launches = _record_launches()
    styled = {
        f"workbench.ops.{m}"
        for m in (
            "_elementwise",
            "_reduce",
            "_movement",
            "_matmul",
            "rope",
            "cumsum",
            "embedding",
            "layer_norm",
            "rms_norm",
            "cross_entropy",
        )
    }
    written = ("softmax", "argmax", "topk", "scaled_dot_product_attention")
    modules = styled | {f"workbench.ops.mlu.{op}" for op in written}
    assert {launch["module"] for launch in launches} >= modules
    # the mlu forms never launch the one-tile-per-program kernel of a launcher that has a persistent one
    tile_style = [
        f"{launch['module']}.{launch['kernel']}"
        for launch in launches
        if hasattr(
            importlib.import_module(launch["module"]),
            launch["kernel"].replace("_kernel", "_persistent_kernel"),
        )
    ]
    assert not tile_style, tile_style
    compiled = gpu_build.build(launches, cache_dir=tmp_path / "triton", timeout=600)
    assert len(compiled) == len(launches)
    errors = [f"{c['kernel']}: {c['error']}" for c in compiled if c["error"]]
    assert not errors, "\n".join(errors)
    slow = [f"{c['kernel']}: {c['seconds']:.1f}s" for c in compiled if c["seconds"] > 30]
    assert not slow, f"GPU builds this slow would stall the GPU run: {slow}"
    # What the profile reads from these builds on a GPU (TTIR) keeps to the MLU rules too.
    for dev in ("mlu590", "mlu370"):
        rules = LaunchRules.for_device(dev)
        with mlu_devices.targeting(rules.device):
            for launch, c in zip(launches, compiled):
                fn = getattr(importlib.import_module(launch["module"]), launch["kernel"]).fn
                constexprs = {k: v for k, v in launch["constexprs"].items() if not isinstance(v, dict)}
                record = kt.Launch(
                    fn=fn,
                    grid=(1, 1, 1),
                    num_warps=launch["num_warps"],
                    num_warps_given=True,
                    constexprs=constexprs,
                    tensor_dtypes={},
                )
                trace = kt.trace_ttir(c["ttir"])
                # a kernel that loads nothing (fill) has no tiles to read
                assert trace.tiles or "tt.load" not in c["ttir"], (
                    f"no tiles read from the TTIR of {c['kernel']}"
                )
                assert rules.judge(record, trace) == [], (dev, c["kernel"], launch["constexprs"])
