"""The porting workbench's widgets: the ipywidgets panel (`PortingPanel`, needs ipywidgets 8).

The pipeline the panel drives (candidate files, worker runs, promotion) lives in `workbench.porting`
and needs no widgets. Modules load on first use.
"""

import importlib

__all__ = ["PortingPanel", "panel"]
_FROM = {"PortingPanel": "panel"}


def __getattr__(name: str):
    if name in _FROM:
        return getattr(importlib.import_module(f"{__name__}.{_FROM[name]}"), name)
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'workbench.ui' has no attribute {name!r}")
