"""What the registry cases do not show for the Qwen3 op set: in-place semantics, refusals, named errors."""

import pytest
import torch

from workbench import backends, ops
from workbench.ops import Unsupported
from workbench.ops._movement import copy_into, fill_into


def x(*shape, dtype=torch.float32):
    return torch.randn(*shape, device=backends.active().device_type).to(dtype)


def test_copy_into_broadcasts_converts_and_writes_strided_destinations():
    dev = backends.active().device_type
    buf = torch.zeros(6, 10, dtype=torch.int32, device=dev)
    row = x(5) * 4
    out = copy_into(buf[:, ::2], row)
    assert out.data_ptr() == buf.data_ptr()
    assert torch.equal(buf[:, ::2], row.to(torch.int32).expand(6, 5)) and not buf[:, 1::2].any()
    mask = torch.zeros(3, 4, dtype=torch.bool, device=dev)
    copy_into(mask.t(), torch.tensor([0.0, 2.5, -1.0], device=dev))
    assert mask.t().tolist() == [[False, True, True]] * 4


def test_copy_and_fill_refuse_what_they_cannot_do_safely():
    a = x(8)
    with pytest.raises(Unsupported, match="shares memory"):
        copy_into(a[1:], a[:-1])  # overlapping views: native stages the copy
    with pytest.raises(Unsupported, match="shares memory"):
        copy_into(a.view(4, 2)[:, 0], a.view(4, 2)[:, 1])  # the same storage, another view
    before = a.clone()
    assert copy_into(a, a) is a and torch.equal(a, before)  # itself: nothing to do, as torch has it
    with pytest.raises(Unsupported, match="broadcast view"):
        fill_into(x(1, 4).expand(3, 4), 1.0)
    with pytest.raises(RuntimeError, match="value 300 cannot be converted to type int8 without overflow"):
        fill_into(torch.zeros(3, dtype=torch.int8, device=a.device), 300)
    with pytest.raises(RuntimeError, match="value nan cannot be converted to type int64"):
        fill_into(torch.zeros(3, dtype=torch.int64, device=a.device), float("nan"))
    with pytest.raises(RuntimeError, match="cannot be converted to type float16 without overflow"):
        fill_into(x(3, dtype=torch.float16), 1e6)


def test_fill_rounds_the_value_as_torch_does():
    for dtype in (torch.bfloat16, torch.float16):
        v = 0.1 + 2**-12
        assert torch.equal(
            ops.fill(x(4, dtype=dtype), v), torch.full((4,), v, dtype=dtype, device=x(1).device)
        )


@pytest.mark.parametrize(
    "call,exc,pattern",
    [
        (
            lambda: ops.where(x(3, 4) > 0, x(3, 4), x(5)),
            ValueError,
            r"condition, input, other: shapes .* do not broadcast",
        ),
        (
            lambda: ops.where(x(3) > 0, x(3).bool(), False),
            TypeError,
            r"expected a float32, float16, bfloat16, int32 or int64 result",
        ),
        (
            lambda: ops.masked_fill(x(3), x(2, 3) > 0, 1.0),
            ValueError,
            r"mask: shape \(2, 3\) does not broadcast to input",
        ),
        (
            lambda: ops.masked_fill(x(3), x(3), 1.0),
            TypeError,
            r"mask: expected dtype in \(bool\), got float32",
        ),
        (lambda: ops.pow(x(3), "2"), TypeError, r"exponent: expected a tensor or a real number, got str"),
        (lambda: ops.sum(x(3, 4), dim=2), ValueError, r"dim: expected a dim in \[-2, 2\), got 2"),
        (lambda: ops.mean(x(3, 4), dim=(1, -1)), ValueError, r"dim: dim -1 appears twice"),
        (
            lambda: ops.sum(x(3), dtype=torch.float64),
            TypeError,
            r"dtype: expected one of \(float32, float16, bfloat16, int32, int64\)",
        ),
        (lambda: ops.max(x(3, 0), 1), ValueError, r"cannot take the max over dim 1 of size 0"),
        (lambda: ops.bmm(x(2, 3, 4), x(3, 4, 5)), ValueError, r"b: expected shape \(2, 4, N\)"),
        (
            lambda: ops.addmm(x(7), x(2, 3), x(3, 5)),
            ValueError,
            r"bias: shape \(7,\) does not broadcast to \(2, 5\)",
        ),
        (
            lambda: ops.linear(x(2, 8), x(4, 6)),
            ValueError,
            r"weight: expected 8 columns \(x's last dim\), got shape \(4, 6\)",
        ),
        (lambda: ops.linear(x(2, 8), x(4, 8), x(5)), ValueError, r"bias: expected shape \(4,\), got \(5,\)"),
        (
            lambda: ops.gather(x(4, 5), 1, torch.zeros(4, dtype=torch.int64, device=x(1).device)),
            ValueError,
            r"index: expected 2 dims like x",
        ),
        (
            lambda: ops.gather(x(4, 5), 1, torch.zeros(5, 2, dtype=torch.int64, device=x(1).device)),
            ValueError,
            r"index: shape \(5, 2\) exceeds x shape \(4, 5\) outside dim 1",
        ),
        (
            lambda: ops.index_select(x(4, 5), 0, x(2)),
            TypeError,
            r"index: expected dtype in \(int32, int64\), got float32",
        ),
        (
            lambda: ops.cat([x(2, 3), x(2, 4)], 0),
            ValueError,
            r"tensors: shape \(2, 4\) does not match \(2, 3\) outside",
        ),
        (
            lambda: ops.cat(x(2, 3), 0),
            TypeError,
            r"tensors: expected a non-empty list or tuple of tensors, got Tensor",
        ),
        (lambda: ops.copy(x(3), torch.float64), TypeError, r"dtype: expected one of \(.*\), got float64"),
        (lambda: ops.fill(x(3), "a"), TypeError, r"value: expected a real number, got str"),
    ],
)
def test_bad_input_is_named(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_matmul_tile_heights_follow_m(monkeypatch):
    from workbench.ops import _matmul, _tuning

    configs = _matmul._configs(interpreted=False)
    heights = {m: {c.kwargs["BLOCK_M"] for c in _matmul._prune(configs, {"M": m})} for m in (1, 16, 64, 2048)}
    assert heights[1] == heights[16] == {16, 32} and heights[64] <= {16, 32, 64} and min(heights[2048]) >= 64
    monkeypatch.setattr(_tuning, "AUTOTUNE", False)  # WORKBENCH_AUTOTUNE=0: the first fitting config, untimed
    tuner = _tuning.Tuner(_matmul._matmul_kernel, configs, key=["M"], prune=_matmul._prune)
    for m in (1, 64, 2048):
        assert tuner.choose({"M": m}, None, (), {}) is _matmul._prune(configs, {"M": m})[0]
