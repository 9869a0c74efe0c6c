"""bmm: batched matrix product `a[i] @ b[i]` of 3-D tensors (torch.bmm), on the shared matmul kernel."""

import torch

from . import _matmul
from ._common import new_output
from ._library import generic
from .spec import Case, Cost, OpSpec, input_grads, nbytes, randn, register


def prepare(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Validate; (output, the keyword arguments of `_matmul.matmul`).
    Shared by the generic and MLU launchers."""
    _matmul.check_operands(("a", "b"), a, b)
    if a.dim() != 3 or b.dim() != 3:
        raise ValueError(f"a, b: expected 3-D tensors, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    (B, M, K), (B2, K2, N) = a.shape, b.shape
    if B != B2 or K != K2:
        raise ValueError(f"b: expected shape ({B}, {K}, N) to match a {tuple(a.shape)}, got {tuple(b.shape)}")
    c = new_output((B, M, N), a.dtype, a.device)
    return c, dict(
        a=a,
        b=b,
        c=c,
        M=M,
        N=N,
        K=K,
        batch=B,
        a_strides=a.stride(),
        b_strides=b.stride(),
        c_strides=c.stride()[:2],
    )


def bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    c, problem = prepare(a, b)
    return _matmul.matmul(**problem)


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, dc):
    """da = dc @ b^T, db = a^T @ dc per batch, on our bmm's custom operator."""
    a, b = ctx.saved_tensors
    run = generic("bmm")
    return input_grads(
        ctx,
        run(dc, b.transpose(1, 2)) if ctx.needs_input_grad[0] else None,
        run(a.transpose(1, 2), dc) if ctx.needs_input_grad[1] else None,
    )


def _cost(a, b):
    (B, M, K), N = a.shape, b.shape[2]
    return Cost(bytes=nbytes(a, b) + B * M * N * a.element_size(), flops=2 * B * M * N * K)


def _case(name, B, M, K, N, b_t=False, a_broadcast=False, big=False):
    def make(dtype, device, gen):
        a = randn((1 if a_broadcast else B, M, K), dtype, device, gen)
        b = randn((B, N, K) if b_t else (B, K, N), dtype, device, gen)
        return (a.expand(B, M, K) if a_broadcast else a, b.transpose(1, 2) if b_t else b), {}

    return Case(name, make, big=big)


SPEC = register(
    OpSpec(
        name="bmm",
        reference=torch.bmm,
        impl=bmm,
        cases={
            "quick": lambda: [_case("3x17x33x20", 3, 17, 33, 20), _case("2x64x32x48", 2, 64, 32, 48)],
            "edge": lambda: [
                _case("b transposed (k^T) 4x9x16x24", 4, 9, 16, 24, b_t=True),
                _case("a broadcast over batch (stride 0) 3x8x12x10", 3, 8, 12, 10, a_broadcast=True),
                _case("K=1 outer product (rope freqs) 1x64x1x80", 1, 64, 1, 80),
                _case("M=1 decode 5x1x40x30", 5, 1, 40, 30),
                _case("K=0 2x3x0x4", 2, 3, 0, 4),
                _case("empty batch 0x4x5x6", 0, 4, 5, 6),
            ],
            "llm": lambda: [
                _case("attn scores decode 32x1x128x2048", 32, 1, 128, 2048, b_t=True),
                _case("attn values decode 32x1x2048x128", 32, 1, 2048, 128),
                _case("attn scores prefill 32x2048x128x2048", 32, 2048, 128, 2048, b_t=True),
                _case("rope freqs 1x64x1x2048", 1, 64, 1, 2048),
            ],
        },
        cost=_cost,
        tolerance={torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 1e-2},
        aten_impls={"aten::bmm": lambda impl, self, mat2: impl(self, mat2)},
        backward=_backward,
        setup_context=_setup_context,
    )
)
