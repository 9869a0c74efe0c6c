"""max along one dim, MLU style: programs that fill the cores walk tiles of results (grid-stride), fp32
compares; NaN wins, ties give the first index (`ops._mlu.reduce`)."""

import torch

from ..max import SPEC
from .._mlu.reduce import reduce_max


def max(x: torch.Tensor, dim: int, keepdim: bool = False) -> torch.return_types.max:
    return reduce_max(x, dim, keepdim)


SPEC.add_variant("mlu", max)
