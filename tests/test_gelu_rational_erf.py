"""The rational erf behind gelu's 16-bit results, evaluated in fp32 before any rounding to 16 bits:
within 1e-6 of the float64 GELU everywhere and exact at the signs, zeros, infinities and NaN."""

import math
import sys

import torch

import workbench.ops  # noqa: F401
from workbench.ops._elementwise import unary

gelu_module = sys.modules["workbench.ops.gelu"]


def test_rational_erf_gelu_is_within_a_millionth():
    x = torch.cat([torch.linspace(-12, 12, 4001), torch.tensor([0.0, -0.0, 1e-6, -1e-6, 40.0, -40.0])])
    got = unary(gelu_module._gelu_erf_16bit, x).double()
    want = 0.5 * x.double() * torch.special.erfc(-x.double() / math.sqrt(2))
    assert (got - want).abs().max().item() < 1e-6
    special = unary(gelu_module._gelu_erf_16bit, torch.tensor([float("inf"), -float("inf"), float("nan")]))
    assert special[0].item() == float("inf") and special[1:].isnan().all()  # -inf * 0 is NaN, as torch


def test_sixteen_bit_results_take_the_rational_form():
    assert gelu_module.formula("none", torch.bfloat16) is gelu_module._gelu_erf_16bit
    assert gelu_module.formula("none", torch.float16) is gelu_module._gelu_erf_16bit
    assert gelu_module.formula("none", torch.float32) is gelu_module._gelu_erf
