"""Correctness checks and side-by-side profiling of ops against their native references.

check() -> correctness table; bench() -> native vs Triton timing table; ResultStore -> durable history;
roofline.peaks() -> measured device ceilings; plots -> matplotlib Figures from those tables.
"""

from workbench.store import ResultStore
from workbench.store import compare as compare_runs

from .bench import bench, peer_table, side_by_side
from .correctness import check, check_rules, compare_outputs, failures

__all__ = ["bench", "peer_table", "side_by_side", "check", "check_rules", "compare_outputs", "failures",
           "ResultStore", "compare_runs"]
