"""mm, MLU style: persistent programs (one per cluster of 4 cores) walk the output tiles in a grid-stride
loop; the tile shape comes from a small tuning table pruned by the NRAM estimate."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from workbench import backends

from ..mm import SPEC, prepare
from .._launch import launch
from .._mlu import sizing

# Tuning table, in order of preference: (BLOCK_M, BLOCK_N, BLOCK_K). A config is used when its tiles fit
# NRAM (see `nram_bytes`) and BLOCK_M / BLOCK_N do not exceed what M / N need (small-M decode GEMMs take
# the 16-row tiles with a deep K). Not tuned on an MLU: no MLU was available.
CONFIGS = [(128, 128, 64), (64, 128, 64), (128, 64, 64), (64, 64, 64), (32, 128, 64), (16, 128, 128),
           (16, 64, 128), (16, 32, 64)]
GROUP_M = 8


@triton.jit
def _mm_kernel(a_ptr, b_ptr, c_ptr, M, N, K, stride_am, stride_ak, stride_bk, stride_bn, stride_cm,
               BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
               UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr):
    grid_m = tl.cdiv(M, BLOCK_M)
    grid_n = tl.cdiv(N, BLOCK_N)
    width = GROUP_M * grid_n
    for tile in range(tl.program_id(0), grid_m * grid_n, tl.num_programs(0)):
        # Grouped order: GROUP_M row-blocks share the same B columns while they are on chip.
        group_id = tile // width
        group_size = min(grid_m - group_id * GROUP_M, GROUP_M)
        pid_m = group_id * GROUP_M + (tile % width) % group_size
        pid_n = (tile % width) // group_size
        rm = pid_m.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
        rn = pid_n.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
        rk = tl.arange(0, BLOCK_K)
        a_ptrs = a_ptr + rm[:, None] * stride_am + rk[None, :] * stride_ak
        b_ptrs = b_ptr + rk[:, None] * stride_bk + rn[None, :] * stride_bn
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k in range(0, tl.cdiv(K, BLOCK_K)):
            k_left = K - k * BLOCK_K
            a = tl.load(a_ptrs, mask=(rm[:, None] < M) & (rk[None, :] < k_left), other=0.0)
            b = tl.load(b_ptrs, mask=(rk[:, None] < k_left) & (rn[None, :] < N), other=0.0)
            if UPCAST:  # the backend cannot dot these operands directly (bf16 in the interpreter)
                a = a.to(tl.float32)
                b = b.to(tl.float32)
            acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)
            a_ptrs += BLOCK_K * stride_ak
            b_ptrs += BLOCK_K * stride_bk
        tl.store(c_ptr + rm[:, None] * stride_cm + rn[None, :], acc.to(c_ptr.dtype.element_ty),
                 mask=(rm[:, None] < M) & (rn[None, :] < N))


def nram_bytes(config: tuple[int, int, int], element_size: int) -> int:
    """NRAM estimate of one program: the A and B tiles it loads plus the fp32 accumulator."""
    bm, bn, bk = config
    return (bm * bk + bk * bn) * element_size + bm * bn * 4


def pick_config(M: int, N: int, element_size: int) -> tuple[int, int, int]:
    """The first config of the table that fits NRAM and is not wider than the problem needs."""
    budget = sizing.target().nram_bytes * sizing.NRAM_FILL
    fitting = [c for c in CONFIGS if nram_bytes(c, element_size) <= budget]
    if not fitting:
        raise ValueError(f"no mm config fits {budget:.0f} bytes of NRAM; smallest needs "
                         f"{min(nram_bytes(c, element_size) for c in CONFIGS)}")
    need_m, need_n = triton.next_power_of_2(M), triton.next_power_of_2(N)
    for bm, bn, bk in fitting:
        if bm <= max(16, need_m) and bn <= max(32, need_n):
            return bm, bn, bk
    return fitting[-1]


def mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    c, M, N, K = prepare(a, b)
    if M == 0 or N == 0:
        return c
    bm, bn, bk = pick_config(M, N, a.element_size())
    # bf16 operands are upcast only where the backend cannot dot them (the interpreter); tf32 only where
    # torch allows it for matmuls and the target MLU has it.
    upcast = a.dtype == torch.bfloat16 and not backends.active().capabilities.bf16_dot
    tf32 = a.dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32 and sizing.target().tf32
    programs = sizing.programs(triton.cdiv(M, bm) * triton.cdiv(N, bn))
    launch(_mm_kernel, (programs,), a, b, c, M, N, K, a.stride(0), a.stride(1), b.stride(0), b.stride(1),
           c.stride(0), BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=GROUP_M, UPCAST=upcast,
           INPUT_PRECISION="tf32" if tf32 else "ieee", num_warps=sizing.NUM_WARPS)
    return c


SPEC.add_variant("mlu", mm)
