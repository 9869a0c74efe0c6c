"""gt, MLU style: the generic op's comparison (exact int64 for integers) on the grid-stride launcher."""

import torch

from .._compare import compare
from .._mlu.elementwise import binary
from ..gt import SPEC, _gt


def gt(input: torch.Tensor, other) -> torch.Tensor:
    return compare(_gt, input, other, binary)


SPEC.add_variant("mlu", gt)
