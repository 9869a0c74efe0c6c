"""Unified collectives over torch.distributed: one `Communicator` for nccl, cncl, gloo and flagcx,
flat or hierarchical across clusters of different device types, plus a bus-bandwidth benchmark.

Start jobs with torchrun, e.g. `torchrun --nproc_per_node=2 -m workbench.cli comm-bench`.
"""

from .communicator import Communicator, Handle
from .topology import Cluster, Topology, collective_backend
from .validate import CollectiveError

__all__ = ["Cluster", "CollectiveError", "Communicator", "Handle", "Topology", "collective_backend"]
