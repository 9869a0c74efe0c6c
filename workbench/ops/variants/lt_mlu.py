"""lt, MLU style: the generic op's comparison (exact int64 for integers) on the grid-stride launcher."""

import torch

from .._compare import compare
from .._mlu.elementwise import binary
from ..lt import SPEC, _lt


def lt(input: torch.Tensor, other) -> torch.Tensor:
    return compare(_lt, input, other, binary)


SPEC.add_variant("mlu", lt)
