"""addmm, MLU style: the op's own validation (`prepare`) and mm_mlu's persistent matmul kernel."""

import torch

from ..addmm import SPEC, prepare
from .mm_mlu import matmul


def addmm(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *, beta=1, alpha=1) -> torch.Tensor:
    out, problem = prepare(bias, a, b, beta, alpha)
    matmul(**problem)
    return out


SPEC.add_variant("mlu", addmm)
