"""Measuring ops against their native references: correctness, timing and the side-by-side bench.

check() -> correctness table (`correctness`); bench() -> native vs Triton timing table (`bench`, timed by
`timing`); roofline.peaks() -> measured device ceilings; `tuning`, `selection`: what the ops layer is handed
to choose kernel configs and to serve only the ops that won. The tables are kept by `workbench.store` and
drawn by `workbench.reports`. Importing the package makes the store-backed tuning cache and the
alternated-rounds timer the ops layer's default (`tuning`).
"""

from . import tuning  # noqa: F401 (sets the ops layer's tuning default)
from .bench import bench, peer_table, side_by_side
from .correctness import check, check_rules, compare_outputs, failures

__all__ = ["bench", "peer_table", "side_by_side", "check", "check_rules", "compare_outputs", "failures"]
