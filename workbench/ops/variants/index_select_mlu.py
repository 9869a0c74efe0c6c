"""index_select, MLU style: the op's validation (`prepare`) and the grid-stride gather of `_mlu.movement`."""

import torch

from ..index_select import SPEC, prepare
from .._mlu.movement import gather_into


def index_select(x: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
    return gather_into(*prepare(x, dim, index))


SPEC.add_variant("mlu", index_select)
