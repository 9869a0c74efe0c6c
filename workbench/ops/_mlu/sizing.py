"""Launch sizing shared by the mlu-style kernels: the grid fills the cores, blocks sized from NRAM.

The rules (docs/mlu.md): the grid is the number of cores, not the number of tiles, and each
program walks its tiles in a grid-stride loop; num_warps is 1 (one core per program) or 4 (the
launcher runs each program as four tasks, so a quarter as many programs); a block is limited by the
NRAM of one core, not by registers, so blocks are large.

Block sizes come from the same NRAM estimate the MLU launch-rules profile applies
(workbench.profiling.launch_rules): the tiles a kernel loads plus its accumulators, each at its own
element size. Kernels fill only NRAM_FILL of NRAM by that estimate, leaving the rest for what the
estimate does not count (casts to fp32, masks, offsets) and for the compiler's double buffering.
"""

from __future__ import annotations

import triton

from workbench.backends import mlu_devices
from workbench.backends.mlu_devices import MluDevice

NRAM_FILL = 0.5
# A program is a cluster of four cores (num_warps=4, a quarter as many programs as cores). The same
# kernels then compile for a GPU with 4 warps per program, which the GPU check of the port needs.
NUM_WARPS = 4
# Elements per tile. NRAM would allow more; the cap keeps a GPU build of these kernels at 64 elements
# per thread, which compiles in about a second (512 per thread took LLVM over ten minutes). On an MLU a
# larger cap may pay: that is for tuning on the device.
MAX_TILE = 8192
MIN_TILE = 1024  # 1-D tiles never shrink below this, even for tiny inputs


def target() -> MluDevice:
    """The MLU these kernels size their launches for (see workbench.backends.mlu_devices.target)."""
    return mlu_devices.target()


def pow2_floor(n: int) -> int:
    return 1 << (max(1, int(n)).bit_length() - 1)


def tile_elems(bytes_per_elem: float, cap: int = MAX_TILE, dev: MluDevice | None = None) -> int:
    """Most elements per tile (a power of two, at most `cap`) whose live tiles, at `bytes_per_elem`
    bytes per tile element in all, stay within NRAM_FILL of the target's NRAM."""
    dev = dev or target()
    return min(cap, pow2_floor(int(dev.nram_bytes * NRAM_FILL / bytes_per_elem)))


def max_programs(num_warps: int = NUM_WARPS, dev: MluDevice | None = None) -> int:
    """Programs that fill the device: one per core, or per cluster of 4 cores with num_warps=4."""
    dev = dev or target()
    return max(1, dev.cores // num_warps)


def programs(tiles: int, num_warps: int = NUM_WARPS, dev: MluDevice | None = None) -> int:
    """Programs to launch for `tiles` tiles: enough to fill the device, never more than tiles."""
    return max(1, min(tiles, max_programs(num_warps, dev)))


def block_1d(n: int, bytes_per_elem: float, dev: MluDevice | None = None) -> int:
    """A 1-D block for n elements: big enough that every program gets one tile at most when n is small,
    never more than NRAM (or MAX_TILE) allows."""
    dev = dev or target()
    limit = tile_elems(bytes_per_elem, dev=dev)
    per_program = triton.next_power_of_2(triton.cdiv(max(n, 1), max_programs(dev=dev)))
    return min(limit, max(MIN_TILE, per_program))
