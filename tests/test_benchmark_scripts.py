"""The benchmark scripts a GPU run starts, in their small cpu forms: each runs to the end and writes the
summary keys its results promise. GPU time is short; a script that fails on its first line wastes it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL_KEYS = {
    "prefill_vs_compiled",
    "prefill_vs_eager",
    "decode_vs_compiled",
    "decode_vs_eager",
    "logits_rel_err",
    "logits_rel_err_vs_fp32",
    "token_agreement",
    "compile_s",
    "compile_s_native",
}


def run(script: str, *args: str, out: Path) -> dict:
    """Run benchmarks/`script` with `args` and --out `out`; its summary.json."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WORKBENCH_COMMIT": "test"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args, "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (summary,) = out.glob("benchmarks/results/*/*/summary.json")
    return json.loads(summary.read_text())


def test_pt2_model_smoke(tmp_path):
    summary = run("pt2_model.py", "--smoke", "--rounds", "3", out=tmp_path)
    assert {"device", "torch", "triton", "commit", "command"} <= set(summary)
    assert set(summary["models"]) == {"qwen3-8b", "llama-3-8b"}
    for name, result in summary["models"].items():
        assert MODEL_KEYS <= set(result), (name, MODEL_KEYS - set(result))
        assert result["complete"] and 0 <= result["token_agreement"] <= 1
        assert set(result["logits_rel_err_vs_fp32"]) == {"eager", "compiled", "ours"}


@pytest.mark.parametrize(
    "script, args",
    [
        ("repeat_kv.py", ("--smoke",)),
        (
            "host_cost.py",
            ("--stub", "--ops", "add", "--calls", "20", "--rounds", "1", "--model", "--preset", "tiny")
            + ("--layers", "1", "--prefill-len", "8", "--decode-batch", "1", "--decode-prompt", "4")
            + ("--decode-tokens", "3"),
        ),
    ],
    ids=["repeat_kv", "host_cost"],
)
def test_benchmark_smoke(tmp_path, script, args):
    summary = run(script, *args, out=tmp_path)
    assert {"device", "torch", "triton", "commit", "command"} <= set(summary)
    if script == "host_cost.py":
        assert set(summary["ops"]["add"]) == {"native_us", "use_ops_us", "direct_us"}
        model = summary["model_aten_only"]
        assert {"prefill_vs_eager", "decode_vs_eager", "decode_device_ms_per_step"} <= set(model)
        handled = {row["aten_op"]: row["handled"] for row in model["decode_coverage"]["rows"]}
        assert handled.get("aten::linear", 0) > 0, handled
