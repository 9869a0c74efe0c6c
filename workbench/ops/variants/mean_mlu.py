"""mean, MLU style: programs that fill the cores walk tiles of results (grid-stride), fp32 accumulation
(`ops._mlu.reduce`)."""

import torch

from ..mean import SPEC
from .._mlu.reduce import reduce_sum


def mean(x: torch.Tensor, dim=None, keepdim: bool = False, *,
         dtype: torch.dtype | None = None) -> torch.Tensor:
    return reduce_sum(x, dim, keepdim, dtype, mean=True)


SPEC.add_variant("mlu", mean)
