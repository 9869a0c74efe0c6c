"""Hierarchical collectives for jobs whose ranks sit on different device types (clusters).

Each operation has three stages:
1. inside each cluster, the native collective (nccl, cncl, gloo, ...) brings the cluster's data to
   its leader (the cluster's lowest rank): reduce, gather, or a broadcast from the source;
2. the leaders exchange through host memory over a gloo group (the only transport every device type
   shares): copy to the CPU, run the collective on the leader group, copy back;
3. inside each cluster, the leader fans the result out: broadcast or scatter.
Stages a cluster of one rank does not need are skipped. Results equal the flat path: exactly for
integers, within float rounding for floating types (the sum is taken in another order).

The functions are generators over the torch `Work` objects to wait on between stages (see
communicator.Handle); `comm` is the calling communicator, of which they read only its `Groups`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import torch
import torch.distributed as dist

from .topology import Cluster, Topology


class Groups(Protocol):
    """What the stages read from the calling communicator: its place in the job and its groups."""

    rank: int
    world_size: int
    topology: Topology
    cluster: Cluster  # this rank's cluster
    group: Any  # the cluster's process group (native collective)
    leader_group: Any  # the leaders' gloo group

    @property
    def is_leader(self) -> bool: ...


_OPS = {
    "sum": dist.ReduceOp.SUM,
    "avg": dist.ReduceOp.SUM,
    "max": dist.ReduceOp.MAX,
    "min": dist.ReduceOp.MIN,
}


def to_host(t: torch.Tensor) -> torch.Tensor:
    """`t` itself when it is already in host memory, else a CPU copy (after queued device work)."""
    return t if t.device.type == "cpu" else t.to("cpu")


def from_host(t: torch.Tensor, host: torch.Tensor) -> None:
    if host.data_ptr() != t.data_ptr():
        t.copy_(host.view(t.shape))


def _reduce_to_leaders(comm: Groups, buf: torch.Tensor, name: str) -> Iterator:
    """Stages 1 and 2 of a reduction: on return the leaders hold the reduction over all ranks in `buf`."""
    c = comm.cluster
    if c.size > 1:
        yield dist.reduce(buf, dst=c.leader, op=_OPS[name], group=comm.group, async_op=True)
    if comm.is_leader:
        host = to_host(buf)
        yield dist.all_reduce(host, op=_OPS[name], group=comm.leader_group, async_op=True)
        from_host(buf, host)


def all_reduce(comm: Groups, tensor: torch.Tensor, name: str) -> Iterator:
    yield from _reduce_to_leaders(comm, tensor, name)
    if comm.cluster.size > 1:
        yield dist.broadcast(tensor, src=comm.cluster.leader, group=comm.group, async_op=True)
    if name == "avg":
        tensor.div_(comm.world_size)


def reduce_scatter(comm: Groups, output: torch.Tensor, input: torch.Tensor, name: str) -> Iterator:
    """Reduce a copy of `input` to the leaders, then each leader scatters its ranks' blocks."""
    c = comm.cluster
    work = input.clone()
    yield from _reduce_to_leaders(comm, work, name)
    blocks = work.view(comm.world_size, -1)
    if c.size > 1:
        parts = [blocks[r] for r in c.ranks] if comm.is_leader else None
        yield dist.scatter(output.view(-1), parts, src=c.leader, group=comm.group, async_op=True)
    else:
        output.view(-1).copy_(blocks[comm.rank])
    if name == "avg":
        output.div_(comm.world_size)


def all_gather(comm: Groups, output: torch.Tensor, input: torch.Tensor) -> Iterator:
    """Gather each cluster's inputs at its leader, swap the blocks between leaders, broadcast the whole."""
    c, topo = comm.cluster, comm.topology
    n = input.numel()
    if c.size > 1:
        block = torch.empty(c.size, n, dtype=input.dtype, device=input.device) if comm.is_leader else None
        parts = list(block.unbind(0)) if comm.is_leader else None
        yield dist.gather(input.view(-1), parts, dst=c.leader, group=comm.group, async_op=True)
    else:
        block = input.view(1, n)
    if comm.is_leader:
        # gloo's all_gather wants equal sizes: pad every cluster's block to the largest cluster.
        widest = max(k.size for k in topo.clusters)
        mine = torch.zeros(widest, n, dtype=input.dtype)
        mine[: c.size] = block.cpu()
        gathered = [torch.empty_like(mine) for _ in topo.clusters]
        yield dist.all_gather(gathered, mine, group=comm.leader_group, async_op=True)
        full = torch.empty(comm.world_size, n, dtype=input.dtype)
        for k, got in zip(topo.clusters, gathered):
            full[list(k.ranks)] = got[: k.size]
        from_host(output, full)
    if c.size > 1:
        yield dist.broadcast(output, src=c.leader, group=comm.group, async_op=True)


def broadcast(comm: Groups, tensor: torch.Tensor, src: int) -> Iterator:
    """Broadcast inside the source's cluster, then between leaders, then inside the other clusters."""
    c, source = comm.cluster, comm.topology.cluster_of(src)
    inside = c == source
    if inside and c.size > 1:
        yield dist.broadcast(tensor, src=src, group=comm.group, async_op=True)
    if comm.is_leader:
        host = to_host(tensor) if inside else torch.empty(tensor.shape, dtype=tensor.dtype)
        yield dist.broadcast(host, src=source.leader, group=comm.leader_group, async_op=True)
        if not inside:
            from_host(tensor, host)
    if not inside and c.size > 1:
        yield dist.broadcast(tensor, src=c.leader, group=comm.group, async_op=True)


def all_to_all(comm: Groups, output: torch.Tensor, input: torch.Tensor) -> Iterator:
    """Leaders collect their cluster's inputs, swap with each other leader exactly the blocks that go to
    that leader's ranks (one all_to_all with uneven splits over gloo), then scatter to their ranks."""
    c, topo, world = comm.cluster, comm.topology, comm.world_size
    k = input.numel() // world
    if c.size > 1:
        mine = (
            torch.empty(c.size, world, k, dtype=input.dtype, device=input.device) if comm.is_leader else None
        )
        parts = list(mine.view(c.size, world * k).unbind(0)) if comm.is_leader else None
        yield dist.gather(input.view(-1), parts, dst=c.leader, group=comm.group, async_op=True)
    else:
        mine = input.view(1, world, k)
    if comm.is_leader:
        # mine[i, j] = block that rank c.ranks[i] sends to global rank j
        host = mine.cpu()
        send = torch.cat([host[:, list(d.ranks)].reshape(-1) for d in topo.clusters])
        send_splits = [c.size * d.size * k for d in topo.clusters]
        recv_splits = [s.size * c.size * k for s in topo.clusters]
        recv = torch.empty(sum(recv_splits), dtype=input.dtype)
        yield dist.all_to_all_single(
            recv, send, recv_splits, send_splits, group=comm.leader_group, async_op=True
        )
        # from cluster s: blocks [rank of s, rank of my cluster]; mine_out[i, j] = block j sends to c.ranks[i]
        mine_out = torch.empty(c.size, world, k, dtype=input.dtype)
        for s, got in zip(topo.clusters, recv.split(recv_splits)):
            mine_out[:, list(s.ranks)] = got.view(s.size, c.size, k).transpose(0, 1)
        dev_out = mine_out.to(input.device)
    if c.size > 1:
        parts = list(dev_out.view(c.size, world * k).unbind(0)) if comm.is_leader else None
        yield dist.scatter(output.view(-1), parts, src=c.leader, group=comm.group, async_op=True)
    else:
        output.view(-1).copy_(dev_out.view(-1))
