"""What each kernel launch asks of a Hopper GPU, found by compiling offline: no GPU needed.

Records launches on the cpu backend made to launch as an H100 would (`launch_as_h100`) and builds each
for sm_90 as the JIT specialises it on a GPU (workbench.profiling.gpu_build); a tuned kernel is built
once per config its tuner offers on a GPU (`--first-config-only`: the first, the one that suits LLM
shapes). Prints, per build, the shared memory it asks for (above the 227 KiB a block may have on an H100
or H200 the build fails at launch, and a tuner drops that config without a word), registers per thread
and spilled bytes.

By default, the tuned kernels: scaled_dot_product_attention forward and backward at 1 x 16 heads (4 KV
heads) x 64 x 128, whose sizes and strides fall in the same specialisation classes as the LLM shapes, for
is_causal, transformers' causal boolean mask and its padded `finfo.min` mask; mm at 128x4096x256 (the TMA
kernel's large tiles) and 8x4096x256 (the pointer kernel's decode tiles). `--ops`: every registry op's
quick cases instead (sizes there are small: block sizes that follow the problem are the small problem's).

From the repo root, on any machine (a few seconds per build; every config, bf16: ~10 minutes):
    PYTHONPATH=$PWD python benchmarks/hopper_build.py [--ops] [--dtype bf16 fp32] [--first-config-only]
        [--out F]
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import sys
from collections.abc import Iterator

os.environ["WORKBENCH_BACKEND"] = "cpu"
os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402
import triton  # noqa: E402

from workbench.backends.base import Capabilities, DeviceProperties, LaunchPolicy  # noqa: E402
from workbench.backends.cpu import CpuBackend  # noqa: E402
from workbench.profiling import gpu_build  # noqa: E402  (imports no op module)


def launch_as_h100() -> None:
    """Make the cpu backend launch as an H100 would: an H100's flags (bf16 dot, tf32, TMA: the matmul's
    descriptor path), one program per tile with its shared memory per block, 132 SMs;
    the elementwise block, sized from the policy at import, too. The interpreter then computes some
    results wrongly (bf16 dots) and slowly (small blocks): the launches are what matter here."""
    CpuBackend.capabilities = Capabilities(bf16_dot=True, tf32=True, fp8=True, tma=True)
    CpuBackend.policy = LaunchPolicy(onchip_bytes=gpu_build.SM90_SHARED_LIMIT)
    CpuBackend.properties = lambda self: DeviceProperties("cpu, launching as an H100", 132, 80 << 30)
    for name in ("_elementwise", "_movement", "cat", "copy"):
        importlib.import_module(f"workbench.ops.{name}").BLOCK = 1024 * LaunchPolicy.block_scale


import workbench.ops  # noqa: E402

launch_as_h100()
from workbench.ops import REGISTRY, _attention_backward, _matmul  # noqa: E402
from workbench.profiling.correctness import make_inputs  # noqa: E402
from workbench.store.meta import run_metadata  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def gpu_configs() -> dict[str, tuple[list[triton.Config], object]]:
    """Tuned kernel's name -> (the configs its tuner offers on a GPU, its prune or None)."""
    sdpa = importlib.import_module("workbench.ops.scaled_dot_product_attention")
    tma_groups = _matmul._tma_configs()  # with an H100's SMs (`launch_as_h100`)
    out = {
        sdpa._prefill_kernel.fn.__name__: (sdpa._prefill_configs(interpreted=False), None),
        _matmul._matmul_kernel.fn.__name__: (_matmul._configs(interpreted=False), _matmul._prune),
        _matmul._matmul_tma_kernel.fn.__name__: (
            sum(tma_groups.values(), []),
            lambda configs, named: _matmul.tma_candidates(named, tma_groups),
        ),
    }
    for kernel in _attention_backward._TUNERS:
        out[kernel.fn.__name__] = (_attention_backward._configs(interpreted=False), None)
    return out


def cases(dtype: torch.dtype) -> dict:
    """Case name -> a call of SDPA forward and backward (GQA), or of a matmul, on the cpu."""
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

    def matmul(m, k, n):
        return lambda: workbench.ops.mm(torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype))

    return {
        "is_causal": run(is_causal=True),
        "causal bool mask": run(mask=causal),
        "padded finfo mask": run(mask=padded),
        "mm 128x4096x256": matmul(128, 4096, 256),  # 16-bit: the TMA kernel's large tiles
        "mm 8x4096x256": matmul(8, 4096, 256),  # decode size: the pointer kernel's thin tiles
    }


def op_cases(dtype: torch.dtype) -> dict:
    """Every registry op's quick cases, in `dtype` where the op takes it (else its first dtype)."""
    out = {}
    for name, spec in REGISTRY.items():
        op_dtype = dtype if dtype in spec.dtypes else spec.dtypes[0]
        for i, case in enumerate(spec.case_list("quick")):
            out[f"{name}: {case.name}"] = functools.partial(_call, spec, case, op_dtype, i)
    return out


def _call(spec, case, dtype: torch.dtype, seed: int):
    args, kwargs = make_inputs(case, dtype, seed=seed)
    return spec.impl(*args, **kwargs)


def builds(dtypes: list[str], first_only: bool = False, ops: bool = False) -> Iterator[dict]:
    """One row per (dtype, case, launch, GPU config): what the build asks for; built a case at a time.
    `ops`: every op's quick cases instead of the tuned kernels' (each build once)."""
    configs = gpu_configs()
    seen = set()  # builds made
    for dtype in dtypes:
        for case, call in (op_cases if ops else cases)(DTYPES[dtype]).items():
            todo, rows = [], []
            for launch in gpu_build.record_launches(call):  # as an H100 launches (`launch_as_h100`)
                offered, prune = configs.get(launch["kernel"], ([None], None))
                if prune is not None:  # the configs a GPU would time for this problem
                    offered = prune(offered, {**launch["ints"], **launch["constexprs"]})
                for config in offered[:1] if first_only else offered:
                    item = gpu_build.with_config(launch, config) if config else launch
                    key = json.dumps({**item, "ints": None}, sort_keys=True)  # the build's inputs
                    if key in seen:
                        continue
                    seen.add(key)
                    todo.append(item)
                    consts = launch["constexprs"]
                    tiles = "x".join(
                        str(config.kwargs[k])
                        for k in ("BLOCK_M", "BLOCK_N", "BLOCK_K")
                        if config and k in config.kwargs
                    )
                    rows.append(
                        {
                            "dtype": dtype,
                            "case": case,
                            "kernel": launch["kernel"],
                            "constexprs": {
                                k: consts[k] for k in ("TILES", "MASK_KIND", "CAUSAL") if k in consts
                            },
                            "config": f"{tiles} w{config.num_warps} s{config.num_stages}" if config else "-",
                        }
                    )
            for row, built in zip(rows, gpu_build.build(todo, resources=True)):
                row.update(
                    {k: built.get(k) for k in ("error", "shared", "registers", "spill_stores", "spill_loads")}
                )
                row["fits"] = built["shared"] is not None and built["shared"] <= gpu_build.SM90_SHARED_LIMIT
                yield row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", nargs="+", default=["bf16", "fp32"], choices=sorted(DTYPES))
    parser.add_argument("--first-config-only", action="store_true", help="each tuned kernel's first config")
    parser.add_argument("--ops", action="store_true", help="every op's quick cases instead")
    parser.add_argument("--out", help="also write the rows as JSON here")
    argv = sys.argv[1:]
    args = parser.parse_args(argv)
    print(
        f"triton {triton.__version__}, sm_90; a block's shared memory: {gpu_build.SM90_SHARED_LIMIT} bytes",
        flush=True,
    )
    rows = []
    for r in builds(args.dtype, args.first_config_only, args.ops):
        rows.append(r)
        what = (
            r["error"][:80]
            if r["error"]
            else (
                f"shared {r['shared']:6d} {'fits' if r['fits'] else 'TOO MUCH'}  regs {r['registers']:3d}  "
                f"spills {r['spill_stores']}/{r['spill_loads']} B"
            )
        )
        print(
            f"{r['dtype']} {r['case']:17s} {r['kernel']:15s} {str(r['constexprs']):45s} {r['config']:16s} "
            + what,
            flush=True,
        )
    if args.out:
        meta = {
            **run_metadata(),
            "target": "sm_90",
            "command": "python benchmarks/hopper_build.py " + " ".join(argv),
        }
        with open(args.out, "w") as f:
            json.dump({**meta, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
