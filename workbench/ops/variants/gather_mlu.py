"""gather, MLU style: the op's validation (`prepare`) and the grid-stride gather of `_mlu.movement`."""

import torch

from ..gather import SPEC, prepare
from .._mlu.movement import gather_into


def gather(x: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
    return gather_into(*prepare(x, dim, index))


SPEC.add_variant("mlu", gather)
