"""le, MLU style: the generic op's comparison (exact int64 for integers) on the grid-stride launcher."""

import torch

from .._compare import compare
from .._mlu.elementwise import binary
from ..le import SPEC, _le


def le(input: torch.Tensor, other) -> torch.Tensor:
    return compare(_le, input, other, binary)


SPEC.add_variant("mlu", le)
