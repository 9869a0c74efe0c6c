"""Every Communicator operation against a closed-form expectation, on the job it runs in.

Each rank's input is a known function of its rank, so every rank can build every other rank's input
locally and compute the expected result with plain torch on the CPU. Values are small integers, so
float sums are exact and every result is compared exactly (avg to within one rounding). Used by the
tests and by `workbench comm-bench --selfcheck` on real devices, flat and hierarchical.
"""

from __future__ import annotations

import pandas as pd
import torch

from .communicator import Communicator

DEFAULT_DTYPES = (torch.float32, torch.bfloat16, torch.int64)


def rank_input(rank: int, numel: int, dtype: torch.dtype, salt: int = 0) -> torch.Tensor:
    """Small integers in [-5, 5] that differ per rank and per element (exact in every dtype we use)."""
    i = torch.arange(numel, dtype=torch.int64)
    return (((i * 7 + rank * 13 + salt * 5) % 11) - 5).to(dtype)


def _expect_reduce(inputs: list[torch.Tensor], name: str) -> torch.Tensor:
    stacked = torch.stack([x.double() for x in inputs])
    if name == "sum":
        return stacked.sum(0)
    if name == "avg":
        return stacked.mean(0)
    return stacked.amax(0) if name == "max" else stacked.amin(0)


def _same(got: torch.Tensor, want: torch.Tensor, approx: bool) -> tuple[bool, str]:
    got = got.detach().to("cpu", torch.float64).reshape(-1)
    want = want.to(torch.float64).reshape(-1)
    if got.shape != want.shape:
        return False, f"shape {tuple(got.shape)} != {tuple(want.shape)}"
    bad = (got - want).abs() > (1e-2 * want.abs() + 1e-6 if approx else 0)
    if bad.any():
        i = int(bad.nonzero()[0])
        return (
            False,
            f"{int(bad.sum())} wrong elements, first at {i}: got {got[i].item()}, want {want[i].item()}",
        )
    return True, ""


def _finish(result, asynchronous: bool):
    return result.wait() if asynchronous else result


def selfcheck(comm: Communicator, dtypes=DEFAULT_DTYPES, per_rank: int = 3) -> pd.DataFrame:
    """One row per (operation, reduce op, dtype, sync/async): passed and what went wrong.

    All ranks must call it together; every rank returns its own results.
    """
    world, rank, dev = comm.world_size, comm.rank, comm.device
    n = world * per_rank
    rows = []

    def put(t: torch.Tensor) -> torch.Tensor:  # a copy even on cpu: the reference inputs stay intact
        return t.to(dev, copy=True)

    def record(
        op: str,
        dtype: torch.dtype,
        mode: str,
        got: torch.Tensor,
        want: torch.Tensor,
        reduce: str = "",
        approx: bool = False,
    ) -> None:
        ok, detail = _same(got, want, approx)
        rows.append(
            {
                "op": op,
                "reduce": reduce,
                "dtype": str(dtype).replace("torch.", ""),
                "mode": mode,
                "rank": rank,
                "passed": ok,
                "detail": detail,
            }
        )

    for dtype in dtypes:
        inputs = [rank_input(r, n, dtype) for r in range(world)]
        for mode in ("sync", "async"):
            asynchronous = mode == "async"
            names = ("sum", "avg", "max", "min") if dtype.is_floating_point else ("sum", "max", "min")
            for name in names:
                t = put(inputs[rank])
                _finish(comm.all_reduce(t, name, async_op=asynchronous), asynchronous)
                record("all_reduce", dtype, mode, t, _expect_reduce(inputs, name), name, approx=name == "avg")
                out = torch.empty(per_rank, dtype=dtype, device=dev)
                src = put(inputs[rank])
                _finish(comm.reduce_scatter(out, src, name, async_op=asynchronous), asynchronous)
                want = _expect_reduce(inputs, name).view(world, per_rank)[rank]
                record("reduce_scatter", dtype, mode, out, want, name, approx=name == "avg")
                record("reduce_scatter input kept", dtype, mode, src, inputs[rank], name)

            small = [rank_input(r, per_rank, dtype, salt=1) for r in range(world)]
            out = torch.empty(world, per_rank, dtype=dtype, device=dev)
            _finish(comm.all_gather(out, put(small[rank]), async_op=asynchronous), asynchronous)
            record("all_gather", dtype, mode, out, torch.stack(small).double())

            for src in sorted({0, world - 1}):
                t = put(rank_input(rank, n, dtype, salt=2))
                _finish(comm.broadcast(t, src, async_op=asynchronous), asynchronous)
                record(f"broadcast from {src}", dtype, mode, t, rank_input(src, n, dtype, salt=2))

            out = torch.empty(n, dtype=dtype, device=dev)
            _finish(comm.all_to_all(out, put(inputs[rank]), async_op=asynchronous), asynchronous)
            want = torch.cat([inputs[r].view(world, per_rank)[rank] for r in range(world)])
            record("all_to_all", dtype, mode, out, want)

            # ring: even ranks post the send first, odd ranks the recv, so blocking p2p cannot deadlock
            nxt, prev = (rank + 1) % world, (rank - 1) % world
            got = torch.empty(n, dtype=dtype, device=dev)
            mine = put(rank_input(rank, n, dtype, salt=3))
            first_send = rank % 2 == 0
            handles = []
            for sending in (first_send, not first_send):
                if sending:
                    handles.append(comm.send(mine, nxt, async_op=asynchronous))
                else:
                    handles.append(comm.recv(got, prev, async_op=asynchronous))
            if asynchronous:
                for h in reversed(handles):  # any order: both are posted
                    h.wait()
            record("send/recv", dtype, mode, got, rank_input(prev, n, dtype, salt=3))
    comm.barrier()
    return pd.DataFrame(rows)
