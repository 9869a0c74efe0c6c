"""silu, MLU style: the generic op's fp32 math on the grid-stride elementwise launcher."""

import torch

from ..silu import SPEC, _silu
from .._mlu.elementwise import unary


def silu(x: torch.Tensor) -> torch.Tensor:
    return unary(_silu, x)


SPEC.add_variant("mlu", silu)
