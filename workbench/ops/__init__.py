"""Triton ops, one module per op, each declaring its OpSpec beside its kernel.

Importing this package fixes the process's backend first (see workbench.backends.active), so that
every kernel below is defined in the same mode: interpreted on cpu, compiled on cuda/mlu. Then it
imports, in this order and each in name order: every op module here (those written by `workbench
promote` too), the MLU kernels of `mlu/` and the promoted per-backend variants of `variants/` (which
override what the others declare for the same backend). `workbench.ops.<name>` is then the public
function of every registered op: it runs the active backend's implementation (`OpSpec.implementation`).
"""

import importlib as _importlib
import pkgutil as _pkgutil

from workbench import backends as _backends

_backends.active()

from . import _library  # noqa: E402 (before the op modules: registering an op defines its custom operators)
from ._index_check import raise_pending  # noqa: E402  (a bad index no later call has reported yet)
from .spec import CASE_SETS, REGISTRY, Case, Cost, OpSpec, Unsupported, get, register  # noqa: E402

_PACKAGES = ("mlu", "variants")  # below the op modules: their kernels and variants import the ops


def _import_all(package: str, path, only=None) -> None:
    """Import every public module of `package` (at `path`; those named in `only`), in name order."""
    for module in sorted(_pkgutil.iter_modules(path), key=lambda m: m.name):
        if (
            not module.name.startswith("_")
            and module.name not in ("spec", *_PACKAGES)
            and (only is None or module.name in only)
        ):
            _importlib.import_module(f"{package}.{module.name}")


_import_all(__name__, __path__)
# ops/mlu/<op>.py: an op's MLU kernel (the package's other modules, sizing and rules, load on use)
_import_all(f"{__name__}.mlu", _importlib.import_module(f"{__name__}.mlu").__path__, only=REGISTRY)
_import_all(f"{__name__}.variants", _importlib.import_module(f"{__name__}.variants").__path__)

__all__ = [
    "REGISTRY",
    "CASE_SETS",
    "Case",
    "Cost",
    "OpSpec",
    "Unsupported",
    "get",
    "register",
    "raise_pending",
    *REGISTRY,
]
globals().update({_name: _library.dispatching(_spec) for _name, _spec in REGISTRY.items()})
