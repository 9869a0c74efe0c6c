"""sin, MLU style: sin on fp32 (never on bf16/fp16) on the grid-stride elementwise launcher."""

import torch

from .._mlu.elementwise import unary
from ..sin import SPEC, _sin


def sin(x: torch.Tensor) -> torch.Tensor:
    return unary(_sin, x)


SPEC.add_variant("mlu", sin)
