"""The porting pipeline, without widgets: the candidate file format, isolated worker runs, promotion.

`candidate` (what a candidate file holds and how it is loaded), `worker` (runs a candidate's check or
profile in its own process, under `supervise`), `judge` (the verdict, computed in the caller from the
worker's outputs) and `promotion` (`promote()` writes a checked candidate into the package, `recover()`
finishes or rolls back an interrupted one). docs/porting.md states what they guarantee.
The panel in `workbench.ui` and the CLI both call these. Modules load on first use, so that
`python -m workbench.porting.worker` starts without importing its own module twice.
"""

import importlib

__all__ = ["PromotionError", "promote", "recover", "candidate", "worker", "judge", "promotion"]
_FROM = {"PromotionError": "promotion", "promote": "promotion", "recover": "promotion"}


def __getattr__(name: str):
    if name in _FROM:
        return getattr(importlib.import_module(f"{__name__}.{_FROM[name]}"), name)
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'workbench.porting' has no attribute {name!r}")
