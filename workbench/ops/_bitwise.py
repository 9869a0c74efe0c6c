"""Shared by the bitwise ops (bitwise_not, bitwise_and, bitwise_or): bool and integer tensors only.

Generation loops keep their per-sequence state in these (`unfinished & ~done`, `mask | other_mask`):
bool or int64, computed exactly (binary: in int64, unary: in the input's own dtype, where ~ on bool is
logical not).
"""

from __future__ import annotations

import torch

from ._elementwise import INT_DTYPES, randint
from .spec import Case

BITWISE_DTYPES = INT_DTYPES + (torch.bool,)


def _case(name, shapes, dtypes, number=None, transform=None):
    """One or two operands of `shapes` and `dtypes` (fixed: whatever the run's float dtype; compared
    exactly); `number` replaces the second operand."""

    def make(d, dev, g):
        args = [randint(s, t, dev, g, 2**40) for s, t in zip(shapes, dtypes)]
        if transform:
            args = [transform(a) for a in args]
        if number is not None:
            args.append(number)
        return tuple(args), {}

    return Case(name, make)


def bitwise_cases(binary: bool) -> dict:
    if not binary:
        return {
            "quick": lambda: [
                _case("bool mask 4x33", [(4, 33)], [torch.bool]),
                _case("int64 +-2**40 1000", [(1000,)], [torch.int64]),
            ],
            "edge": lambda: [
                _case("int32 transposed 33x65", [(65, 33)], [torch.int32], transform=lambda x: x.t()),
                _case("bool strided x[:, ::2]", [(8, 50)], [torch.bool], transform=lambda x: x[:, ::2]),
                _case("bool 0-dim", [()], [torch.bool]),
                _case("zero-size 0x16", [(0, 16)], [torch.bool]),
            ],
            "llm": lambda: [_case("finished flags 64", [(64,)], [torch.bool])],
        }
    return {
        "quick": lambda: [
            _case("bool masks 4x33", [(4, 33), (4, 33)], [torch.bool, torch.bool]),
            _case("int64 with bool (promotes)", [(64,), (64,)], [torch.int64, torch.bool]),
        ],
        "edge": lambda: [
            _case("int64 +-2**40 row broadcast", [(9, 40), (40,)], [torch.int64, torch.int64]),
            _case("int32 with int64", [(7, 13), (7, 13)], [torch.int32, torch.int64]),
            _case(
                "int32 transposed", [(13, 7), (13, 7)], [torch.int32, torch.int32], transform=lambda x: x.t()
            ),
            _case("int64 with a number", [(5, 6)], [torch.int64], number=0xFF0F),
            _case("bool with 0-dim bool", [(3, 5), ()], [torch.bool, torch.bool]),
            _case("zero-size 0x16", [(0, 16), (16,)], [torch.bool, torch.bool]),
        ],
        "llm": lambda: [_case("unfinished sequences 64", [(64,), (64,)], [torch.int64, torch.bool])],
    }
