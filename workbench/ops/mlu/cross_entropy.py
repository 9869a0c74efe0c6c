"""cross_entropy, MLU style: programs that fill the cores walk the rows (grid-stride), each row's loss in
one online pass (`cross_entropy.row_loss`, fp32), blocks sized from NRAM; the losses are reduced by the
generic op's one-program kernel (`cross_entropy.finish`)."""

import torch
import triton
import triton.language as tl

from ..cross_entropy import SPEC, finish, prepare, row_loss
from .._launch import launch
from . import persistent


@triton.jit
def _row_loss_kernel(x_ptr, t_ptr, loss_ptr, n_rows, n_cols, x_row_stride, ignore_index, smoothing,
                     SMOOTH: tl.constexpr, BLOCK: tl.constexpr):
    for row in range(tl.program_id(0).to(tl.int64), n_rows, tl.num_programs(0)):
        loss = row_loss(x_ptr + row * x_row_stride, t_ptr, row, n_cols, ignore_index, smoothing, SMOOTH,
                        BLOCK)
        tl.store(loss_ptr + row, loss.to(loss_ptr.dtype.element_ty))


def cross_entropy(input: torch.Tensor, target: torch.Tensor, ignore_index: int = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> torch.Tensor:
    out, rows, targets, losses = prepare(input, target, ignore_index, reduction, label_smoothing)
    if rows is None:
        return out
    n_rows, n_classes = rows.shape
    # live tiles: the running max, rescaled sum and plain sum (fp32), and the loaded logits
    block = min(persistent.tile_elems(12 + rows.element_size()), triton.next_power_of_2(n_classes))
    launch(_row_loss_kernel, (persistent.programs(n_rows),), rows, targets, losses, n_rows, n_classes,
           rows.stride(0), int(ignore_index), float(label_smoothing), SMOOTH=label_smoothing > 0, BLOCK=block,
           num_warps=persistent.NUM_WARPS)
    return finish(out, losses, targets, ignore_index, reduction)


SPEC.add_variant("mlu", cross_entropy)
