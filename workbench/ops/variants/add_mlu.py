"""add, MLU style: the generic op's math on the grid-stride elementwise launcher."""

import torch

from ..add import SPEC, _add
from .._mlu.elementwise import binary


def add(input: torch.Tensor, other, *, alpha=1) -> torch.Tensor:
    return binary(_add, input, other, b_scale=alpha, integers=True)


SPEC.add_variant("mlu", add)
