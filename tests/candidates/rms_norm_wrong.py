"""Candidate that is 5% off: correctness must fail and promotion must refuse it."""

import torch

from workbench.ops.rms_norm import rms_norm as _registered


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1e-6) -> torch.Tensor:
    return _registered(x, weight, eps) * 1.05
