"""Shared memory each SDPA prefill config asks for on Hopper, found by compiling offline: no GPU needed.

Compiles `_prefill_kernel` for sm_90 with Triton's nvidia backend (the PyPI wheel ships ptxas) for each
autotuning config, fp32 and bf16 inputs, without and with a float mask (head_dim 128), and prints the
shared memory the compiled kernel needs next to the H100/H200 limit (227 KiB per block). A config above the
limit fails at launch with OutOfResources; every (dtype, mask) row needs at least one that fits.
Slow on a small machine (tens of seconds per compile). From the repo root, on any machine:
    PYTHONPATH=$PWD python benchmarks/sdpa_shared_memory.py
"""

from __future__ import annotations

import importlib
import os

os.environ["WORKBENCH_BACKEND"] = "cpu"
os.environ["TRITON_INTERPRET"] = "0"

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from workbench import backends  # noqa: E402

# The cpu backend interprets kernels; here they must be compiled, so the modules below are imported with
# Triton in compiled mode (the check that the two agree is what a kernel run needs, not this compile).
backends._check_triton_mode = lambda chosen: None
backends.active("cpu")
os.environ["TRITON_INTERPRET"] = "0"
sdpa = importlib.import_module("workbench.ops.scaled_dot_product_attention")

HOPPER_SHARED_LIMIT = 232448  # bytes per block (227 KiB), H100 and H200


def shared_bytes(dtype: str, mask_kind: int, config: triton.Config) -> int:
    kernel = sdpa._prefill_kernel
    consts = dict(
        CAUSAL=False,
        MASK_KIND=mask_kind,
        UPCAST=False,
        EVEN_D=True,
        EVEN_DV=True,
        BLOCK_D=128,
        BLOCK_DV=128,
        TILES=2 if mask_kind else 0,  # with a mask: the launch that reads it (`_tile_launches`)
        **config.kwargs,
    )
    pointers = {"Q", "K", "V", "M", "Out"}
    signature = {
        name: "constexpr"
        if name in consts
        else "*i32"
        if name == "BOUNDS"
        else f"*{dtype}"
        if name in pointers
        else "fp32"
        if name == "scale_log2"
        else "i32"
        for name in kernel.arg_names
    }
    source = ASTSource(
        fn=kernel,
        signature=signature,
        constexprs={(kernel.arg_names.index(k),): v for k, v in consts.items()},
    )
    compiled = triton.compile(
        source,
        target=GPUTarget("cuda", 90, 32),
        options={"num_warps": config.num_warps, "num_stages": config.num_stages},
    )
    return compiled.metadata.shared


def main() -> None:
    print(f"triton {triton.__version__}, sm_90, head_dim 128; limit {HOPPER_SHARED_LIMIT} bytes")
    for dtype in ("fp32", "bf16"):
        for mask_kind, mask in ((0, "no mask"), (2, "float mask")):
            for config in sdpa._prefill_configs(interpreted=False):
                need = shared_bytes(dtype, mask_kind, config)
                tiles = (
                    config.kwargs["BLOCK_M"],
                    config.kwargs["BLOCK_N"],
                    config.num_warps,
                    config.num_stages,
                )
                print(
                    f"{dtype} {mask:10s} (BLOCK_M, BLOCK_N, warps, stages) {tiles}: {need:7d} bytes "
                    f"{'fits' if need <= HOPPER_SHARED_LIMIT else 'TOO MUCH'}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
