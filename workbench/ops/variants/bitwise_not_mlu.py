"""bitwise_not, MLU style: `~x` in the input's own dtype (bool or integer) on the grid-stride launcher."""

import torch

from .._bitwise import BITWISE_DTYPES
from .._mlu.elementwise import unary
from ..bitwise_not import SPEC, _not


def bitwise_not(x: torch.Tensor) -> torch.Tensor:
    return unary(_not, x, dtypes=BITWISE_DTYPES)


SPEC.add_variant("mlu", bitwise_not)
