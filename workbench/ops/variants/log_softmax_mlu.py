"""log_softmax, MLU style: softmax's mlu kernel with LOG=True (rows packed into big tiles, programs that
fill the cores, fp32 math)."""

import torch

from ..log_softmax import SPEC
from .softmax_mlu import softmax_rows


def log_softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return softmax_rows(x, dim, log=True)


SPEC.add_variant("mlu", log_softmax)
