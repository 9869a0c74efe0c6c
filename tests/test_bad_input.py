"""Bad input raises TypeError/ValueError that names the argument and says expected vs got."""

import pytest
import torch

from workbench import backends, ops
from workbench.ops._common import check_same_device


def x(*shape, dtype=torch.float32):
    return torch.randn(*shape, device=backends.active().device_type).to(dtype)


@pytest.mark.parametrize(
    "call,exc,pattern",
    [
        (lambda: ops.add(x(4).to(torch.int16), x(4)), TypeError, r"input: expected dtype in .*got int16"),
        (lambda: ops.add(x(4), x(4, dtype=torch.float64)), TypeError, r"other: expected dtype .*got float64"),
        (lambda: ops.add([1, 2], x(2)), TypeError, r"input: expected a torch.Tensor, got list"),
        (lambda: ops.add(x(4), "2"), TypeError, r"other: expected a tensor or a number, got str"),
        (
            lambda: ops.mul(x(3, 4), x(5)),
            ValueError,
            r"other: shape \(5,\) does not broadcast with input shape \(3, 4\)",
        ),
        (
            lambda: ops.silu(torch.empty(4, device="meta")),
            ValueError,
            r"x: expected a tensor on device type '\w+' .*got a tensor on meta",
        ),
        (
            lambda: ops.gelu(x(4), approximate="fast"),
            ValueError,
            r"approximate: expected 'none' or 'tanh', got 'fast'",
        ),
        (lambda: ops.softmax(x(2, 3), dim=2), ValueError, r"dim: expected a dim in \[-2, 2\), got 2"),
        (lambda: ops.rms_norm(x(2, 8), x(7)), ValueError, r"weight: expected shape \(8,\) .*got \(7,\)"),
        (
            lambda: ops.rms_norm(x(2, 8), x(8).to(torch.int64)),
            TypeError,
            r"weight: expected dtype .*got int64",
        ),
        (lambda: ops.layer_norm(x(2, 8), (4,)), ValueError, r"normalized_shape: expected trailing dims of x"),
        (lambda: ops.layer_norm(x(2, 8), (8,), bias=x(4)), ValueError, r"bias: expected shape \(8,\)"),
        (
            lambda: ops.mm(x(2, 3), x(4, 5)),
            ValueError,
            r"b: expected 3 rows to match a's 3 columns, got shape \(4, 5\)",
        ),
        (
            lambda: ops.mm(x(2, 3), x(3, 5, dtype=torch.float16)),
            TypeError,
            r"b: expected dtype torch.float32 to match a",
        ),
        (lambda: ops.mm(x(3), x(3, 5)), ValueError, r"expected 2-D matrices"),
    ],
)
def test_bad_input_is_named(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_tensors_on_two_devices_are_rejected():
    with pytest.raises(ValueError, match=r"weight: expected a tensor on \S+ like x, got meta"):
        check_same_device(x=x(2), weight=torch.empty(2, device="meta"))


def test_results_have_torch_dtype_and_shape():
    a, b = x(3, 1, 4, dtype=torch.bfloat16), x(5, 1, dtype=torch.float32)
    out = ops.add(a, b, alpha=2)
    assert out.dtype == torch.float32 and out.shape == (3, 5, 4)
    torch.testing.assert_close(out, a.float() + 2 * b)
    assert ops.mul(a, 3).dtype == torch.bfloat16
