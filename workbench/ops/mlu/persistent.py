"""The persistent launch style and how its launches are sized.

A shared launcher runs in one of two styles. **Tile**: one program per tile, as many programs as tiles
(GPUs, the cpu interpreter). **Persistent**: as many programs as fill the device's cores, each walking
its tiles in a grid-stride loop, blocks sized from the on-chip memory of one core (MLU: the grid is the
number of cores, not of tiles; docs/mlu.md). The style of a call is `persistent()`: the active
backend's `LaunchPolicy.persistent`, unless `launch_style()` says otherwise (how the MLU form of an op
is checked on cpu or cuda).

Persistent launches are sized from the target's `LaunchPolicy` (`policy()`): the real device on the mlu
backend, else the named MLU figures (`backends.mlu_devices.target()`), so that the same kernels run,
and are judged by the MLU launch rules, anywhere. Block sizes come from the NRAM estimate the rules
apply (`ops.mlu.rules`): the tiles a kernel loads plus its accumulators, each at its element size.
Kernels fill only NRAM_FILL of NRAM by that estimate, leaving the rest for what the estimate does not
count (casts to fp32, masks, offsets) and for the compiler's double buffering.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass

import triton

from workbench import backends
from workbench.backends import LaunchPolicy, mlu_devices
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

# The style of the launches made now: None means the active backend's own.
_style: contextvars.ContextVar[bool | None] = contextvars.ContextVar("persistent_launches", default=None)
_BACKEND_STYLE = backends.active().policy.persistent


def persistent() -> bool:
    """Whether the shared launchers launch persistent grid-stride programs now."""
    chosen = _style.get()
    return _BACKEND_STYLE if chosen is None else chosen


@contextlib.contextmanager
def launch_style(persistent: bool) -> Iterator[None]:
    """Inside, the shared launchers use the persistent style (True) or one tile per program (False)."""
    token = _style.set(persistent)
    try:
        yield
    finally:
        _style.reset(token)


def target() -> MluDevice:
    """The device persistent launches are sized for (see workbench.backends.mlu_devices.target)."""
    return mlu_devices.target()


def policy(dev: MluDevice | None = None) -> LaunchPolicy:
    """The launch policy persistent launches follow: the target's cores, NRAM and legal num_warps."""
    dev = dev or target()
    policy = dev.policy()
    if NUM_WARPS not in policy.num_warps:
        raise ValueError(f"num_warps={NUM_WARPS} is not legal on {dev.name}: {policy.num_warps}")
    return policy


def pow2_floor(n: int) -> int:
    return 1 << (max(1, int(n)).bit_length() - 1)


def tile_elems(bytes_per_elem: float, cap: int = MAX_TILE, dev: MluDevice | None = None) -> int:
    """Most elements per tile (a power of two, at most `cap`) whose live tiles, at `bytes_per_elem`
    bytes per tile element in all, stay within NRAM_FILL of the target's on-chip memory."""
    return min(cap, pow2_floor(int(policy(dev).onchip_bytes * NRAM_FILL / bytes_per_elem)))


def max_programs(num_warps: int = NUM_WARPS, dev: MluDevice | None = None) -> int:
    """Programs that fill the device: one per core, or per cluster of 4 cores with num_warps=4."""
    return policy(dev).grid(2**62, num_warps)


def programs(tiles: int, num_warps: int = NUM_WARPS, dev: MluDevice | None = None) -> int:
    """Programs to launch for `tiles` tiles: enough to fill the device, never more than tiles."""
    return policy(dev).grid(tiles, num_warps)


def block_1d(n: int, bytes_per_elem: float, dev: MluDevice | None = None) -> int:
    """A 1-D block for n elements: big enough that every program gets one tile at most when n is small,
    never more than NRAM (or MAX_TILE) allows."""
    dev = dev or target()
    limit = tile_elems(bytes_per_elem, dev=dev)
    per_program = triton.next_power_of_2(triton.cdiv(max(n, 1), max_programs(dev=dev)))
    return min(limit, max(MIN_TILE, per_program))


def grid_1d(n: int, bytes_per_elem: float) -> tuple[int, int]:
    """(programs, block) of a flat persistent launch over n elements."""
    block = block_1d(n, bytes_per_elem)
    return programs(triton.cdiv(n, block)), block


# ---- rows: softmax, norms, embedding ---------------------------------------------------------------
# Short rows are packed several to a tile (BLOCK_R rows x BLOCK_C columns), so that a tile is as big as
# NRAM allows even for 128-wide qk-norm rows; a row too long for one tile is streamed in BLOCK_C chunks.


@dataclass(frozen=True)
class RowTiles:
    block_r: int  # rows per tile (1 when rows are streamed)
    block_c: int  # columns per tile
    one_tile: bool  # a whole row fits in the tile
    programs: int


def row_tiles(n_rows: int, n_cols: int, one_tile_bytes: float, streamed_bytes: float) -> RowTiles:
    """Tile shape and grid for `n_rows` rows of `n_cols`.

    one_tile_bytes: bytes per tile element of all live tiles when a row fits in one tile;
    streamed_bytes: the same when rows are streamed in chunks (accumulators and every load site).
    """
    dev = target()
    limit = tile_elems(one_tile_bytes, dev=dev)
    block_c = triton.next_power_of_2(max(n_cols, 1))
    if block_c <= limit:
        per_program = triton.next_power_of_2(triton.cdiv(n_rows, max_programs(dev=dev)))
        block_r = max(1, min(limit // block_c, per_program))
        return RowTiles(block_r, block_c, True, programs(triton.cdiv(n_rows, block_r), dev=dev))
    return RowTiles(1, tile_elems(streamed_bytes, dev=dev), False, programs(n_rows, dev=dev))


def split_rows(n_rows: int, n_cols: int, block: int, max_chunks: int | None = None) -> tuple[int, int]:
    """(chunks per row, columns per chunk: a multiple of `block`) so that fewer rows than the programs
    that fill the target are cut into chunks (argmax, topk and cumsum over a vocabulary at decode);
    at most `max_chunks` chunks."""
    n_cols = max(n_cols, 1)
    wanted = max(1, triton.cdiv(max_programs(), max(1, n_rows)))
    wanted = min(wanted, triton.cdiv(n_cols, block), max_chunks or wanted)
    chunk = triton.cdiv(triton.cdiv(n_cols, wanted), block) * block
    return triton.cdiv(n_cols, chunk), chunk
