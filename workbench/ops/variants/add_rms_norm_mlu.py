"""add_rms_norm, MLU style: rms_norm's mlu kernel with the residual add fused in (rows packed into big
tiles, programs that fill the cores, fp32 math)."""

import torch

from ..add_rms_norm import SPEC, prepare
from .rms_norm_mlu import launch_rows


def add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor | None = None,
                 eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    out, total, rows, res_rows = prepare(x, residual, weight)
    if rows is not None:
        launch_rows(rows, res_rows, weight, out, total, eps)
    return out, total


SPEC.add_variant("mlu", add_rms_norm)
