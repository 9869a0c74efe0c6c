"""The porting workbench's widgets: the ipywidgets panel (`PortingPanel`, needs ipywidgets 8).

The pipeline the panel drives (candidate files, worker runs, promotion) lives in `workbench.porting`
and needs no widgets. Modules load on first use. `%load_ext workbench.ui` registers the `%%candidate`
cell magic (`workbench.ui.magics`); creating a panel does too.
"""

from workbench._lazy import attach

__getattr__, __all__ = attach(__name__, ["panel", "magics"], {"PortingPanel": "panel"})


def load_ipython_extension(shell) -> None:
    """`%load_ext workbench.ui`: register the `%%candidate OP` cell magic."""
    from .magics import register

    register(shell)
