"""exp, MLU style: tl.exp on fp32 (never on bf16/fp16) on the grid-stride elementwise launcher."""

import torch

from ..exp import SPEC, _exp
from .._mlu.elementwise import unary


def exp(x: torch.Tensor) -> torch.Tensor:
    return unary(_exp, x)


SPEC.add_variant("mlu", exp)
