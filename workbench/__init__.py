"""workbench: port LLM operators from native vendor libraries to Triton, check and profile them.

Subpackages load on first use. The first one that defines kernels (`workbench.ops`) binds the process
to one backend: $WORKBENCH_BACKEND, else mlu > cuda > cpu (see workbench.backends.active).
"""

import importlib

__all__ = ["backends", "ops", "profiling", "dispatch", "compile"]
__version__ = "0.1.0"

# The ATen dispatch override (workbench.dispatch): `with workbench.use_ops() as cov: ...`.
_DISPATCH = ("enable", "disable", "use_ops")
__all__ += list(_DISPATCH)
# The torch.compile backend (workbench.compile): importing it registers backend="workbench".
_COMPILE = ("compile_coverage",)
__all__ += list(_COMPILE)


def __getattr__(name: str):
    if name in _DISPATCH:
        return getattr(importlib.import_module(f"{__name__}.dispatch"), name)
    if name in _COMPILE:
        return getattr(importlib.import_module(f"{__name__}.compile"), name)
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")
