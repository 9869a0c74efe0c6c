"""`Communicator`: one collective API over torch.distributed, flat or hierarchical.

Every operation exists in a blocking form and, with `async_op=True`, in a form that returns a
`Handle`; `handle.wait()` finishes it and returns its result. An operation is written once as a
generator that yields the torch `Work` objects it must wait on between steps: the blocking form drives
it to the end at once, the async form starts it (the first step is in flight when the call returns) and
`wait()` drives the rest. Flat jobs have one communication step per operation, so their async form is
exactly torch's. Hierarchical operations (workbench.comm.hierarchical) have several steps on several
groups, and every rank must post them in the same order; so the next call on the Communicator first
finishes every hierarchical operation still in flight, in the order they were started. Overlap with
computation is therefore full on flat jobs and covers the first step on hierarchical ones.

Flat operations call the world group's C++ methods directly (native.py) after the Communicator's own
argument checks, so the fast path costs no more host time than the raw torch.distributed call.

Start the processes with torchrun; `Communicator()` starts the default process group from torchrun's
environment when none exists (see topology.init_from_env).

`close()` destroys the groups the Communicator made; if the program never calls it, an exit hook does,
while the interpreter is still whole. A gloo group left alive into interpreter shutdown keeps worker
threads that hold tensors of finished work; freeing those tensors then needs the GIL of a half-torn-down
interpreter, and the process dies with "terminate called without an active exception" (SIGABRT) in some
runs.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
from collections.abc import Callable, Iterator

import torch
import torch.distributed as dist

from workbench import backends

from . import hierarchical, validate
from .native import NativeGroup
from .topology import Topology, as_timedelta, collective_backend, init_from_env, parse_device
from .validate import Call, CollectiveError, reduce_name

TORCH_OPS = {
    "sum": dist.ReduceOp.SUM,
    "avg": dist.ReduceOp.SUM,
    "max": dist.ReduceOp.MAX,
    "min": dist.ReduceOp.MIN,
}
# Collectives with single-tensor all_gather / reduce_scatter in every torch release we support; gloo
# lacks them in older releases, so it gets the list form and a composed reduce-scatter (see the methods).
_TENSOR_FORMS = ("nccl", "cncl", "flagcx")

Steps = Iterator["dist.Work"]


class Handle:
    """An operation in flight. `wait()` completes it and returns its result (a tensor or None)."""

    def __init__(self, steps: Steps, result: torch.Tensor | None) -> None:
        self._steps = steps
        self._result = result
        self._work = next(steps, None)

    def wait(self) -> torch.Tensor | None:
        """Block until done (on accelerators: until the current stream is ordered after it)."""
        while self._work is not None:
            self._work.wait()
            self._work = next(self._steps, None)
        return self._result

    def is_completed(self) -> bool:
        """True once `wait()` has driven every step."""
        return self._work is None


class Communicator:
    """Collectives for the ranks of a torchrun job, each rank with one device.

    device: this rank's device (default: the detected backend, index $LOCAL_RANK).
    cluster: the cluster key of this rank (default: its device type). Ranks with different keys make
        the job hierarchical: native collectives inside each cluster, host memory over gloo between
        cluster leaders. Tests pass keys to simulate clusters on one device type.
    timeout: seconds (or a timedelta) for every blocking call of the groups this object creates, and
        for the default group if it starts it.
    validate: exchange a small description of every call first so that bad arguments raise the same
        `CollectiveError` on every rank (workbench.comm.validate). Costs one small gloo all_gather per
        call; with it off, local problems raise only on the rank that has them and the others fail by
        timeout, and sizes that differ across ranks go unnoticed until the transport trips on them
        (gloo then aborts the process). All ranks must use the same setting.
    collective: torch.distributed backend for this rank's device (default: topology.collective_backend).

    All ranks of the job must construct it together (it creates process groups).
    """

    def __init__(
        self,
        device: str | torch.device | None = None,
        *,
        cluster: str | None = None,
        timeout: float | datetime.timedelta = 300.0,
        validate: bool = True,
        collective: str | None = None,
    ) -> None:
        self.device = parse_device(device)
        self.collective = collective or collective_backend(self.device.type)
        self.timeout = as_timedelta(timeout)
        self.validate = validate
        self._backend = next(b for b in backends.BACKENDS.values() if b.device_type == self.device.type)
        self._owns_default_group = init_from_env(self.device, self.collective, self.timeout)
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.host_group = dist.new_group(backend="gloo", timeout=self.timeout)
        entries: list = [None] * self.world_size
        mine = (cluster if cluster is not None else self.device.type, self.device.type, self.collective)
        dist.all_gather_object(entries, mine, group=self.host_group)
        self.topology = Topology.from_ranks([tuple(e) for e in entries])
        self.cluster = self.topology.cluster_of(self.rank)
        self._seq = 0
        self._pending: list[Handle] = []
        self._closed = False
        if self.topology.hierarchical:
            self.group = None
            for c in self.topology.clusters:  # every rank creates every group, in the same order
                g = dist.new_group(list(c.ranks), backend=c.collective, timeout=self.timeout)
                if c is self.cluster:
                    self.group = g
            self.leader_group = dist.new_group(
                list(self.topology.leaders), backend="gloo", timeout=self.timeout
            )
        else:
            self.group = dist.group.WORLD
            self.leader_group = None
            self._native = NativeGroup(self.group, self.world_size, self.collective in _TENSOR_FORMS)
        atexit.register(self.close)  # see the module docstring

    # ----------------------------------------------------------------------------------- properties
    @property
    def hierarchical(self) -> bool:
        return self.topology.hierarchical

    @property
    def is_leader(self) -> bool:
        return self.rank == self.cluster.leader

    def __repr__(self) -> str:
        mode = "hierarchical" if self.hierarchical else "flat"
        return (
            f"<Communicator rank {self.rank}/{self.world_size} on {self.device} via {self.collective}, "
            f"{mode}, clusters {[c.ranks for c in self.topology.clusters]}>"
        )

    # ----------------------------------------------------------------------------------- plumbing
    def _check(self, call: Call) -> None:
        if self._closed:
            raise CollectiveError(f"{call.op}: this Communicator is closed (its groups are destroyed)")
        while self._pending:  # hierarchical steps still to post go first, in call order (module docstring)
            self._pending.pop(0).wait()
        call.problems = validate.local_problems(call, self.device, self.world_size, self.rank)
        if self.validate:
            if call.op not in ("send", "recv"):
                self._seq += 1
                validate.check_collective(call, self._seq, self.host_group, list(range(self.world_size)))
            elif validate.valid_peer(call.root, self.rank, self.world_size):
                validate.check_p2p(call, self.rank, self.host_group)  # the peer raises with us
        if call.problems:
            raise CollectiveError(f"{call.op}: rank {self.rank}: " + "; ".join(call.problems))

    def _run(self, steps: Steps, result: torch.Tensor | None, async_op: bool):
        handle = Handle(steps, result)
        if not async_op:
            return handle.wait()
        if self.hierarchical and not handle.is_completed():
            self._pending.append(handle)
        return handle

    @staticmethod
    def _finish(work, result: torch.Tensor | None, async_op: bool):
        """A single-step operation: its Work wrapped in a Handle, or waited for (as torch does)."""
        if async_op:
            return Handle(iter([work]), result)
        if work is not None:
            work.wait()
        return result

    # ----------------------------------------------------------------------------------- collectives
    def all_reduce(self, tensor: torch.Tensor, op: str = "sum", async_op: bool = False):
        """Reduce `tensor` over all ranks in place; op is 'sum', 'avg', 'max' or 'min'.

        'avg' needs a floating dtype; where the collective lacks ReduceOp.AVG (gloo in older torch) it
        is a sum followed by a division by the world size, which is what backends that have it do too.
        Returns `tensor` (or a Handle whose wait() returns it).
        """
        self._check(Call("all_reduce", {"tensor": tensor}, reduce=op))
        name = reduce_name(op)
        if self.hierarchical:
            return self._run(hierarchical.all_reduce(self, tensor, name), tensor, async_op)
        if name == "avg" and self.collective != "nccl":
            return self._run(self._sum_then_divide(tensor), tensor, async_op)
        op = dist.ReduceOp.AVG if name == "avg" else TORCH_OPS[name]
        return self._finish(self._native.all_reduce(tensor, op, async_op), tensor, async_op)

    def _sum_then_divide(self, tensor: torch.Tensor) -> Steps:
        yield self._native.all_reduce(tensor, dist.ReduceOp.SUM, True)
        tensor.div_(self.world_size)

    def reduce_scatter(
        self, output: torch.Tensor, input: torch.Tensor, op: str = "sum", async_op: bool = False
    ):
        """Reduce `input` (world_size x output.numel() elements) over ranks; rank r gets block r in `output`.

        On gloo (which lacks reduce_scatter_tensor in older torch) it is an all_reduce of a copy of
        `input` followed by taking this rank's block: correct, with about twice the traffic of a true
        reduce-scatter. 'avg' without native support is a sum divided by the world size. `input` is
        never modified. Returns `output`.
        """
        self._check(Call("reduce_scatter", {"output": output, "input": input}, reduce=op))
        name = reduce_name(op)
        if self.hierarchical:
            return self._run(hierarchical.reduce_scatter(self, output, input, name), output, async_op)
        if self._native.has_reduce_scatter and (name != "avg" or self.collective == "nccl"):
            op = dist.ReduceOp.AVG if name == "avg" else TORCH_OPS[name]
            return self._finish(self._native.reduce_scatter(output, input, op, async_op), output, async_op)
        return self._run(self._composed_reduce_scatter(output, input, name), output, async_op)

    def _composed_reduce_scatter(self, output: torch.Tensor, input: torch.Tensor, name: str) -> Steps:
        if self._native.has_reduce_scatter:
            yield self._native.reduce_scatter(output, input, dist.ReduceOp.SUM, True)
        else:
            work = input.clone()
            yield self._native.all_reduce(work, TORCH_OPS[name], True)
            output.view(-1).copy_(work.view(self.world_size, -1)[self.rank])
        if name == "avg":
            output.div_(self.world_size)

    def all_gather(self, output: torch.Tensor, input: torch.Tensor, async_op: bool = False):
        """Concatenate every rank's `input` (in rank order) into `output` (world_size x input.numel()).

        gloo gets the list form of all_gather on views of `output` (the single-tensor form is missing
        from gloo in older torch). Returns `output`.
        """
        self._check(Call("all_gather", {"output": output, "input": input}))
        if self.hierarchical:
            return self._run(hierarchical.all_gather(self, output, input), output, async_op)
        return self._finish(self._native.all_gather(output, input, async_op), output, async_op)

    def broadcast(self, tensor: torch.Tensor, src: int = 0, async_op: bool = False):
        """Copy `tensor` of rank `src` into `tensor` on every rank. Returns `tensor`."""
        self._check(Call("broadcast", {"tensor": tensor}, root=src))
        if self.hierarchical:
            return self._run(hierarchical.broadcast(self, tensor, src), tensor, async_op)
        return self._finish(self._native.broadcast(tensor, src, async_op), tensor, async_op)

    def all_to_all(self, output: torch.Tensor, input: torch.Tensor, async_op: bool = False):
        """Rank r sends block j of `input` (equal blocks, one per rank) to rank j, which stores it as block r
        of `output`. Returns `output`."""
        self._check(Call("all_to_all", {"output": output, "input": input}))
        if self.hierarchical:
            return self._run(hierarchical.all_to_all(self, output, input), output, async_op)
        return self._finish(self._native.all_to_all(output, input, async_op), output, async_op)

    def send(self, tensor: torch.Tensor, dst: int, async_op: bool = False):
        """Send `tensor` to rank `dst`, which must call `recv` with a tensor of the same dtype and size.

        Between clusters the data goes through host memory over gloo. Returns None (or a Handle).
        """
        self._check(Call("send", {"tensor": tensor}, root=dst))
        return self._run(self._p2p(tensor, dst, dist.isend, None), None, async_op)

    def recv(self, tensor: torch.Tensor, src: int, async_op: bool = False):
        """Receive into `tensor` what rank `src` sends. Returns `tensor` (or a Handle)."""
        self._check(Call("recv", {"tensor": tensor}, root=src))
        return self._run(self._p2p(tensor, src, dist.irecv, tensor), tensor, async_op)

    def _p2p(self, tensor: torch.Tensor, peer: int, post: Callable, into: torch.Tensor | None) -> Steps:
        if not self.hierarchical or peer in self.cluster.ranks:
            yield post(tensor, peer, group=self.group)
            return
        host = hierarchical.to_host(tensor) if into is None else torch.empty_like(tensor, device="cpu")
        yield post(host, peer, group=self.host_group)
        if into is not None:
            hierarchical.from_host(into, host)

    def synchronize(self) -> None:
        """Wait for this rank's queued device work (no communication)."""
        self._backend.synchronize()

    def barrier(self, async_op: bool = False):
        """Wait until every rank has reached this call and finished its queued device work."""
        self._check(Call("barrier"))
        self.synchronize()
        return self._run(iter([dist.barrier(group=self.host_group, async_op=True)]), None, async_op)

    def close(self) -> None:
        """Destroy the process groups this object created, the default group too if it started it.

        Idempotent, and a no-op for groups already gone (another Communicator that started the default
        group destroyed every group when it closed). Runs at exit if the program does not call it."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        if not dist.is_initialized():
            return
        groups = [self.host_group] + ([self.group, self.leader_group] if self.hierarchical else [])
        for g in groups:  # subgroups before the default group
            if g is not None and g != dist.GroupMember.NON_GROUP_MEMBER:
                with contextlib.suppress(ValueError):  # "Invalid process group": already destroyed
                    dist.destroy_process_group(g)
        if self._owns_default_group:
            dist.destroy_process_group()
        # Drop every reference to the groups and their work, so the C++ objects and their threads go now,
        # while the interpreter is whole, not at its teardown.
        self._pending.clear()
        self.host_group = self.group = self.leader_group = self._native = None


__all__ = ["CollectiveError", "Communicator", "Handle"]
