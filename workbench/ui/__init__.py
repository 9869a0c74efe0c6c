"""The porting workbench's front end: candidate kernels, isolated runs, promotion, the ipywidgets panel.

`candidate` (the candidate file format), `worker` (runs a candidate in its own process), `promotion`
(`promote()` writes a checked candidate into the package) and `views` (tables and figures) need no
widgets; `PortingPanel` needs ipywidgets 8. Everything loads on first use, so that
`python -m workbench.ui.worker` starts without importing its own module twice.
"""

import importlib

__all__ = ["PortingPanel", "PromotionError", "promote", "candidate", "worker", "promotion", "views", "panel"]
_FROM = {"PortingPanel": "panel", "PromotionError": "promotion", "promote": "promotion"}


def __getattr__(name: str):
    if name in _FROM:
        return getattr(importlib.import_module(f"{__name__}.{_FROM[name]}"), name)
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'workbench.ui' has no attribute {name!r}")
