"""mul, MLU style: the generic op's math on the grid-stride elementwise launcher."""

import torch

from ..mul import SPEC, _mul
from .._mlu.elementwise import binary


def mul(input: torch.Tensor, other) -> torch.Tensor:
    return binary(_mul, input, other, integers=True)


SPEC.add_variant("mlu", mul)
