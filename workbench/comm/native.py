"""Direct calls into a torch ProcessGroup for the flat path.

torch.distributed's functions (dist.all_reduce, ...) check their arguments in Python, build an options
object and call the group's C++ method. Communicator checks arguments itself (validate.py), so for the
hot collectives it builds the options and calls the method directly: the same C++ call, without
paying for the checks twice — that is what keeps its per-call host time at or below the raw call's.
Each method returns the torch Work; `asyncOp` is set like torch sets it, so a blocking call on NCCL
runs on the current stream exactly as `dist.all_reduce(..., async_op=False)` does.

Method names moved between torch releases (`_allgather_base` became `all_gather_single`); each is
looked up once, newest name first.
"""

from __future__ import annotations

import torch
from torch._C._distributed_c10d import (
    AllgatherOptions,
    AllreduceOptions,
    AllToAllOptions,
    BroadcastOptions,
    ReduceScatterOptions,
)


def _options(cls, async_op: bool, **fields):
    opts = cls()
    for name, value in fields.items():
        setattr(opts, name, value)
    if hasattr(opts, "asyncOp"):  # torch >= 2.7: False lets NCCL run a blocking call on the current stream
        opts.asyncOp = async_op
    return opts


def _first(group, *names):
    return next((getattr(group, n) for n in names if hasattr(group, n)), None)


class NativeGroup:
    """The collectives of one ProcessGroup (group ranks = global ranks: used for the world group only)."""

    def __init__(self, group, world_size: int, tensor_forms: bool) -> None:
        self.world_size = world_size
        self._allreduce = group.allreduce
        self._broadcast = group.broadcast
        self._allgather = group.allgather
        self._alltoall = group.alltoall_base
        # single-tensor all_gather / reduce_scatter: only where the backend has them (not gloo everywhere)
        self._gather_one = _first(group, "all_gather_single", "_allgather_base") if tensor_forms else None
        self._scatter_one = (
            _first(group, "reduce_scatter_single", "_reduce_scatter_base") if tensor_forms else None
        )

    @property
    def has_reduce_scatter(self) -> bool:
        return self._scatter_one is not None

    def all_reduce(self, tensor: torch.Tensor, op, async_op: bool):
        return self._allreduce([tensor], _options(AllreduceOptions, async_op, reduceOp=op))

    def broadcast(self, tensor: torch.Tensor, src: int, async_op: bool):
        return self._broadcast([tensor], _options(BroadcastOptions, async_op, rootRank=src, rootTensor=0))

    def all_gather(self, output: torch.Tensor, input: torch.Tensor, async_op: bool):
        opts = _options(AllgatherOptions, async_op)
        if self._gather_one is not None:
            return self._gather_one(output, input, opts)
        parts = list(output.view(self.world_size, -1).unbind(0))
        return self._allgather([parts], [input.view(-1)], opts)

    def reduce_scatter(self, output: torch.Tensor, input: torch.Tensor, op, async_op: bool):
        return self._scatter_one(output, input, _options(ReduceScatterOptions, async_op, reduceOp=op))

    def all_to_all(self, output: torch.Tensor, input: torch.Tensor, async_op: bool):
        return self._alltoall(output, input, [], [], _options(AllToAllOptions, async_op))
