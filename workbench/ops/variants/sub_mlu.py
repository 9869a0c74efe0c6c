"""sub, MLU style: the generic op's math on the grid-stride elementwise launcher."""

import torch

from ..sub import SPEC, _sub
from .._mlu.elementwise import binary


def sub(input: torch.Tensor, other, *, alpha=1) -> torch.Tensor:
    return binary(_sub, input, other, b_scale=alpha, integers=True)


SPEC.add_variant("mlu", sub)
