"""linear_cross_entropy: `cross_entropy((x @ weight.T).float(), target)` without materialising the logits.

The LM head and its loss fused: rows of x are taken in chunks; per chunk the logits (chunk x vocab, our
matmul) give the per-row losses (our cross_entropy kernel) and are dropped. The backward recomputes each
chunk's logits, turns them into dlogits (cross_entropy's backward kernel), then dx for the chunk
(dlogits @ weight) and an fp32 accumulation of dweight (dlogits^T @ x). Peak extra memory is one chunk of
logits instead of N x vocab (a 2048 x 151936 fp32 logits tensor is 1.2 GiB). A fused op: it replaces the
chain linear -> cross_entropy and has no ATen overload. The loss is float32 whatever x's dtype, as a
causal LM's loss is (transformers upcasts the logits before the cross-entropy): a bf16 loss near 12 could
only move in steps of 1/16. Each row's loss is rounded to x's dtype by the cross_entropy kernel; their sum
and mean are taken in float32.
"""

from __future__ import annotations

import torch

from ._common import check_same_device, check_tensor
from ._library import backward_op, generic
from .cross_entropy import REDUCTIONS, cross_entropy_backward
from .spec import Case, Cost, OpSpec, input_grads, nbytes, randn, register

# Logit elements per chunk (128 MiB in bf16): about 440 rows of a 151936-word vocabulary, so that the
# chunk's matmuls (rows x hidden x vocab, and dweight's sum over the rows) stay large enough to run near the
# device's matmul rate, while the logits in memory stay a small part of the whole [tokens, vocab].
CHUNK_ELEMENTS = 2**26


def _chunk(n_rows: int, vocab: int, chunk_rows: int) -> int:
    return chunk_rows if chunk_rows > 0 else max(1, min(n_rows, CHUNK_ELEMENTS // max(vocab, 1)))


def _check(x, weight, target, reduction):
    check_tensor("x", x)
    check_tensor("weight", weight)
    check_tensor("target", target, dtypes=(torch.int64,))
    check_same_device(x=x, weight=weight, target=target)
    if x.dim() != 2 or weight.dim() != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(
            f"x, weight: expected [N, H] and [V, H], got {tuple(x.shape)} and {tuple(weight.shape)}"
        )
    if target.shape != x.shape[:1]:
        raise ValueError(f"target: expected shape ({x.shape[0]},), got {tuple(target.shape)}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: expected one of {REDUCTIONS}, got {reduction!r}")


def linear_cross_entropy(
    x: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    chunk_rows: int = 0,
) -> torch.Tensor:
    """float32 loss of `target` under softmax(x @ weight.T), rows in chunks of `chunk_rows` (0: automatic)."""
    _check(x, weight, target, reduction)
    n = x.shape[0]
    step = _chunk(n, weight.shape[0], chunk_rows)
    linear, cross_entropy = generic("linear"), generic("cross_entropy")
    losses = torch.empty(n, dtype=torch.float32, device=x.device)
    for start in range(0, n, step):
        logits = linear(x[start : start + step], weight)
        losses[start : start + step] = cross_entropy(
            logits, target[start : start + step], ignore_index, "none", label_smoothing
        )
    if reduction == "none":
        return losses
    total = losses.sum()
    if reduction == "mean":
        total = total / (target != ignore_index).sum()  # every row ignored: NaN, as torch gives
    return total


def _backward_fake(grad, x, weight, target, ignore_index, reduction, label_smoothing, chunk_rows):
    return x.new_empty(x.shape), weight.new_empty(weight.shape)


@backward_op("linear_cross_entropy_backward", _backward_fake)
def linear_cross_entropy_backward(
    grad: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    chunk_rows: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(dx, dweight): per chunk, logits again, dlogits, dx rows and an fp32 sum of dweight."""
    n = x.shape[0]
    step = _chunk(n, weight.shape[0], chunk_rows)
    linear, mm = generic("linear"), generic("mm")
    dx = torch.empty_like(x)
    dw = torch.zeros(weight.shape, dtype=torch.float32, device=x.device)
    if reduction == "mean":  # each row's share: the gradient over the count of rows not ignored
        grad = grad.float() / (target != ignore_index).sum()  # 1/N rounded to bf16 would scale every gradient
    for start in range(0, n, step):
        rows, t = x[start : start + step], target[start : start + step]
        logits = linear(rows, weight)
        g = grad[start : start + step] if reduction == "none" else grad
        dlogits = cross_entropy_backward(
            g, logits, t, ignore_index, "none" if reduction == "none" else "sum", label_smoothing
        )
        dx[start : start + step] = linear(dlogits, weight.t())
        dw += mm(dlogits.t(), rows)
    return dx, dw.to(weight.dtype)


def _setup_context(ctx, inputs, output):
    x, weight, target, ctx.ignore_index, ctx.reduction, ctx.label_smoothing, ctx.chunk_rows = inputs
    ctx.save_for_backward(x, weight, target)


def _backward(ctx, grad):
    x, weight, target = ctx.saved_tensors
    dx, dw = linear_cross_entropy_backward(
        grad, x, weight, target, ctx.ignore_index, ctx.reduction, ctx.label_smoothing, ctx.chunk_rows
    )
    return input_grads(ctx, dx, dw, None, None, None, None, None)


def _reference(x, weight, target, ignore_index=-100, reduction="mean", label_smoothing=0.0, chunk_rows=0):
    return torch.nn.functional.cross_entropy(
        torch.nn.functional.linear(x, weight).float(),
        target,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
    )


def _cost(x, weight, target, *args, **kwargs):
    return Cost(bytes=nbytes(x, weight, target), flops=2 * x.shape[0] * weight.shape[0] * x.shape[1])


def _case(name, n, h, vocab, reduction="mean", ignored=0.0, smoothing=0.0, chunk_rows=0):
    def make(dtype, device, gen):
        x = randn((n, h), dtype, device, gen)
        w = randn((vocab, h), dtype, device, gen, scale=h**-0.5)
        t = torch.randint(0, vocab, (n,), device=device, generator=gen)
        if ignored:
            t[torch.rand((n,), device=device, generator=gen) < ignored] = -100
        kwargs = {"reduction": reduction, "chunk_rows": chunk_rows}
        if smoothing:
            kwargs["label_smoothing"] = smoothing
        return (x, w, t), kwargs

    return Case(name, make)


SPEC = register(
    OpSpec(
        name="linear_cross_entropy",
        reference=_reference,
        impl=linear_cross_entropy,
        cases={
            "quick": lambda: [
                _case("8x32 vocab 100", 8, 32, 100),
                _case("9x16 vocab 50 sum, ignore, chunks of 4", 9, 16, 50, "sum", ignored=0.3, chunk_rows=4),
            ],
            "edge": lambda: [
                _case("none, chunks of 3", 7, 16, 40, "none", chunk_rows=3),
                _case("label smoothing 0.1, ignore", 10, 24, 60, ignored=0.3, smoothing=0.1, chunk_rows=4),
                _case("all ignored: mean is NaN", 4, 8, 10, ignored=1.0),
            ],
            "llm": lambda: [
                _case("prefill 2048x1024 vocab 151936", 2048, 1024, 151936),
                _case("prefill 2048x4096 vocab 151936", 2048, 4096, 151936),
            ],
        },
        cost=_cost,
        tolerance={torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 1e-2},
        doc="Fused LM head + cross_entropy in row chunks, never the full logits; no ATen overload.",
        backward=_backward,
        setup_context=_setup_context,
    )
)
