"""masked_fill, MLU style: the generic op's checks and select on the grid-stride ternary launcher."""

import torch

from ..masked_fill import SPEC, _fill_where, check_args
from .._mlu.elementwise import ternary


def masked_fill(input: torch.Tensor, mask: torch.Tensor, value) -> torch.Tensor:
    check_args(input, mask, value)
    return ternary(_fill_where, mask, value, input, input.dtype, names=("mask", "value", "input"),
                   integers=True)


SPEC.add_variant("mlu", masked_fill)
