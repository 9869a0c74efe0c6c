"""div, MLU style: the generic op's fp32 math on the grid-stride elementwise launcher."""

import torch

from ..div import SPEC, _div
from .._mlu.elementwise import binary


def div(input: torch.Tensor, other) -> torch.Tensor:
    return binary(_div, input, other)


SPEC.add_variant("mlu", div)
