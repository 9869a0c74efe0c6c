"""mm, MLU style: persistent programs (one per cluster of 4 cores) walk the output tiles in a grid-stride
loop; the tile shape comes from a small tuning table pruned by the NRAM estimate.

`matmul` here is the MLU counterpart of workbench.ops._matmul.matmul (batch, bias, alpha/beta): the mlu
variants of bmm, addmm and linear call it with the arguments their op's `prepare` builds.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from workbench import backends

from ..mm import SPEC, prepare
from .._launch import launch
from .._matmul import grouped_tile, matmul_tile
from .._mlu import sizing

# Tuning table, in order of preference: (BLOCK_M, BLOCK_N, BLOCK_K). A config is used when its tiles fit
# NRAM (see `nram_bytes`) and BLOCK_M / BLOCK_N do not exceed what M / N need (small-M decode GEMMs take
# the 16-row tiles with a deep K). Not tuned on an MLU: no MLU was available.
CONFIGS = [(128, 128, 64), (64, 128, 64), (128, 64, 64), (64, 64, 64), (32, 128, 64), (16, 128, 128),
           (16, 64, 128), (16, 32, 64)]
GROUP_M = 8


@triton.jit
def _mm_kernel(a_ptr, b_ptr, c_ptr, bias_ptr, M, N, K, batch,
               stride_ab, stride_am, stride_ak, stride_bb, stride_bk, stride_bn, stride_cb, stride_cm,
               stride_biasm, stride_biasn, alpha, beta,
               BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
               HAS_BIAS: tl.constexpr, SCALED: tl.constexpr, UPCAST: tl.constexpr,
               INPUT_PRECISION: tl.constexpr):
    # c[i] = alpha * a[i] @ b[i] + beta * bias, as workbench.ops._matmul's kernel; the batch is part of
    # the tile index, so one grid-stride loop covers every matrix (no grid axis for it).
    grid_m = tl.cdiv(M, BLOCK_M)
    grid_n = tl.cdiv(N, BLOCK_N)
    per_matrix = grid_m * grid_n
    for t in range(tl.program_id(0).to(tl.int64), batch * per_matrix, tl.num_programs(0).to(tl.int64)):
        pid_m, pid_n = grouped_tile(t % per_matrix, grid_m, grid_n, GROUP_M)
        matmul_tile(a_ptr, b_ptr, c_ptr, bias_ptr, t // per_matrix, pid_m, pid_n, M, N, K,
                    stride_ab, stride_am, stride_ak, stride_bb, stride_bk, stride_bn, stride_cb, stride_cm,
                    stride_biasm, stride_biasn, alpha, beta, BLOCK_M, BLOCK_N, BLOCK_K, HAS_BIAS, SCALED, UPCAST,
                    INPUT_PRECISION)


def nram_bytes(config: tuple[int, int, int], element_size: int, has_bias: bool = True) -> int:
    """NRAM estimate of one program: the A and B tiles it loads, the fp32 accumulator and the bias tile
    of the epilogue (pick_config counts it always: one table serves mm, bmm, addmm and linear)."""
    bm, bn, bk = config
    return (bm * bk + bk * bn) * element_size + bm * bn * (4 + element_size * has_bias)


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


def matmul(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, M: int, N: int, K: int, batch: int,
           a_strides: tuple[int, int, int], b_strides: tuple[int, int, int], c_strides: tuple[int, int],
           bias: torch.Tensor | None = None, bias_strides: tuple[int, int] = (0, 0),
           alpha: float = 1.0, beta: float = 1.0) -> torch.Tensor:
    """workbench.ops._matmul.matmul in the MLU style (same arguments, from the ops' `prepare`): c[i] =
    alpha * a[i] @ b[i] + beta * bias for i < batch; persistent programs walk batch x output tiles."""
    if M == 0 or N == 0 or batch == 0:
        return c
    has_bias = bias is not None and beta != 0  # torch ignores the bias (even NaN) when beta is 0
    bm, bn, bk = pick_config(M, N, a.element_size())
    # bf16 operands are upcast only where the backend cannot dot them (the interpreter); tf32 only where
    # torch allows it for matmuls and the target MLU has it.
    upcast = a.dtype == torch.bfloat16 and not backends.active().capabilities.bf16_dot
    tf32 = a.dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32 and sizing.target().tf32
    programs = sizing.programs(batch * triton.cdiv(M, bm) * triton.cdiv(N, bn))
    launch(_mm_kernel, (programs,), a, b, c, bias if has_bias else c, M, N, K, batch, *a_strides, *b_strides,
           *c_strides, *bias_strides, float(alpha), float(beta), BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk,
           GROUP_M=GROUP_M, HAS_BIAS=has_bias, SCALED=alpha != 1 or (has_bias and beta != 1), UPCAST=upcast,
           INPUT_PRECISION="tf32" if tf32 else "ieee", num_warps=sizing.NUM_WARPS)
    return c


def mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    c, M, N, K = prepare(a, b)
    return matmul(a, b, c, M, N, K, 1, (0, *a.stride()), (0, *b.stride()), (0, c.stride(0)))


SPEC.add_variant("mlu", mm)
