"""div: true division `input / other` with broadcasting and type promotion (torch.div, no rounding mode)."""

import torch
import triton
import triton.language as tl  # noqa: F401  (the interpreter needs tl visible in jit functions)

from ._elementwise import binary, binary_cases, binary_cost
from .spec import Case, OpSpec, register, same_arguments, without_big


@triton.jit
def _div(a, b):
    return a / b


def div(input: torch.Tensor, other) -> torch.Tensor:
    return binary(_div, input, other)


def _cases() -> dict:
    """The shared binary cases with denominators kept at least 0.5 from zero: a fp16 quotient past 65504
    would be inf where the float64 reference is finite."""

    def away_from_zero(case: Case) -> Case:
        def make(d, dev, g):
            (a, b), kwargs = case.make(d, dev, g)
            if isinstance(b, torch.Tensor):
                b = torch.where(b < 0, b - 0.5, b + 0.5)
            return (a, b), kwargs

        return Case(case.name, make, case.big)

    shared = without_big(binary_cases())  # the binary launcher's big case is add's
    return {name: (lambda f=f: [away_from_zero(c) for c in f()]) for name, f in shared.items()}


SPEC = register(
    OpSpec(
        name="div",
        reference=torch.div,
        impl=div,
        cases=_cases(),
        cost=binary_cost,
        # aten::div.Scalar calls div.Tensor with the scalar wrapped;
        # div.Tensor_mode (rounding) is not claimed.
        aten_impls={"aten::div.Tensor": same_arguments},
    )
)
