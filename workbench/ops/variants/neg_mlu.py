"""neg, MLU style: the generic op's math on the grid-stride elementwise launcher."""

import torch

from ..neg import SPEC, _neg
from .._mlu.elementwise import unary


def neg(x: torch.Tensor) -> torch.Tensor:
    return unary(_neg, x)


SPEC.add_variant("mlu", neg)
