"""bitwise_or, MLU style: the generic op's math (exact int64, bool and integers) on the grid-stride launcher."""

import torch

from .._bitwise import BITWISE_DTYPES
from .._mlu.elementwise import binary
from ..bitwise_or import SPEC, _or


def bitwise_or(input: torch.Tensor, other) -> torch.Tensor:
    return binary(_or, input, other, dtypes=BITWISE_DTYPES)


SPEC.add_variant("mlu", bitwise_or)
