"""pow, MLU style: the generic op's fp32 math (exact paths for common exponents, exp2/log2 otherwise) on
the grid-stride elementwise launchers."""

import torch

from ..pow import SPEC, math_for
from .._mlu.elementwise import binary, unary


def pow(input: torch.Tensor, exponent) -> torch.Tensor:
    fn, operand = math_for(exponent)
    if operand is None:
        return unary(fn, input, name="input")
    return binary(fn, input, operand, names=("input", "exponent"))


SPEC.add_variant("mlu", pow)
