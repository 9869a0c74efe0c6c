"""addmm: `beta * bias + alpha * (a @ b)` (torch.addmm), the bias fused into the shared matmul kernel."""

import torch

from . import _matmul
from ._common import new_output
from .spec import Case, Cost, OpSpec, nbytes, randn, register


def prepare(
    bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor, beta=1, alpha=1
) -> tuple[torch.Tensor, dict]:
    """Validate; (output, the keyword arguments of `_matmul.matmul`).
    Shared by the generic and MLU launchers."""
    _matmul.check_operands(("a", "b", "bias"), a, b, bias)
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(f"a, b: expected 2-D matrices, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    (M, K), (K2, N) = a.shape, b.shape
    if K != K2:
        raise ValueError(f"b: expected {K} rows to match a's {K} columns, got shape {tuple(b.shape)}")
    try:
        full = bias.expand(M, N)
    except RuntimeError:
        raise ValueError(f"bias: shape {tuple(bias.shape)} does not broadcast to ({M}, {N})") from None
    for name, v in (("beta", beta), ("alpha", alpha)):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"{name}: expected a real number, got {type(v).__name__}")
    c = new_output((M, N), a.dtype, a.device)
    return c, dict(
        a=a,
        b=b,
        c=c,
        M=M,
        N=N,
        K=K,
        batch=1,
        a_strides=(0, *a.stride()),
        b_strides=(0, *b.stride()),
        c_strides=(0, c.stride(0)),
        bias=full,
        bias_strides=full.stride(),
        alpha=alpha,
        beta=beta,
    )


def addmm(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *, beta=1, alpha=1) -> torch.Tensor:
    c, problem = prepare(bias, a, b, beta, alpha)
    return _matmul.matmul(**problem)


def _cost(bias, a, b, **_):
    (M, K), N = a.shape, b.shape[1]
    return Cost(bytes=nbytes(a, b, bias) + M * N * a.element_size(), flops=2 * M * N * K + 2 * M * N)


def _case(name, M, K, N, bias_shape=None, b_t=False, nan_bias=False, big=False, **kwargs):
    def make(dtype, device, gen):
        bias = randn(bias_shape if bias_shape is not None else (N,), dtype, device, gen)
        if nan_bias:
            bias[::2] = float("nan")
        a = randn((M, K), dtype, device, gen)
        b = randn((N, K) if b_t else (K, N), dtype, device, gen)
        return (bias, a, b.t() if b_t else b), dict(kwargs)

    return Case(name, make, big=big)


SPEC = register(
    OpSpec(
        name="addmm",
        reference=torch.addmm,
        impl=addmm,
        cases={
            "quick": lambda: [
                _case("row bias 17x33x65", 17, 33, 65),
                _case("full bias 64x32x48", 64, 32, 48, (64, 48)),
            ],
            "edge": lambda: [
                _case("alpha and beta 24x40x56 (linear weight)", 24, 40, 56, b_t=True, beta=0.5, alpha=-2.0),
                _case("column bias 9x16x12", 9, 16, 12, (9, 1)),
                _case("beta=0 ignores a NaN bias 6x8x10", 6, 8, 10, nan_bias=True, beta=0),
                _case("M=1 1x64x80", 1, 64, 80),
                _case("K=0 gives the bias 4x0x6", 4, 0, 6),
            ],
            "llm": lambda: [
                _case(f"M={m} K={k} N={n}", m, k, n, b_t=True)
                for m in (1, 2048)
                for k, n in _matmul.LINEAR_KN[:2]
            ],
        },
        cost=_cost,
        tolerance={torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 1e-2},
        aten_impls={
            "aten::addmm": lambda impl, self, mat1, mat2, beta=1, alpha=1: impl(
                self, mat1, mat2, beta=beta, alpha=alpha
            )
        },
    )
)
