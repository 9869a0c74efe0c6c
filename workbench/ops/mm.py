"""mm: 2-D matrix product `a @ b` (torch.mm), fp32 accumulation, strided operands allowed."""

import torch
import triton
import triton.language as tl

from workbench import backends

from ._common import check_dtype_match, check_same_device, check_tensor, new_output
from .spec import Case, Cost, OpSpec, nbytes, randn, register


@triton.jit
def _mm_kernel(a_ptr, b_ptr, c_ptr, M, N, K, stride_am, stride_ak, stride_bk, stride_bn, stride_cm,
               BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
               UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr):
    # Grouped launch order: GROUP_M row-blocks share the same B columns while they are in L2.
    pid = tl.program_id(0)
    grid_m = tl.cdiv(M, BLOCK_M)
    grid_n = tl.cdiv(N, BLOCK_N)
    width = GROUP_M * grid_n
    group_id = pid // width
    group_size = min(grid_m - group_id * GROUP_M, GROUP_M)
    pid_m = group_id * GROUP_M + (pid % width) % group_size
    pid_n = (pid % width) // group_size

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
        if UPCAST:  # the backend cannot dot these operands directly (e.g. bf16 in the interpreter)
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk
    c_ptrs = c_ptr + rm[:, None] * stride_cm + rn[None, :]
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=(rm[:, None] < M) & (rn[None, :] < N))


def _configs(interpreted: bool):
    if interpreted:  # the interpreter cannot autotune over several configs; big tiles run fastest there
        return [triton.Config({"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32, "GROUP_M": 8})]
    shapes = [(128, 256, 64, 3, 8), (256, 128, 64, 3, 8), (128, 128, 64, 4, 4), (128, 128, 32, 4, 4),
              (64, 256, 32, 4, 4), (128, 64, 32, 4, 4), (64, 128, 64, 4, 4), (64, 64, 64, 4, 4),
              (32, 128, 64, 4, 4),
              # small M (decode): narrow N tiles and deep K so that enough programs stream the weight
              (16, 128, 128, 4, 4), (16, 64, 256, 3, 4), (16, 32, 256, 4, 4), (16, 64, 128, 5, 4)]
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k, "GROUP_M": 8}, num_stages=s, num_warps=w)
            for m, n, k, s, w in shapes]


_mm = triton.autotune(configs=_configs(backends.active().interpreted), key=["M", "N", "K"])(_mm_kernel)


def prepare(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Validate; (output, whether a kernel must still fill it: False for empty or K=0 products)."""
    check_tensor("a", a)
    check_tensor("b", b)
    check_same_device(a=a, b=b)
    check_dtype_match("b", b, a.dtype, "a")
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(f"a, b: expected 2-D matrices, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    (M, K), (K2, N) = a.shape, b.shape
    if K != K2:
        raise ValueError(f"b: expected {K} rows to match a's {K} columns, got shape {tuple(b.shape)}")
    c = new_output((M, N), a.dtype, a.device)
    if M == 0 or N == 0:
        return c, False
    if K == 0:
        return c.zero_(), False
    return c, True


def dot_options(dtype: torch.dtype, tf32_allowed: bool) -> tuple[bool, str]:
    """(UPCAST, INPUT_PRECISION) for tl.dot on `dtype` operands on the active backend.

    UPCAST: the backend cannot dot bf16 directly (the interpreter); tf32 only where torch allows it
    for matmuls and the target supports it.
    """
    upcast = dtype == torch.bfloat16 and not backends.active().capabilities.bf16_dot
    tf32 = dtype == torch.float32 and tf32_allowed and torch.backends.cuda.matmul.allow_tf32
    return upcast, "tf32" if tf32 else "ieee"


def mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    c, needed = prepare(a, b)
    if not needed:
        return c
    (M, K), N = a.shape, b.shape[1]
    upcast, precision = dot_options(a.dtype, tf32_allowed=True)

    def grid(meta):
        return (triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"]),)

    _mm[grid](a, b, c, M, N, K, a.stride(0), a.stride(1), b.stride(0), b.stride(1), c.stride(0),
              UPCAST=upcast, INPUT_PRECISION=precision)
    return c


def _cost(a, b):
    (M, K), N = a.shape, b.shape[1]
    return Cost(bytes=nbytes(a, b) + M * N * a.element_size(), flops=2 * M * N * K)


def _case(name, M, K, N, a_t=False, b_t=False, big=False):
    def make(dtype, device, gen):
        a = randn((K, M) if a_t else (M, K), dtype, device, gen)
        b = randn((N, K) if b_t else (K, N), dtype, device, gen)
        return (a.t() if a_t else a, b.t() if b_t else b), {}

    return Case(name, make, big=big)


_LINEAR_KN = [(4096, 12288), (12288, 4096), (4096, 4096), (4096, 151936)]

SPEC = register(OpSpec(
    name="mm",
    reference=torch.mm,
    impl=mm,
    cases={
        "quick": lambda: [_case("64x32x48", 64, 32, 48), _case("17x33x65", 17, 33, 65)],
        "edge": lambda: [
            _case("M=1 1x64x80", 1, 64, 80),
            _case("b transposed (linear weight) 24x40x56", 24, 40, 56, b_t=True),
            _case("a transposed 70x20x30", 70, 20, 30, a_t=True),
            _case("odd 5x3x7", 5, 3, 7),
            _case("K=0 4x0x6", 4, 0, 6),
            _case("M=0 0x8x6", 0, 8, 6),
            _case("big a 524417x4096 @ 4096x16", 524417, 4096, 16, big=True),
        ],
        "llm": lambda: [_case("4096^3", 4096, 4096, 4096)] + [
            _case(f"M={m} K={k} N={n}", m, k, n) for m in (1, 16, 2048) for k, n in _LINEAR_KN
        ],
    },
    cost=_cost,
    # Accumulating over K up to 12288 in fp32 (ieee) leaves ~1e-5 relative error: above fp32's default.
    tolerance={torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 1e-2},
    aten=("aten::mm",),
))
