"""Correctness checks and side-by-side profiling of ops against their native references.

check() -> correctness table; bench() -> native vs Triton timing table; ResultStore -> durable history;
roofline.peaks() -> measured device ceilings; plots -> matplotlib Figures from those tables.
"""

from .bench import bench, side_by_side
from .correctness import check, compare, failures
from workbench.store import ResultStore
from workbench.store import compare as compare_runs

__all__ = ["bench", "side_by_side", "check", "compare", "failures", "ResultStore", "compare_runs"]
