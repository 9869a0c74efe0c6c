"""copy, MLU style: the generic op's validation and output on the grid-stride copy launcher."""

import torch

from ..copy import SPEC, prepare
from .._mlu.movement import copy_into


def copy(x: torch.Tensor, dtype: torch.dtype | None = None, *,
         memory_format: torch.memory_format = torch.preserve_format) -> torch.Tensor:
    return copy_into(prepare(x, dtype, memory_format), x)


copy.into = copy_into  # the in-place form, for the aten overload
SPEC.add_variant("mlu", copy)
