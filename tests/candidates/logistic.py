"""Candidate for a new op: logistic(x) = 1 / (1 + exp(-x)), the sigmoid, through the elementwise launcher.

A new op declares SPEC (unregistered); promotion writes this file to workbench/ops/logistic.py and
appends the register() call.
"""

import torch
import triton
import triton.language as tl

from workbench.ops._elementwise import unary, unary_cases, unary_cost
from workbench.ops.spec import OpSpec


@triton.jit
def _logistic(x):
    # exp(-x) -> inf for x -> -inf gives 1 / inf = 0, the right limit; nan stays nan.
    return 1.0 / (1.0 + tl.exp(-x))


def logistic(x: torch.Tensor) -> torch.Tensor:
    return unary(_logistic, x)


SPEC = OpSpec(
    name="logistic",
    reference=torch.sigmoid,
    impl=logistic,
    cases=unary_cases(),
    cost=unary_cost,
    aten=("aten::sigmoid",),
)
