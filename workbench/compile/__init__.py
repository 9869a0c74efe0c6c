"""torch.compile with workbench's ops: the "workbench" dynamo backend, its fusion patterns and coverage.

    import workbench.compile  # registers the backend with dynamo
    compiled = torch.compile(model, backend="workbench", options={"exclude": ["topk"]})
    workbench.compile_coverage()

See `backend.py` for what the backend does to a graph and `patterns.py` for the fusions.
"""

from workbench import backends as _backends

_backends.active()  # before torch._inductor, which imports triton (see workbench.backends.active)

from .backend import (  # noqa: E402
    INNER,
    OPTIONS,
    OVER_INDUCTOR,
    Options,
    compile_coverage,
    reset_coverage,
    workbench_backend,
)

__all__ = [
    "INNER",
    "OPTIONS",
    "OVER_INDUCTOR",
    "Options",
    "compile_coverage",
    "reset_coverage",
    "workbench_backend",
]


def _register() -> None:
    from torch._dynamo.backends.registry import _COMPILER_FNS, register_backend

    if "workbench" not in _COMPILER_FNS:
        register_backend(workbench_backend, name="workbench")


_register()
