"""linear: `x @ weight.T + bias` over the last dim of x (torch.nn.functional.linear), shared matmul kernel.

The weight is read in place through its strides (no transposed copy); leading dims of x are flattened
into rows, which copies only when they cannot be viewed as one dim.
"""

import math

import torch

from . import _matmul
from ._common import Plans, geometry, new_output, new_output_of
from ._launch import aligned
from ._library import generic
from .spec import Case, Cost, OpSpec, input_grads, nbytes, randn, register, same_arguments


def prepare(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> tuple[torch.Tensor, dict]:
    """Validate; (output, the keyword arguments of `_matmul.matmul`).
    Shared by the generic and MLU launchers."""
    if bias is None:
        _matmul.check_operands(("x", "weight"), x, weight)
    else:
        _matmul.check_operands(("x", "weight", "bias"), x, weight, bias)
    if x.dim() == 0 or weight.dim() != 2:
        raise ValueError(
            f"x, weight: expected x with at least 1 dim and a 2-D weight, got shapes "
            f"{tuple(x.shape)} and {tuple(weight.shape)}"
        )
    N, K = weight.shape
    if x.shape[-1] != K:
        raise ValueError(
            f"weight: expected {x.shape[-1]} columns (x's last dim), got shape {tuple(weight.shape)}"
        )
    if bias is not None and tuple(bias.shape) not in ((N,), ()):
        raise ValueError(f"bias: expected shape ({N},), got {tuple(bias.shape)}")
    M = math.prod(x.shape[:-1])
    rows = x if x.dim() == 2 else x.reshape(M, K)  # not (-1, K): that is ambiguous when K == 0
    c = new_output((M, N), x.dtype, x.device)
    bias_strides = (0, bias.stride(0) if bias is not None and bias.dim() else 0)
    return (c if x.dim() == 2 else c.view(*x.shape[:-1], N)), dict(
        a=rows,
        b=weight,
        c=c,
        M=M,
        N=N,
        K=K,
        batch=1,
        a_strides=(0, *rows.stride()),
        b_strides=(0, weight.stride(1), weight.stride(0)),
        c_strides=(0, c.stride(0)),
        bias=bias,
        bias_strides=bias_strides,
    )


# Geometry of (x, weight, bias) -> [output shape, `_matmul.matmul`'s sizes and strides, the pointer kernel's
# launch (`_matmul.pointer_site`; False until tried)] where x is read in place: each decode step repeats the
# same few projections.
_plans = Plans()


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    plan_key = geometry(x, weight) if bias is None else geometry(x, weight, bias)
    plan = _plans.get(plan_key)
    if plan is not None:  # checked before
        shape, sizes, pointer = plan
        out = new_output_of(x, shape)
        if pointer:
            grid, site, ints, workspace = pointer
            site(
                grid,
                x,
                weight,
                out,
                out if bias is None else bias,
                *(workspace or _matmul._split_workspace(x.device)),  # a split launch's: fetched per launch
                *ints,
                aligned=aligned(x, weight) if bias is None else aligned(x, weight, bias),
            )
            return out
        _matmul.matmul(x, weight, out, **sizes, bias=bias)
        if pointer is False:  # the first repeat: the pointer kernel's launch, if the problem takes it
            plan[2] = _matmul.pointer_site(x, weight, out, **sizes, bias=bias)
        return out
    out, problem = prepare(x, weight, bias)
    _matmul.matmul(**problem)
    if problem["a"].data_ptr() == x.data_ptr() and out.is_contiguous():
        sizes = {k: v for k, v in problem.items() if k not in ("a", "b", "c", "bias")}
        _plans.put(plan_key, [tuple(out.shape), sizes, False])
    return out


def _setup_context(ctx, inputs, output):
    x, weight, bias = inputs
    ctx.save_for_backward(x, weight)
    ctx.bias_shape = None if bias is None else bias.shape


def _backward(ctx, dy):
    """dx = dy @ W (linear with W^T read in place), dW = dy^T @ x (mm), dbias = dy summed over rows."""
    x, weight = ctx.saved_tensors
    need = (*ctx.needs_input_grad, False, False)
    M, (N, K) = math.prod(x.shape[:-1]), weight.shape  # not reshape(-1, K): ambiguous when K == 0
    rows = dy.reshape(M, N)
    dx = generic("linear")(dy, weight.t()) if need[0] else None
    dw = generic("mm")(rows.t(), x.reshape(M, K)) if need[1] else None
    db = rows.sum(0).sum_to_size(ctx.bias_shape) if need[2] else None
    return input_grads(ctx, dx, dw, db)


def _cost(x, weight, bias=None):
    M, (N, K) = x.numel() // max(1, x.shape[-1]), weight.shape
    return Cost(bytes=nbytes(x, weight, bias) + M * N * x.element_size(), flops=2 * M * N * K)


def _case(name, x_shape, N, bias=True, x_t=False, big=False):
    def make(dtype, device, gen):
        x = randn(x_shape[::-1] if x_t else x_shape, dtype, device, gen)
        w = randn((N, x_shape[-1]), dtype, device, gen, scale=max(1, x_shape[-1]) ** -0.5)
        kwargs = {"bias": randn((N,), dtype, device, gen)} if bias else {}
        return (x.t() if x_t else x, w), kwargs

    return Case(name, make, big=big)


SPEC = register(
    OpSpec(
        name="linear",
        reference=torch.nn.functional.linear,
        impl=linear,
        cases={
            "quick": lambda: [
                _case("8x32 -> 48 with bias", (8, 32), 48),
                _case("17x40 -> 24", (17, 40), 24, bias=False),
            ],
            "edge": lambda: [
                _case("rank3 input 2x7x40 -> 24", (2, 7, 40), 24),
                _case("rank1 input 40 -> 24", (40,), 24),
                _case("transposed input 33x20 -> 16", (33, 20), 16, x_t=True),
                _case("K=0 5x0 -> 6 gives the bias", (5, 0), 6),
                _case("M=0 0x12 -> 6", (0, 12), 6),
            ],
            "llm": lambda: (
                [
                    _case(f"M={m} K={k} N={n}", (m, k), n, bias=False)
                    for m in (1, 2048)
                    for k, n in _matmul.LINEAR_KN
                ]
                + [_case("decode batch 64 K=4096 N=4096", (64, 4096), 4096, bias=False)]
            ),
        },
        cost=_cost,
        tolerance={torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 1e-2},
        aten_impls={"aten::linear": same_arguments},
        backward=_backward,
        setup_context=_setup_context,
    )
)
