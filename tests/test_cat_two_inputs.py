"""cat of two inputs of the result's dtype is one launch (`_cat2_kernel`); other inputs take the per-input
copies. Both against torch.cat."""

import sys

import torch

import workbench.ops  # noqa: F401
from workbench.ops import REGISTRY, _launch

cat_module = sys.modules["workbench.ops.cat"]


def _launches(monkeypatch):
    """The kernels cat's one-launch path launches (its Site goes through _launch.launch; the per-input
    copies launch from _movement, unseen here)."""
    seen = []
    real = _launch.launch
    monkeypatch.setattr(
        _launch, "launch", lambda kernel, *a, **k: (seen.append(kernel), real(kernel, *a, **k))[1]
    )
    return seen


def test_kv_append_and_rotate_half_are_one_launch(monkeypatch):
    seen = _launches(monkeypatch)
    past, new = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 1, 8)
    assert torch.equal(REGISTRY["cat"].impl([past, new], 2), torch.cat([past, new], 2))
    q = torch.randn(1, 2, 4, 8)
    halves = [q[..., 4:], q[..., :4]]  # strided views
    assert torch.equal(REGISTRY["cat"].impl(halves, -1), torch.cat(halves, -1))
    assert seen == [cat_module._cat2_kernel] * 2


def test_promotion_and_unmergeable_views_take_the_copies(monkeypatch):
    seen = _launches(monkeypatch)
    a, b = torch.randn(4, 5, dtype=torch.bfloat16), torch.randn(4, 5)
    assert torch.equal(REGISTRY["cat"].impl([a, b], 0), torch.cat([a, b], 0))
    x = torch.randn(4, 6, 5)[:, ::2, :]  # dims after 0 do not merge into one stride
    assert torch.equal(REGISTRY["cat"].impl([x, x], 0), torch.cat([x, x], 0))
    assert seen == []
