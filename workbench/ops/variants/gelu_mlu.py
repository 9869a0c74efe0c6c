"""gelu, MLU style: the generic erf / tanh formulas on the grid-stride elementwise launcher."""

import torch

from ..gelu import SPEC, formula
from .._mlu.elementwise import unary


def gelu(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    return unary(formula(approximate, x.dtype), x)


SPEC.add_variant("mlu", gelu)
