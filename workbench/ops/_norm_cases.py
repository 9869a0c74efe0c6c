"""Case sets shared by the normalisation ops (rms_norm, layer_norm)."""

from __future__ import annotations

import torch

from .spec import Case, randn


def norm_cases(with_bias: bool, eps: float, mixed_params: bool) -> dict:
    """Cases calling `op(x, weight[, bias], eps=eps)` over the last dim;
    `normalized_shape` is added by the op.

    `mixed_params` adds fp32 weights with fp16/bf16 x, where the native op accepts that on every device.
    """

    def case(name, shape, transform=None, affine=True, param_dtype=None, big=False):
        def make(dtype, device, gen):
            x = randn(shape, dtype, device, gen, scale=3.0) + 0.5
            x = transform(x) if transform else x
            n = x.shape[-1]
            params = {}
            if affine:
                params["weight"] = randn((n,), param_dtype or dtype, device, gen) + 1.0
                if with_bias:
                    params["bias"] = randn((n,), param_dtype or dtype, device, gen)
            return (x,), {**params, "eps": eps}

        return Case(name, make, big=big)

    return {
        "quick": lambda: [case("8x64", (8, 64)), case("5x1000", (5, 1000))],
        "edge": lambda: [
            case("rank3 2x7x96", (2, 7, 96)),
            case("rank4 non-contiguous", (3, 4, 5, 48), transform=lambda x: x.transpose(0, 2)),
            case("no weight", (6, 33), affine=False),
            *([case("fp32 params", (4, 80), param_dtype=torch.float32)] if mixed_params else []),
            case("long row 2x20000", (2, 20000)),
            case("one column", (9, 1)),
            case("zero rows 0x32", (0, 32)),
            case("big 524289x4096", (524289, 4096), big=True),
        ],
        "llm": lambda: [
            case("decode 1x4096", (1, 4096)),
            case("decode 64x4096", (64, 4096)),
            case("prefill 2048x4096", (2048, 4096)),
            case("qk-norm 2048x32x128", (2048, 32, 128)),
        ],
    }
