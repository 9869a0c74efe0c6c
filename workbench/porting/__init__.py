"""The porting pipeline, without widgets: the candidate file format, isolated worker runs, promotion.

`candidate` (what a candidate file holds and how it is loaded), `worker` (runs a candidate's check or
profile in its own process, under `supervise`), `judge` (the verdict, computed in the caller from the
worker's outputs) and `promotion` (`promote()` writes a checked candidate into the package, `recover()`
finishes or rolls back an interrupted one). docs/porting.md states what they guarantee.
The panel in `workbench.ui` and the CLI both call these. Modules load on first use, so that
`python -m workbench.porting.worker` starts without importing its own module twice.
"""

from workbench._lazy import attach

__getattr__, __all__ = attach(
    __name__,
    ["candidate", "worker", "judge", "promotion"],
    {"PromotionError": "promotion", "promote": "promotion", "recover": "promotion"},
)
