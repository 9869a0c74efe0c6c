"""Every launch the mlu variants make on the quick cases (and long rows) also compiles for a GPU (sm_90),
without a GPU, and what the launch-rules profile reads from those builds (TTIR) keeps to the rules.

The interpreter accepts kernels a compiler rejects (loop bounds of mixed int types, tiny dot shapes) and
says nothing about compile time, so each distinct launch seen here (kernel, argument types, constexprs,
num_warps) is compiled by Triton for a CUDA target in a subprocess. The MLU compiler is not available;
this is the nearest check that the same source builds for real hardware.
"""

import importlib
import inspect
import json
import os
import subprocess
import sys

import pytest
import torch

from workbench import backends
from workbench.backends import mlu_devices
from workbench.ops import REGISTRY
from workbench.ops.mlu import _kernel_trace as kt
from workbench.ops.mlu.rules import LaunchRules
from workbench.profiling.correctness import make_inputs

pytestmark = pytest.mark.skipif(not backends.active().interpreted, reason="a GPU run compiles them anyway")

POINTER = {
    torch.float32: "*fp32",
    torch.float16: "*fp16",
    torch.bfloat16: "*bf16",
    torch.int32: "*i32",
    torch.int64: "*i64",
    torch.bool: "*i1",
}


def _argument_type(value) -> str:
    if isinstance(value, torch.Tensor):
        return POINTER[value.dtype]
    if isinstance(value, bool):
        return "i1"
    if isinstance(value, int):
        return "i32" if -(2**31) <= value < 2**31 else "i64"
    if isinstance(value, float):
        return "fp32"
    raise TypeError(f"unexpected kernel argument {value!r}")


def _constexpr(value):
    fn = getattr(value, "fn", None)
    if fn is not None and inspect.isfunction(fn):  # a jit function passed as a constexpr (FN=...)
        return {"jit": [fn.__module__, fn.__name__]}
    return value


def _record_launches(dtype=torch.bfloat16) -> list[dict]:
    """Run every mlu variant on its quick cases (and long rows) and collect the distinct launches."""
    from triton.runtime.interpreter import InterpretedFunction

    seen = {}
    original = InterpretedFunction.run

    def run(self, *args, grid, warmup, **kwargs):
        params = inspect.signature(self.fn).parameters
        bound = {**dict(zip(params, args)), **{k: v for k, v in kwargs.items() if k in params}}
        signature, constexprs = {}, {}
        for name, p in params.items():
            if "constexpr" in str(p.annotation):
                signature[name] = "constexpr"
                constexprs[name] = _constexpr(bound[name])
            else:
                signature[name] = _argument_type(bound[name])
        launch = {
            "module": self.fn.__module__,
            "kernel": self.fn.__name__,
            "signature": signature,
            "constexprs": constexprs,
            "num_warps": kwargs.get("num_warps", 4),
        }
        seen[json.dumps(launch, sort_keys=True)] = launch
        return original(self, *args, grid=grid, warmup=warmup, **kwargs)

    InterpretedFunction.run = run
    try:
        for spec in REGISTRY.values():
            if "mlu" in spec.variant_names():  # quick cases, and the long rows that take the streamed paths
                long_rows = [c for c in spec.case_list("edge") if c.name.startswith("long row")]
                cases = spec.case_list("quick") + long_rows
                for i, case in enumerate(cases):
                    args, kwargs = make_inputs(case, dtype, seed=i)
                    spec.variant("mlu")(*args, **kwargs)
    finally:
        InterpretedFunction.run = original
    return list(seen.values())


_COMPILE = """
import importlib, json, os, sys, time
from workbench.backends.cuda import CudaBackend
CudaBackend.missing = lambda self: None  # no GPU here: only Triton's compiler is used
import workbench.ops  # defines every kernel in compiled mode
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
results = []
for launch in json.load(sys.stdin):
    fn = getattr(importlib.import_module(launch["module"]), launch["kernel"])
    index = {name: i for i, name in enumerate(launch["signature"])}
    constexprs = {}
    for name, value in launch["constexprs"].items():
        if isinstance(value, dict):
            value = getattr(importlib.import_module(value["jit"][0]), value["jit"][1])
        constexprs[(index[name],)] = value
    start = time.time()
    try:
        kernel = triton.compile(ASTSource(fn, launch["signature"], constexprs),
                                target=GPUTarget("cuda", 90, 32), options={"num_warps": launch["num_warps"]})
        error, ttir = "", kernel.asm["ttir"]
    except Exception as e:
        error, ttir = f"{type(e).__name__}: {e}"[:2000], ""
    results.append({"kernel": launch["module"] + "." + launch["kernel"], "seconds": time.time() - start,
                    "error": error, "ttir": ttir})
json.dump(results, sys.stdout)
"""


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
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(
        WORKBENCH_BACKEND="cuda",
        TRITON_CACHE_DIR=str(tmp_path / "triton"),
        PYTHONPATH=os.pathsep.join(
            [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), env.get("PYTHONPATH", "")]
        ),
    )
    result = subprocess.run(
        [sys.executable, "-c", _COMPILE],
        input=json.dumps(launches),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    compiled = json.loads(result.stdout)
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
