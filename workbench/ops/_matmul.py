"""The one matmul kernel behind mm, bmm, addmm and linear: `alpha * (a @ b) + beta * bias`, batched.

fp32 accumulation, strided operands (a transposed weight is just strides), an optional bias broadcast
over rows or given per element, and a batch along grid axis 1 (stride 0 broadcasts an operand). Autotuned
on (M, N, K) on GPUs; the tuned configuration is cached per shape, so only a shape's first call pays.
$WORKBENCH_AUTOTUNE=0 (read at import) takes the first configuration that fits M instead: no timing runs and
few compilations, for correctness runs where speed does not matter.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from workbench import backends

from ._common import check_dtype_match, check_same_device, check_tensor
from ._launch import launch
from ._shapes import cdiv

MAX_BATCH = 65535  # grid axis 1 limit on CUDA
AUTOTUNE = os.environ.get("WORKBENCH_AUTOTUNE", "1") != "0"


@triton.jit
def grouped_tile(tile, grid_m, grid_n, GROUP_M: tl.constexpr):
    """(row block, column block) of output tile number `tile` in grouped order: GROUP_M row-blocks share
    the same B columns while they are in cache. Shared by the generic and MLU-style kernels."""
    width = GROUP_M * grid_n
    group_id = tile // width
    group_size = min(grid_m - group_id * GROUP_M, GROUP_M)
    return group_id * GROUP_M + (tile % width) % group_size, (tile % width) // group_size


@triton.jit
def matmul_tile(a_ptr, b_ptr, c_ptr, bias_ptr, i, pid_m, pid_n, M, N, K,
                stride_ab, stride_am, stride_ak, stride_bb, stride_bk, stride_bn, stride_cb, stride_cm,
                stride_biasm, stride_biasn, alpha, beta,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, HAS_BIAS: tl.constexpr,
                SCALED: tl.constexpr, UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr):
    """One output tile of c[i] = alpha * a[i] @ b[i] + beta * bias: the K loop in fp32 and the epilogue.
    Shared by the generic and MLU-style kernels."""
    rm = pid_m.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + i * stride_ab + rm[:, None] * stride_am + rk[None, :] * stride_ak
    b_ptrs = b_ptr + i * stride_bb + rk[:, None] * stride_bk + rn[None, :] * stride_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):  # K == 0: no iteration, the result is the bias (or 0)
        k_left = K - k * BLOCK_K
        a = tl.load(a_ptrs, mask=(rm[:, None] < M) & (rk[None, :] < k_left), other=0.0)
        b = tl.load(b_ptrs, mask=(rk[:, None] < k_left) & (rn[None, :] < N), other=0.0)
        if UPCAST:  # the backend cannot dot these operands directly (e.g. bf16 in the interpreter)
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk
    inside = (rm[:, None] < M) & (rn[None, :] < N)
    if SCALED:
        acc = acc * alpha
    if HAS_BIAS:  # the epilogue of addmm / linear
        bias = tl.load(bias_ptr + rm[:, None] * stride_biasm + rn[None, :] * stride_biasn, mask=inside, other=0.0)
        bias = bias.to(tl.float32)
        if SCALED:
            bias = bias * beta
        acc = acc + bias
    tl.store(c_ptr + i * stride_cb + rm[:, None] * stride_cm + rn[None, :], acc.to(c_ptr.dtype.element_ty),
             mask=inside)


@triton.jit
def _matmul_kernel(a_ptr, b_ptr, c_ptr, bias_ptr, M, N, K,
                   stride_ab, stride_am, stride_ak, stride_bb, stride_bk, stride_bn, stride_cb, stride_cm,
                   stride_biasm, stride_biasn, alpha, beta,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
                   HAS_BIAS: tl.constexpr, SCALED: tl.constexpr, UPCAST: tl.constexpr,
                   INPUT_PRECISION: tl.constexpr):
    # One output tile per program along axis 0, the batch along axis 1.
    pid_m, pid_n = grouped_tile(tl.program_id(0), tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N), GROUP_M)
    matmul_tile(a_ptr, b_ptr, c_ptr, bias_ptr, tl.program_id(1).to(tl.int64), pid_m, pid_n, M, N, K,
                stride_ab, stride_am, stride_ak, stride_bb, stride_bk, stride_bn, stride_cb, stride_cm,
                stride_biasm, stride_biasn, alpha, beta, BLOCK_M, BLOCK_N, BLOCK_K, HAS_BIAS, SCALED, UPCAST,
                INPUT_PRECISION)


def _configs(interpreted: bool):
    if interpreted:  # the interpreter cannot autotune over several configs; big tiles run fastest there
        return [triton.Config({"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32, "GROUP_M": 8})]
    shapes = [(128, 256, 64, 3, 8), (256, 128, 64, 3, 8), (128, 256, 64, 4, 8), (128, 128, 64, 4, 8),
              (128, 128, 64, 4, 4), (128, 128, 32, 4, 4),
              (64, 256, 32, 4, 4), (128, 64, 32, 4, 4), (64, 128, 64, 4, 4), (64, 64, 64, 4, 4),
              (32, 128, 64, 4, 4),
              # small M (decode): narrow N tiles and deep K so that enough programs stream the weight
              (16, 128, 128, 4, 4), (16, 64, 256, 3, 4), (16, 32, 256, 4, 4), (16, 64, 128, 5, 4),
              (16, 32, 512, 3, 4), (16, 16, 512, 4, 4)]
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k, "GROUP_M": 8}, num_stages=s, num_warps=w)
            for m, n, k, s, w in shapes]


def _prune(configs, named_args, **_):
    """Tile heights that fit M: decode-sized M (1-16 rows) never times 128-row tiles, and a large M
    skips the thin ones. Halves the autotuning time of a new shape too."""
    m = named_args["M"]
    limit = (lambda bm: bm <= 32) if m <= 16 else (lambda bm: bm <= 64) if m <= 64 else (lambda bm: bm >= 64)
    fits = [c for c in configs if limit(c.kwargs["BLOCK_M"])] or configs
    return fits if AUTOTUNE else fits[:1]


# The layout is part of the key: a linear's weight (B transposed: stride_bk == 1) wants other tiles than a
# row-major B of the same M, N, K; without it, whichever layout was tuned first served both.
_autotuned = triton.autotune(configs=_configs(backends.active().interpreted),
                             key=["M", "N", "K", "stride_ak", "stride_bk"],
                             prune_configs_by={"early_config_prune": _prune})(_matmul_kernel)
# (M, N, K, dtype, layout, constexprs) -> the winning config's kwargs: later calls skip the autotuner entirely.
_tuned: dict = {}


def check_operands(names: tuple[str, ...], *tensors: torch.Tensor) -> None:
    """Float tensors on the backend's device, one device, one dtype (the first's)."""
    for name, t in zip(names, tensors):
        check_tensor(name, t)
    check_same_device(**dict(zip(names, tensors)))
    for name, t in zip(names[1:], tensors[1:]):
        check_dtype_match(name, t, tensors[0].dtype, names[0])


def matmul(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, M: int, N: int, K: int, batch: int,
           a_strides: tuple[int, int, int], b_strides: tuple[int, int, int], c_strides: tuple[int, int],
           bias: torch.Tensor | None = None, bias_strides: tuple[int, int] = (0, 0),
           alpha: float = 1.0, beta: float = 1.0) -> torch.Tensor:
    """c[i] = alpha * a[i] @ b[i] + beta * bias for i < batch; strides are (batch, row, col); c is written.

    The caller has validated the operands and allocated `c` (row stride c_strides[1], unit column stride).
    """
    if M == 0 or N == 0 or batch == 0:
        return c
    if batch > MAX_BATCH:
        raise ValueError(f"batch: expected at most {MAX_BATCH} matrices, got {batch}")
    has_bias = bias is not None and beta != 0  # torch ignores the bias (even NaN) when beta is 0
    upcast = a.dtype == torch.bfloat16 and not backends.active().capabilities.bf16_dot
    precision = "tf32" if a.dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32 else "ieee"
    meta = {"HAS_BIAS": has_bias, "SCALED": alpha != 1 or (has_bias and beta != 1), "UPCAST": upcast,
            "INPUT_PRECISION": precision}

    def grid(config):
        return (cdiv(M, config["BLOCK_M"]) * cdiv(N, config["BLOCK_N"]), batch)

    args = (a, b, c, bias if has_bias else c, M, N, K, *a_strides, *b_strides, *c_strides, *bias_strides,
            float(alpha), float(beta))
    key = (M, N, K, a.dtype, a_strides[2] == 1, b_strides[1] == 1, *meta.values())
    config = _tuned.get(key)
    if config is None:  # first call of this shape: autotune, then remember the winner
        _autotuned[grid](*args, **meta)
        _tuned[key] = _autotuned.best_config.all_kwargs()
    else:
        launch(_matmul_kernel, grid(config), *args, **meta, **config)
    return c


# Qwen3-8B linear layers as (K, N): MLP up/gate, MLP down, q/o projection, k/v projection, lm_head.
LINEAR_KN = [(4096, 12288), (12288, 4096), (4096, 4096), (4096, 1024), (4096, 151936)]
