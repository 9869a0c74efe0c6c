"""Launches recorded on the interpreter and built for sm_90 as a GPU's JIT would build them
(workbench.profiling.gpu_build, benchmarks/hopper_build.py): no GPU needed."""

import json
import os
import subprocess
import sys

import pytest
import torch
import triton
import triton.language as tl
from helpers import REPO

from workbench import backends
from workbench.ops._mask_bounds import mask_bounds
from workbench.profiling import gpu_build

pytestmark = pytest.mark.skipif(
    not backends.active().interpreted, reason="the launches are recorded on the cpu"
)


@triton.jit(do_not_specialize=["free"])
def _scale(x_ptr, out_ptr, n, stride, free, scale, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    ok = offs < n
    tl.store(out_ptr + offs * stride, tl.load(x_ptr + offs * stride, mask=ok) * scale + free, mask=ok)


def test_a_recorded_launch_is_typed_as_the_jit_specialises_it():
    x = torch.zeros(40, dtype=torch.float16)
    launches = gpu_build.record_launches(lambda: _scale[(1,)](x, x[1:], 32, 1, 32, 0.5, BLOCK=32))
    (launch,) = launches
    assert launch["signature"] == {
        "x_ptr": "*fp16",
        "out_ptr": "*fp16",
        "n": "i32",
        "stride": "constexpr",  # 1
        "free": "i32",
        "scale": "fp32",
        "BLOCK": "constexpr",
    }
    assert launch["constexprs"] == {"stride": 1, "BLOCK": 32}
    # x[1:] starts 2 bytes in; `free` is not specialised though 32 is a multiple of 16
    assert launch["hints"] == {"x_ptr": 16, "n": 16}
    plain = gpu_build.record_launches(
        lambda: _scale[(1,)](x, x[1:], 32, 1, 32, 0.5, BLOCK=32), specialise=False
    )
    assert plain[0]["hints"] == {} and plain[0]["signature"]["stride"] == "i32"
    config = triton.Config({"BLOCK": 64}, num_warps=2, num_stages=1)
    tuned = gpu_build.with_config(launch, config)
    assert tuned["constexprs"]["BLOCK"] == 64 and (tuned["num_warps"], tuned["num_stages"]) == (2, 1)


def test_a_package_kernel_builds_with_its_hints_and_resources():
    mask = torch.ones(1, 1, 64, 64, dtype=torch.bool).tril()
    (launch,) = gpu_build.record_launches(lambda: mask_bounds(mask, by_rows=True))
    (built,) = gpu_build.build([launch], resources=True)
    assert built["error"] == "" and built["registers"] > 0 and built["spill_stores"] == 0
    assert built["shared"] < gpu_build.SM90_SHARED_LIMIT
    assert "tt.divisibility = 16" in built["ttir"]


def test_attention_launches_fit_a_hopper_block_in_their_first_config(tmp_path):
    """The first config of each tuned attention kernel is its fastest at LLM shapes; one that asks for more
    shared memory than a block has fails at launch and the tuner quietly takes a slower one (masked
    prefill once ran with 64x64 tiles at twice is_causal's time that way)."""
    out = tmp_path / "builds.json"
    env = dict(os.environ, PYTHONPATH=str(REPO), TRITON_CACHE_DIR=str(tmp_path / "triton"))
    done = subprocess.run(
        [
            sys.executable,
            "benchmarks/hopper_build.py",
            "--dtype",
            "bf16",
            "--first-config-only",
            "--out",
            str(out),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    kinds = {(r["case"], r["kernel"], r["constexprs"].get("TILES")) for r in rows}
    for case in ("is_causal", "causal bool mask"):  # the flash backward (it takes no float mask)
        assert (case, "_q_kernel", None) in kinds
    assert {("causal bool mask", "_prefill_kernel", 1), ("causal bool mask", "_prefill_kernel", 2)} <= kinds
    assert ("is_causal", "_prefill_kernel", 0) in kinds
    assert all(r["error"] == "" for r in rows), [r for r in rows if r["error"]]
    assert all(r["fits"] for r in rows), [r for r in rows if not r["fits"]]
