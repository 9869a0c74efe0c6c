"""Packages whose submodules and re-exported names load on first use (PEP 562 module `__getattr__`).

Keeps `import workbench`, `workbench.porting` and `workbench.ui` cheap: `--help` and `list` start without
pandas or torch's compile stack, and `python -m workbench.porting.worker` does not import itself twice.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def attach(
    package: str, submodules: Iterable[str], names: Mapping[str, str] | None = None
) -> tuple[Callable[[str], Any], list[str]]:
    """(`__getattr__`, `__all__`) of `package`: its `submodules`, and each of `names` (name -> the submodule
    that defines it), imported when first asked for."""
    submodules, names = list(submodules), dict(names or {})

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, [*names, *submodules]
