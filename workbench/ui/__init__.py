"""The porting workbench's widgets: the ipywidgets panel (`PortingPanel`, needs ipywidgets 8).

The pipeline the panel drives (candidate files, worker runs, promotion) lives in `workbench.porting`
and needs no widgets. Modules load on first use. `%load_ext workbench.ui` registers the `%%candidate`
cell magic (`workbench.ui.magics`); creating a panel does too.
"""

import importlib

__all__ = ["PortingPanel", "panel", "magics"]
_FROM = {"PortingPanel": "panel"}


def load_ipython_extension(shell) -> None:
    """`%load_ext workbench.ui`: register the `%%candidate OP` cell magic."""
    from .magics import register

    register(shell)


def __getattr__(name: str):
    if name in _FROM:
        return getattr(importlib.import_module(f"{__name__}.{_FROM[name]}"), name)
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'workbench.ui' has no attribute {name!r}")
