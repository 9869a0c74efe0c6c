"""Correctness checks and (side-by-side) profiling of ops against their native references."""

from .correctness import check, compare, failures

__all__ = ["check", "compare", "failures"]
