"""bitwise_and, MLU style: the generic op's math (exact int64, bool and integers) on the grid-stride launcher."""

import torch

from .._bitwise import BITWISE_DTYPES
from .._mlu.elementwise import binary
from ..bitwise_and import SPEC, _and


def bitwise_and(input: torch.Tensor, other) -> torch.Tensor:
    return binary(_and, input, other, dtypes=BITWISE_DTYPES)


SPEC.add_variant("mlu", bitwise_and)
