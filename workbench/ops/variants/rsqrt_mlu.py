"""rsqrt, MLU style: rsqrt on fp32 (never on bf16/fp16) on the grid-stride elementwise launcher."""

import torch

from ..rsqrt import SPEC, _rsqrt
from .._mlu.elementwise import unary


def rsqrt(x: torch.Tensor) -> torch.Tensor:
    return unary(_rsqrt, x)


SPEC.add_variant("mlu", rsqrt)
