"""Numbers that do not fit a dtype raise where torch raises, and only there.

torch checks the number it converts for fill, masked_fill, where and alpha (RuntimeError "value cannot
be converted to type ... without overflow"), with one check (`_common.scalar_as`) here; it does not
check the number operand of add/sub/mul/div, which wraps in integers and becomes inf in floats, and
neither does ours; nor where's number for a float16 / bfloat16 result (1e6 is inf there).
"""

from __future__ import annotations

import pytest
import torch

import workbench
from workbench import backends
from workbench import ops as wb

DEV = backends.active().device()


def _t(dtype, n=6):
    return torch.arange(n, device=DEV).to(dtype)


def _m(n=6):
    return torch.arange(n, device=DEV) % 2 == 0


# label -> (function of the module `m` (workbench.ops or torch) making the call, op named in our message)
RAISES = {
    "masked_fill int32 with 2**40+5": (
        lambda m: m.masked_fill(_t(torch.int32), _m(), 2**40 + 5),
        "masked_fill",
    ),
    "masked_fill int64 with 2**63": (lambda m: m.masked_fill(_t(torch.int64), _m(), 2**63), "masked_fill"),
    "masked_fill float16 with 1e6": (lambda m: m.masked_fill(_t(torch.float16), _m(), 1e6), "masked_fill"),
    "masked_fill float16 with 65519 (rounds to 65504, still refused)": (
        lambda m: m.masked_fill(_t(torch.float16), _m(), 65519.0),
        "masked_fill",
    ),
    "masked_fill bfloat16 with 1e39": (
        lambda m: m.masked_fill(_t(torch.bfloat16), _m(), 1e39),
        "masked_fill",
    ),
    "masked_fill int32 with NaN": (
        lambda m: m.masked_fill(_t(torch.int32), _m(), float("nan")),
        "masked_fill",
    ),
    "masked_fill int64 with -inf": (
        lambda m: m.masked_fill(_t(torch.int64), _m(), float("-inf")),
        "masked_fill",
    ),
    "masked_fill float16 with a 0-dim CPU tensor 1e6": (
        lambda m: m.masked_fill(_t(torch.float16), _m(), torch.tensor(1e6)),
        "masked_fill",
    ),
    "where int32 with other 2**40+5": (lambda m: m.where(_m(), _t(torch.int32), 2**40 + 5), "where"),
    "where int32 with input -2**40": (lambda m: m.where(_m(), -(2**40), _t(torch.int32)), "where"),
    "where float32 with 1e39": (lambda m: m.where(_m(), _t(torch.float32), 1e39), "where"),
    "fill int32 with 2**40": (lambda m: m.fill(_t(torch.int32), 2**40), "fill"),
    "fill float16 with 1e6": (lambda m: m.fill(_t(torch.float16), 1e6), "fill"),
    "add float16 with alpha 1e6": (lambda m: m.add(_t(torch.float16), _t(torch.float16), alpha=1e6), "add"),
    "sub int32 with alpha 2**40": (lambda m: m.sub(_t(torch.int32), _t(torch.int32), alpha=2**40), "sub"),
}

# What torch computes without complaint: ours must give the same.
SAME = {
    "masked_fill int32 with 2.5 (truncated)": lambda m: m.masked_fill(_t(torch.int32), _m(), 2.5),
    "masked_fill float16 with inf": lambda m: m.masked_fill(_t(torch.float16), _m(), float("inf")),
    "masked_fill bfloat16 with 1e6": lambda m: m.masked_fill(_t(torch.bfloat16), _m(), 1e6),
    "where float16 with 1e6 (inf)": lambda m: m.where(_m(), _t(torch.float16), 1e6),
    "where bfloat16 with 1e39 (inf)": lambda m: m.where(_m(), _t(torch.bfloat16), 1e39),
    "where int64 with 2**40": lambda m: m.where(_m(), _t(torch.int64), 2**40),
    "add int32 and 2**40 (wraps)": lambda m: m.add(_t(torch.int32), 2**40 + 3),
    "sub int32 and 2**31 (wraps)": lambda m: m.sub(_t(torch.int32), 2**31),
    "mul int32 and 2**33 (wraps)": lambda m: m.mul(_t(torch.int32), 2**33 + 1),
    "add float16 and 1e6 (inf)": lambda m: m.add(_t(torch.float16), 1e6),
    "mul bfloat16 and 1e39 (inf)": lambda m: m.mul(_t(torch.bfloat16), 1e39),
    "div float16 by 1e-8 (inf)": lambda m: m.div(_t(torch.float16), 1e-8),
    "add float16 with alpha 60000": lambda m: m.add(_t(torch.float16), _t(torch.float16), alpha=60000.0),
}


class _Torch:
    """The calls above on torch's own functions."""

    masked_fill, where, add, sub, mul, div = (
        torch.masked_fill,
        torch.where,
        torch.add,
        torch.sub,
        torch.mul,
        torch.div,
    )

    @staticmethod
    def fill(x, value):
        return x.clone().fill_(value)


@pytest.mark.parametrize("label", list(RAISES))
def test_number_out_of_range_raises_like_torch(label):
    call, op = RAISES[label]
    with pytest.raises(RuntimeError, match="cannot be converted to type"):
        call(_Torch)
    with pytest.raises(RuntimeError) as error:
        call(wb)
    message = str(error.value)
    assert (
        message.startswith(f"{op}: ")
        and "cannot be converted to type" in message
        and "without overflow" in message
    ), message


@pytest.mark.parametrize("label", list(SAME))
def test_numbers_torch_accepts_give_torchs_result(label):
    want = SAME[label](_Torch)
    got = SAME[label](wb)
    assert got.dtype == want.dtype
    torch.testing.assert_close(got, want, equal_nan=True, rtol=0, atol=0)


def test_use_ops_raises_for_masked_fill_and_where():
    x = _t(torch.int32)
    with workbench.use_ops(include=["masked_fill", "where", "fill"]):
        with pytest.raises(RuntimeError, match="cannot be converted to type int32 without overflow"):
            x.masked_fill(_m(), 2**40 + 5)
        with pytest.raises(RuntimeError, match="cannot be converted to type"):
            torch.where(_m(), x, 2**40 + 5)
        with pytest.raises(RuntimeError, match="cannot be converted to type float16"):
            _t(torch.float16).fill_(1e6)
