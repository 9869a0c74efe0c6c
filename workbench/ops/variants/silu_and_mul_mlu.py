"""silu_and_mul, MLU style: the fused fp32 silu(gate) * up on the grid-stride elementwise launcher."""

import torch

from ..silu_and_mul import SPEC, _silu_mul
from .._mlu.elementwise import binary


def silu_and_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return binary(_silu_mul, gate, up, names=("gate", "up"))


SPEC.add_variant("mlu", silu_and_mul)
