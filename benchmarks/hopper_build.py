"""What each attention launch asks of a Hopper GPU, found by compiling offline: no GPU needed.

Runs scaled_dot_product_attention forward and backward on the cpu backend at 1 x 16 heads (4 KV heads)
x 64 x 128, whose sizes and strides fall in the same specialisation classes as the LLM shapes, for
is_causal, transformers' causal boolean mask and its padded `finfo.min` mask; records each launch and
builds it for sm_90 as the JIT specialises it on a GPU (workbench.profiling.gpu_build), a tuned kernel
once per config its tuner offers on a GPU. Prints, per build, the shared memory it asks for (above the
227 KiB a block may have on an H100 or H200 the config fails at launch and the tuner drops it), registers
per thread and spilled bytes. The interpreter's bf16 dot is wrong, so its backend upcasts bf16 operands;
the recording here takes a GPU's capabilities so that the launches are a GPU's.

From the repo root, on any machine (a few seconds per build; every config of both dtypes: ~5 minutes):
    PYTHONPATH=$PWD python benchmarks/hopper_build.py [--dtype bf16 fp32] [--first-config-only] [--out F]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from unittest import mock

os.environ["WORKBENCH_BACKEND"] = "cpu"
os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402
import triton  # noqa: E402

import workbench.ops  # noqa: E402  (before triton: the cpu backend runs the interpreter)
from workbench.backends.cpu import CpuBackend  # noqa: E402
from workbench.ops import _attention_backward  # noqa: E402
from workbench.profiling import gpu_build  # noqa: E402

ATTENTION = (
    "workbench.ops.scaled_dot_product_attention",
    "workbench.ops._attention_backward",
    "workbench.ops._mask",
)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def gpu_configs() -> dict[str, list[triton.Config]]:
    """Tuned kernel's name -> the configs its tuner offers on a GPU."""
    import importlib

    sdpa = importlib.import_module("workbench.ops.scaled_dot_product_attention")
    out = {sdpa._prefill_kernel.fn.__name__: sdpa._prefill_configs(interpreted=False)}
    for kernel in _attention_backward._TUNERS:
        out[kernel.fn.__name__] = _attention_backward._configs(interpreted=False)
    return out


def cases(dtype: torch.dtype) -> dict:
    """Case name -> a call of SDPA forward and backward, GQA, on the cpu."""
    B, H, KV, L, D = 1, 16, 4, 64, 128
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    padded = torch.zeros(L, L, dtype=dtype).masked_fill(~causal, torch.finfo(dtype).min)
    padded[:, :5] = torch.finfo(dtype).min  # left padding: those keys removed from every row

    def run(mask=None, is_causal=False):
        def call():
            q, k, v = (torch.randn(B, h, L, D, dtype=dtype).requires_grad_() for h in (H, KV, KV))
            out = workbench.ops.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=is_causal, enable_gqa=True
            )
            out.sum().backward()

        return call

    return {
        "is_causal": run(is_causal=True),
        "causal bool mask": run(mask=causal),
        "padded finfo mask": run(mask=padded),
    }


def gpu_launches(call) -> list[dict]:
    """`call`'s launches, recorded with a GPU's bf16 dot (the interpreter's numbers are wrong, the launches
    are a GPU's)."""
    gpu_like = dataclasses.replace(CpuBackend.capabilities, bf16_dot=True)
    with mock.patch.object(CpuBackend, "capabilities", gpu_like):
        return gpu_build.record_launches(call)


def builds(dtypes: list[str], first_only: bool = False) -> list[dict]:
    """One row per (dtype, case, launch, GPU config): what the build asks for."""
    configs = gpu_configs()
    todo, rows = [], []
    for dtype in dtypes:
        for case, call in cases(DTYPES[dtype]).items():
            for launch in gpu_launches(call):
                if not launch["module"].startswith(ATTENTION):
                    continue  # the masked backward's matmul and softmax: their configs here are the cpu's
                offered = configs.get(launch["kernel"], [None])
                for config in offered[:1] if first_only else offered:
                    todo.append(gpu_build.with_config(launch, config) if config else launch)
                    consts = launch["constexprs"]
                    rows.append(
                        {
                            "dtype": dtype,
                            "case": case,
                            "kernel": launch["kernel"],
                            "constexprs": {
                                k: consts[k] for k in ("TILES", "MASK_KIND", "CAUSAL") if k in consts
                            },
                            "config": f"{config.kwargs['BLOCK_M']}x{config.kwargs['BLOCK_N']} "
                            f"w{config.num_warps} s{config.num_stages}"
                            if config
                            else "-",
                        }
                    )
    for row, built in zip(rows, gpu_build.build(todo, resources=True)):
        row.update({k: built.get(k) for k in ("error", "shared", "registers", "spill_stores", "spill_loads")})
        row["fits"] = built["shared"] is not None and built["shared"] <= gpu_build.SM90_SHARED_LIMIT
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", nargs="+", default=["bf16", "fp32"], choices=sorted(DTYPES))
    parser.add_argument("--first-config-only", action="store_true", help="each tuned kernel's first config")
    parser.add_argument("--out", help="also write the rows as JSON here")
    args = parser.parse_args()
    rows = builds(args.dtype, args.first_config_only)
    print(
        f"triton {triton.__version__}, sm_90; shared memory limit {gpu_build.SM90_SHARED_LIMIT} bytes a block"
    )
    for r in rows:
        what = (
            r["error"][:80]
            if r["error"]
            else (
                f"shared {r['shared']:6d} {'fits' if r['fits'] else 'TOO MUCH'}  regs {r['registers']:3d}  "
                f"spills {r['spill_stores']}/{r['spill_loads']} B"
            )
        )
        print(
            f"{r['dtype']} {r['case']:17s} {r['kernel']:15s} {str(r['constexprs']):45s} {r['config']:13s} "
            + what
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"triton": triton.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
