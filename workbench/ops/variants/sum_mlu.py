"""sum, MLU style: programs that fill the cores walk tiles of results (grid-stride), fp32 accumulation
(`ops._mlu.reduce`)."""

import torch

from ..sum import SPEC
from .._mlu.reduce import reduce_sum


def sum(x: torch.Tensor, dim=None, keepdim: bool = False, *,
        dtype: torch.dtype | None = None) -> torch.Tensor:
    return reduce_sum(x, dim, keepdim, dtype)


SPEC.add_variant("mlu", sum)
