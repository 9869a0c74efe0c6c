"""cos, MLU style: cos on fp32 (never on bf16/fp16) on the grid-stride elementwise launcher."""

import torch

from .._mlu.elementwise import unary
from ..cos import SPEC, _cos


def cos(x: torch.Tensor) -> torch.Tensor:
    return unary(_cos, x)


SPEC.add_variant("mlu", cos)
