"""linear, MLU style: the op's own validation (`prepare`) and mm_mlu's persistent matmul kernel."""

from __future__ import annotations

import torch

from ..linear import SPEC, prepare
from .mm_mlu import matmul


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    out, problem = prepare(x, weight, bias)
    matmul(**problem)
    return out


SPEC.add_variant("mlu", linear)
