"""mm: 2-D matrix product `a @ b` (torch.mm), fp32 accumulation, strided operands allowed."""

import torch

from . import _matmul
from ._common import new_output
from ._library import generic
from .spec import Case, Cost, OpSpec, input_grads, nbytes, randn, register


def prepare(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, int, int, int]:
    """Validate; (output, M, N, K). Shared by every mm launcher (generic, MLU style)."""
    _matmul.check_operands(("a", "b"), a, b)
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(f"a, b: expected 2-D matrices, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    (M, K), (K2, N) = a.shape, b.shape
    if K != K2:
        raise ValueError(f"b: expected {K} rows to match a's {K} columns, got shape {tuple(b.shape)}")
    return new_output((M, N), a.dtype, a.device), M, N, K


def mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    c, M, N, K = prepare(a, b)
    return _matmul.matmul(a, b, c, M, N, K, 1, (0, *a.stride()), (0, *b.stride()), (0, c.stride(0)))


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, dc):
    """da = dc @ b^T, db = a^T @ dc, on our mm's custom operator (operands read through their strides)."""
    a, b = ctx.saved_tensors
    run = generic("mm")
    return input_grads(
        ctx,
        run(dc, b.t()) if ctx.needs_input_grad[0] else None,
        run(a.t(), dc) if ctx.needs_input_grad[1] else None,
    )


def _cost(a, b):
    (M, K), N = a.shape, b.shape[1]
    return Cost(bytes=nbytes(a, b) + M * N * a.element_size(), flops=2 * M * N * K)


def _case(name, M, K, N, a_t=False, b_t=False, big=False):
    def make(dtype, device, gen):
        a = randn((K, M) if a_t else (M, K), dtype, device, gen)
        b = randn((N, K) if b_t else (K, N), dtype, device, gen)
        return (a.t() if a_t else a, b.t() if b_t else b), {}

    return Case(name, make, big=big)


SPEC = register(
    OpSpec(
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
            "llm": lambda: (
                [_case("4096^3", 4096, 4096, 4096)]
                + [_case(f"M={m} K={k} N={n}", m, k, n) for m in (1, 16, 2048) for k, n in _matmul.LINEAR_KN]
            ),
        },
        cost=_cost,
        # Accumulating over K up to 12288 in fp32 (ieee) leaves ~1e-5 relative error: above fp32's default.
        tolerance={torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 1e-2},
        aten=("aten::mm",),
        aten_impls={"aten::mm": lambda impl, self, mat2: impl(self, mat2)},
        backward=_backward,
        setup_context=_setup_context,
    )
)
