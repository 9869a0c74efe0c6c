"""rsqrt: elementwise `1 / sqrt(x)` (torch.rsqrt); negative inputs give NaN, zero gives inf."""

import torch
import triton
import triton.language as tl

from ._elementwise import unary, unary_cases, unary_cost
from .spec import Case, OpSpec, randn, register, same_arguments, without_big


@triton.jit
def _rsqrt(x):
    return tl.math.rsqrt(x)


def rsqrt(x: torch.Tensor) -> torch.Tensor:
    return unary(_rsqrt, x)


def _cases() -> dict:
    """Mostly positive inputs (a variance + eps), plus the shared edge cases (negatives give NaN)."""
    shared = without_big(unary_cases())  # the unary launcher's big case is exp's

    def positive(c: Case) -> Case:
        def make(d, dev, g):
            (x,), kwargs = c.make(d, dev, g)
            return (x.abs() + 1e-3,), kwargs

        return Case(c.name + " (|x|+1e-3)", make, c.big)

    def variance(rows):
        return Case(
            f"variance+eps {rows}x1", lambda d, dev, g: ((randn((rows, 1), d, dev, g).abs() + 1e-6,), {})
        )

    return {
        "quick": lambda: [positive(c) for c in shared["quick"]()],
        "edge": lambda: (
            shared["edge"]()
            + [
                Case(
                    "zeros give inf",
                    lambda d, dev, g: (
                        (
                            randn((3, 50), d, dev, g)
                            .abs()
                            .masked_fill_(torch.arange(50, device=dev) % 5 == 0, 0.0),
                        ),
                        {},
                    ),
                )
            ]
        ),
        "llm": lambda: [variance(1), variance(64), variance(2048)] + [positive(c) for c in shared["llm"]()],
    }


SPEC = register(
    OpSpec(
        name="rsqrt",
        reference=torch.rsqrt,
        impl=rsqrt,
        cases=_cases(),
        cost=unary_cost,
        aten_impls={"aten::rsqrt": same_arguments},
    )
)
