"""The MLU launch-rules profile catches each kind of violation, in kernels written to break one rule each.

Launches run on the active backend (the cpu interpreter in CI); the TTIR path used on compiled
backends is tested on TTIR that Triton compiles for a CUDA target in a subprocess (no GPU needed).
"""

import json
import os
import subprocess
import sys

import pytest
import torch

from workbench import backends

backends.active()  # bind the backend, and TRITON_INTERPRET with it, before the kernels below are defined

import mlu_bad_kernels as bad  # noqa: E402

from workbench.backends import mlu_devices  # noqa: E402
from workbench.ops.mlu import _kernel_trace as kt  # noqa: E402
from workbench.ops.mlu.rules import LaunchRules, dot_problems  # noqa: E402

pytestmark = pytest.mark.skipif(
    not backends.active().interpreted,
    reason="launches these kernels on the interpreter; the GPU run uses the ops",
)


def _dev():
    return backends.active().device()


def _rules(device="mlu590", **overrides):
    return LaunchRules.for_device(device, **overrides)


def _copy(rules, n, block, programs=None, num_warps=1, dtype=torch.float32):
    x = torch.randn(n, device=_dev()).to(dtype)
    out = torch.empty_like(x)
    with rules:
        kwargs = {} if num_warps is None else {"num_warps": num_warps}
        bad.copy_kernel[(programs or -(-n // block),)](x, out, n, BLOCK=block, **kwargs)
    assert torch.equal(out, x)  # the profile watches; the kernel still runs
    return rules.violations()


def _rules_of(df):
    return sorted(set(df["rule"]))


def test_a_kernel_within_the_rules_is_clean():
    rules = _rules()
    v = _copy(rules, 4000, 1024)
    assert v.empty and rules.clean
    launches = rules.launches()
    assert launches[["kernel", "grid", "num_warps", "tasks", "nram_kib"]].values.tolist() == [
        ["mlu_bad_kernels.copy_kernel", (4, 1, 1), 1, 4, 4.0]
    ]  # one fp32 tile of 1024 loaded
    assert "48 cores" in rules.summary() and "0 violations" in rules.summary()


def test_grid_larger_than_the_core_count():
    v = _copy(_rules(), 100 * 256, 256)  # 100 programs, one per tile
    assert _rules_of(v) == ["grid"]
    assert v["detail"].iloc[0] == "100 programs x num_warps 1 = 100 > 48 cores"
    assert v["kernel"].iloc[0] == "mlu_bad_kernels.copy_kernel"
    assert _copy(_rules(), 12 * 256, 256, num_warps=4).empty  # 12 clusters of 4 cores: exactly 48
    v = _copy(_rules(), 13 * 256, 256, num_warps=None)  # Triton's default num_warps is 4
    assert v["detail"].tolist() == ["13 programs x num_warps 4 (Triton's default) = 52 > 48 cores"]
    assert _copy(_rules("mlu590", cores=128), 100 * 256, 256).empty  # overridden core count


@pytest.mark.parametrize("num_warps", [2, 8])
def test_num_warps_other_than_1_or_4(num_warps):
    v = _copy(_rules(), 1024, 1024, num_warps=num_warps)
    assert _rules_of(v) == ["num_warps"]
    assert v["detail"].iloc[0] == f"num_warps={num_warps}: legal values are 1 and 4"


def test_tiles_larger_than_nram():
    v = _copy(_rules(), 1 << 18, 1 << 18)  # one fp32 tile of 1 MiB
    assert _rules_of(v) == ["nram"]
    assert v["detail"].iloc[0].startswith("estimated 1024 KiB per program > 512 KiB NRAM: load 262144 fp32 @")
    assert "mlu_bad_kernels.py:" in v["detail"].iloc[0]
    assert _copy(_rules("mlu370"), 1 << 18, 1 << 18)["rule"].tolist() == ["nram"]  # 768 KiB is too little
    assert _copy(_rules("mlu590", nram_bytes=2 << 20), 1 << 18, 1 << 18).empty


def test_nram_estimate_counts_accumulators():
    rules = _rules(nram_bytes=500 * 1024)
    x = torch.randn(3 << 16, device=_dev())
    out = torch.empty(1, device=_dev())
    with rules:
        bad.accumulate_kernel[(1,)](x, out, x.numel(), BLOCK=1 << 16, num_warps=1)
    torch.testing.assert_close(out[0], x.sum(), rtol=1e-4, atol=1e-2)
    assert rules.launches()["nram_kib"].tolist() == [512.0]  # 256 KiB loaded tile + 256 KiB fp32 accumulator
    assert rules.violations()["detail"].str.contains("accumulator 65536 fp32").all()


def test_float64_arguments_casts_and_source():
    v = _copy(_rules(), 1000, 1024, dtype=torch.float64)
    assert _rules_of(v) == ["float64"]
    assert set(v["detail"]) >= {
        "argument x_ptr is a float64 tensor",
        "argument out_ptr is a float64 tensor",
        "load tile of fp64",
    }
    rules = _rules()
    x = torch.randn(300, device=_dev())
    out = torch.empty_like(x)
    with rules:
        bad.fp64_math_kernel[(1,)](x, out, x.numel(), BLOCK=512, num_warps=1)
    torch.testing.assert_close(out, x.exp())
    v = rules.violations()
    assert _rules_of(v) == ["float64"]
    details = dict(zip(v["detail"], v["site"]))
    assert details["cast to fp64"].startswith("tests/mlu_bad_kernels.py:")
    assert details["source mentions tl.float64"] == details["cast to fp64"]


INT8_DOT = "int8 dot accumulates in int32: the MLU gives fp16/fp32 results (set out_dtype)"


def _dot(rules, dtype, precision=None, n=32):
    a = (
        torch.randn(n, n, device=_dev()).to(dtype)
        if dtype.is_floating_point
        else torch.randint(-4, 4, (n, n), dtype=dtype, device=_dev())
    )
    with rules:
        if dtype == torch.int8:
            c = torch.empty(n, n, dtype=torch.int32, device=_dev())
            bad.int8_dot_kernel[(1,)](a, a, c, N=n, num_warps=4)
        else:
            c = torch.empty(n, n, device=_dev())
            bad.dot_kernel[(1,)](a, a, c, N=n, PRECISION=precision, num_warps=4)
    assert torch.allclose(c.double(), a.double() @ a.double(), rtol=1e-3, atol=1e-3)
    return rules.violations()


def test_dot_dtype_rules():
    assert _dot(_rules("mlu370"), torch.float32, "ieee").empty
    v = _dot(_rules("mlu370"), torch.float32, "tf32")
    assert _rules_of(v) == ["dot_dtype"]
    assert v["detail"].iloc[0] == "input_precision=tf32: MLU370 has no tf32 (use 'ieee')"
    assert _dot(_rules("mlu590"), torch.float32, "tf32").empty  # MLU590 has tf32
    v = _dot(_rules(), torch.int8)
    assert v["detail"].tolist() == [INT8_DOT]
    assert v["site"].iloc[0].startswith("tests/mlu_bad_kernels.py:")


def test_dot_problems_for_operands_triton_itself_rejects():
    dev = mlu_devices.device("mlu590")
    assert dot_problems(kt.Dot("fp16", "fp32", "fp32", None, ""), dev) == ["operands differ: fp16 x fp32"]
    assert dot_problems(kt.Dot("fp64", "fp64", "fp64", None, ""), dev) == [
        "fp64 operands: expected one of int8, int16, fp16, bf16, fp32"
    ]
    assert dot_problems(kt.Dot("fp8e4nv", "fp8e4nv", "fp32", None, ""), dev) == [
        "fp8e4nv operands: MLU590 has no fp8 dot"
    ]
    assert dot_problems(kt.Dot("bf16", "bf16", "fp32", None, ""), dev) == []


def test_int64_atomics():
    idx = torch.randint(0, 10, (500,), dtype=torch.int32, device=_dev())
    for dtype, expected in ((torch.int64, ["tl.atomic_add on int64"]), (torch.int32, [])):
        rules = _rules()
        counts = torch.zeros(10, dtype=dtype, device=_dev())
        with rules:
            bad.histogram_kernel[(4,)](idx, counts, idx.numel(), BLOCK=128, num_warps=1)
        assert torch.equal(counts.long(), torch.bincount(idx.long(), minlength=10))
        assert rules.violations()["detail"].tolist() == expected
        assert set(rules.violations()["rule"]) <= {"atomic_dtype"}


def test_violations_are_labelled_counted_and_the_hooks_removed():
    from triton.language.semantic import TritonSemantic
    from triton.runtime.interpreter import InterpretedFunction

    run, load = InterpretedFunction.run, TritonSemantic.load
    rules = _rules()
    x = torch.randn(100 * 64, device=_dev())
    with rules.scope(op="copy", case="c1") as found:
        for _ in range(2):
            bad.copy_kernel[(100,)](x, torch.empty_like(x), x.numel(), BLOCK=64, num_warps=1)
        assert InterpretedFunction.run is not run and TritonSemantic.load is not load
    assert InterpretedFunction.run is run and TritonSemantic.load is load
    assert len(found) == 1
    v = rules.violations()
    assert v[["op", "case", "rule", "launches"]].values.tolist() == [["copy", "c1", "grid", 2]]
    with pytest.raises(ValueError, match="scope: expected labels among"), rules.scope(shape="1x2"):
        pass


def test_rules_pin_the_target_of_mlu_style_kernels():
    rules = _rules("mlu370", cores=8)
    assert mlu_devices.target().name == mlu_devices.default_device().name
    with rules:
        assert mlu_devices.target() is rules.device and rules.device.cores == 8
    assert mlu_devices.target().name == mlu_devices.default_device().name


# ---- compiled kernels: TTIR ---------------------------------------------------------------------------

_COMPILE_SCRIPT = """
import json, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
import mlu_bad_kernels as bad
out = {}
for name, (fn, signature, constexprs) in bad.COMPILE.items():
    index = {k: i for i, k in enumerate(signature)}
    src = ASTSource(fn, signature, {(index[k],): v for k, v in constexprs.items()})
    out[name] = triton.compile(src, target=GPUTarget("cuda", 90, 32)).asm["ttir"]
json.dump(out, sys.stdout)
"""


@pytest.fixture(scope="module")
def compiled_ttir(tmp_path_factory):
    """TTIR of each bad kernel, compiled for an sm_90 target by Triton in a non-interpreting process."""
    env = {**os.environ, "TRITON_INTERPRET": "0", "TRITON_CACHE_DIR": str(tmp_path_factory.mktemp("triton"))}
    env.pop("WORKBENCH_BACKEND", None)
    result = subprocess.run(
        [sys.executable, "-c", _COMPILE_SCRIPT],
        cwd=os.path.dirname(__file__),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0 and "nvidia" not in result.stderr.lower() + result.stdout.lower():
        pytest.fail(result.stderr[-3000:])
    if result.returncode != 0:
        pytest.skip(f"this Triton cannot compile for a CUDA target here: {result.stderr[-300:]}")
    return json.loads(result.stdout)


def _judge_compiled(ttir, kernel, device="mlu590", nram_bytes=None):
    launch = kt.Launch(
        fn=kernel.fn, grid=(1, 1, 1), num_warps=1, num_warps_given=True, constexprs={}, tensor_dtypes={}
    )
    trace = kt.trace_ttir(ttir)
    return trace, LaunchRules.for_device(device, nram_bytes=nram_bytes).judge(launch, trace)


def test_ttir_tiles_and_nram(compiled_ttir):
    # Blocks are small here (compiling big ones takes ptxas minutes); the NRAM budget is cut to match.
    trace, problems = _judge_compiled(compiled_ttir["copy"], bad.copy_kernel, nram_bytes=8 * 1024)
    assert [(t.kind, t.shape, t.dtype) for t in trace.tiles.values()] == [("load", (4096,), "fp32")]
    site = next(iter(trace.tiles.values())).site
    expected = f"estimated 16 KiB per program > 8 KiB NRAM: load 4096 fp32 @{site}"
    assert [p[:2] for p in problems] == [("nram", expected)]
    assert _judge_compiled(compiled_ttir["copy"], bad.copy_kernel, nram_bytes=16 * 1024)[1] == []
    trace, _ = _judge_compiled(compiled_ttir["accumulate"], bad.accumulate_kernel)
    assert sorted((t.kind, t.shape, t.dtype) for t in trace.tiles.values()) == [
        ("accumulator", (1024,), "fp32"),
        ("load", (1024,), "fp32"),
    ]
    assert trace.nram_estimate() == 8 * 1024
    assert all(t.site.startswith("tests/mlu_bad_kernels.py:") for t in trace.tiles.values())


def test_ttir_float64_dot_and_atomics(compiled_ttir):
    _, problems = _judge_compiled(compiled_ttir["fp64_math"], bad.fp64_math_kernel)
    assert {p[0] for p in problems} == {"float64"}
    assert ("float64", "source mentions tl.float64", problems[-1][2]) in problems
    assert any(p[1] == "f64 value in the compiled kernel" for p in problems)
    _, problems = _judge_compiled(compiled_ttir["dot_tf32"], bad.dot_kernel, device="mlu370")
    expected = "input_precision=tf32: MLU370 has no tf32 (use 'ieee')"
    assert [p[:2] for p in problems] == [("dot_dtype", expected)]
    assert _judge_compiled(compiled_ttir["dot_tf32"], bad.dot_kernel, device="mlu590")[1] == []
    _, problems = _judge_compiled(compiled_ttir["int8_dot"], bad.int8_dot_kernel)
    assert [p[1] for p in problems] == [INT8_DOT]
    _, problems = _judge_compiled(compiled_ttir["histogram_int64"], bad.histogram_kernel)
    assert [p[:2] for p in problems] == [("atomic_dtype", "tl.atomic_add on int64")]
    assert problems[0][2].startswith("tests/mlu_bad_kernels.py:")


def test_compiled_trace_reads_the_kernels_ttir(compiled_ttir):
    class CompiledKernel:  # what JITFunction.run returns: only .asm matters here
        asm = {"ttir": compiled_ttir["copy"]}

    class AsyncHandle:  # triton 3.6 may hand back a future of it
        def result(self):
            return CompiledKernel()

    for obj in (CompiledKernel(), AsyncHandle()):
        assert kt.compiled_trace(obj).nram_estimate() == 16 * 1024
    assert kt.compiled_trace(None) is None


def test_launch_cache_steps_aside_while_the_rules_watch(monkeypatch):
    from workbench.ops import _launch

    monkeypatch.setattr(_launch, "_ENABLED", True)  # as on a GPU
    monkeypatch.setattr(_launch, "_cache", {})
    calls = []

    class Kernel:  # records which path each launch took
        arg_names = ["n", "BLOCK"]

        def __getitem__(self, grid):
            return lambda *args, **meta: calls.append(("triton", grid))

    kernel = Kernel()
    with _rules():
        assert _launch.watchers == 1
        for grid in ((3,), (5,)):  # one specialisation key: the second call would take the cache
            _launch.launch(kernel, grid, 64, BLOCK=16)
    assert _launch.watchers == 0
    assert calls == [("triton", (3,)), ("triton", (5,))]  # both through kernel[grid]: both seen by the rules
