"""fill, MLU style: the generic op's validation and output on the grid-stride fill launcher."""

import torch

from ..fill import SPEC, prepare
from .._mlu.movement import fill_into


def fill(x: torch.Tensor, value) -> torch.Tensor:
    return fill_into(prepare(x), value)


fill.into = fill_into  # the in-place form, for the aten overload
SPEC.add_variant("mlu", fill)
