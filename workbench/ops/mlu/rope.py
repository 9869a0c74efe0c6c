"""rope, MLU style: programs that fill the cores walk row tiles of q, then of k, in a grid-stride loop.

The generic op's validation and layout (`prepare`) and its per-tile rotation (`_rope_rows`, fp32 math,
int64 row offsets); only the launch shape changes: a tile packs as many rows as half of NRAM holds (six
loads of BLOCK_R x BLOCK_H: both halves of x, cos and sin), and each program rotates every
num_programs-th tile of the q tiles followed by the k tiles.
"""

import torch
import triton
import triton.language as tl

from .._launch import launch
from . import persistent
from ..rope import SPEC, _rope_rows, prepare


@triton.jit
def _rope_kernel(q_ptr, kx_ptr, qc_ptr, qs_ptr, kc_ptr, ks_ptr, qo_ptr, ko_ptr, q_rows, k_rows, q_tiles, tiles, half,
                 qr1, qr2, qxs0, qxs1, qxs2, qxsd, qcs0, qcs1, qcs2, qcsd, qss0, qss1, qss2, qssd,
                 kr1, kr2, kxs0, kxs1, kxs2, kxsd, kcs0, kcs1, kcs2, kcsd, kss0, kss1, kss2, kssd,
                 BLOCK_R: tl.constexpr, BLOCK_H: tl.constexpr):
    # int64 tile indices (the loop variable takes the start's type), so row offsets never wrap
    for t in range(tl.program_id(0).to(tl.int64), tiles, tl.num_programs(0)):
        if t < q_tiles:
            _rope_rows(q_ptr, qc_ptr, qs_ptr, qo_ptr, t * BLOCK_R, q_rows, half, qr1, qr2,
                       qxs0, qxs1, qxs2, qxsd, qcs0, qcs1, qcs2, qcsd, qss0, qss1, qss2, qssd,
                       BLOCK_R=BLOCK_R, BLOCK_H=BLOCK_H)
        else:
            _rope_rows(kx_ptr, kc_ptr, ks_ptr, ko_ptr, (t - q_tiles) * BLOCK_R, k_rows, half,
                       kr1, kr2, kxs0, kxs1, kxs2, kxsd, kcs0, kcs1, kcs2, kcsd, kss0, kss1, kss2, kssd,
                       BLOCK_R=BLOCK_R, BLOCK_H=BLOCK_H)


def rope(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
         unsqueeze_dim: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    q_out, k_out, plan = prepare(q, k, cos, sin, unsqueeze_dim)
    if plan is None:
        return q_out, k_out
    ((qx, qc, qs), q_sizes, q_strides, q_rows), ((kx, kc, ks), k_sizes, k_strides, k_rows), half = plan
    block_h = triton.next_power_of_2(half)
    # Live tiles per element of a BLOCK_R x BLOCK_H tile: two halves of x, cos and sin. Capped at a quarter
    # of MAX_TILE: the kernel holds two inlined rotations of six loads each, and a GPU build of 8192-element
    # tiles took ~30 s (2048: ~5 s) on this project's CPU; on an MLU a larger tile may pay (tune there).
    limit = persistent.tile_elems(2 * qx.element_size() + 4 * qc.element_size(), cap=persistent.MAX_TILE // 4)
    per_program = triton.next_power_of_2(triton.cdiv(q_rows + k_rows, persistent.max_programs()))
    block_r = max(1, min(limit // block_h, per_program))
    q_tiles = triton.cdiv(q_rows, block_r)
    tiles = q_tiles + triton.cdiv(k_rows, block_r)
    launch(_rope_kernel, (persistent.programs(tiles),), qx, kx, qc, qs, kc, ks, q_out, k_out, q_rows, k_rows,
           q_tiles, tiles, half, *q_sizes, *q_strides, *k_sizes, *k_strides, BLOCK_R=block_r, BLOCK_H=block_h,
           num_warps=persistent.NUM_WARPS)
    return q_out, k_out


SPEC.add_variant("mlu", rope)
