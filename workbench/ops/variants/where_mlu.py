"""where, MLU style: the generic op's select and result dtype on the grid-stride ternary launcher."""

import torch

from ..where import SPEC, _result_type, _select
from .._mlu.elementwise import ternary


def where(condition: torch.Tensor, input, other) -> torch.Tensor:
    return ternary(_select, condition, input, other, _result_type(input, other), integers=True)


SPEC.add_variant("mlu", where)
