"""The workbench side of a model run: our ops in a model, eagerly or compiled, under one selection.

- "eager": `workbench.use_ops(include, exclude)`; every ATen call goes through the dispatcher to our
  kernel (the way to debug one op, and what bisection with `execution="eager"` switches).
- "compile": the model's forward compiled with `torch.compile(backend="workbench")` (our ops in the ATen
  graph, fusion patterns for rms_norm / add_rms_norm / silu_and_mul / rope when `fuse`, inductor for
  the rest), installed on the model for the length of the context. One compiled forward per (model,
  selection) is kept, so re-entering does not recompile.

`include` / `exclude` name registry ops (also fused ops) or ATen overloads, as for `use_ops`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch

EXECUTIONS = ("compile", "eager")


def default_execution(backend) -> str:
    """ "compile" where the backend compiles kernels; "eager" in the interpreter (compiling works there
    too, but the interpreter's kernels gain nothing from it and the compile takes the time)."""
    return "eager" if backend.interpreted else "compile"


def check_selection(include: Iterable[str] | None, exclude: Iterable[str] | None) -> None:
    """Raise ValueError for names that are neither registry ops nor claimed ATen overloads."""
    from workbench.selection import select

    select(include, exclude)


def _aten_only(names):
    """`names` without the fused ops, which `use_ops` (no graph to fuse in) refuses."""
    if names is None:
        return None
    from workbench.selection import fused_ops

    names = [names] if isinstance(names, str) else list(names)
    return [n for n in names if n not in fused_ops()]


class _CompileCoverage:
    def table(self):
        import workbench.compile

        return workbench.compile.compile_coverage()


def compiled_forward(
    model: torch.nn.Module,
    include=None,
    exclude=None,
    fuse: bool = True,
    fastest: bool = False,
    cudagraphs: bool = False,
):
    """The model's forward compiled with the workbench backend for this selection (made once); `fastest`
    and `cudagraphs`: the backend's options of those names (a node stays native unless our kernel times
    faster on its inputs; the compiled graphs replay as CUDA graphs)."""
    import workbench.compile  # noqa: F401 (registers the backend)

    key = (
        tuple(include) if include is not None else None,
        tuple(exclude) if exclude is not None else None,
        fuse,
        fastest,
        cudagraphs,
    )
    cache = model.__dict__.setdefault("_workbench_compiled", {})
    if key not in cache:
        options = dict(
            include=include, exclude=exclude, patterns=fuse, fastest=fastest, cudagraphs=cudagraphs
        )
        cache[key] = torch.compile(type(model).forward.__get__(model), backend="workbench", options=options)
    return cache[key]


@contextlib.contextmanager
def workbench_side(
    model: torch.nn.Module,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    fuse: bool = True,
    execution: str = "eager",
    fastest: bool = False,
    cudagraphs: bool = False,
) -> Iterator:
    """Inside, `model` runs our ops; yields an object whose `table()` is the coverage. Compiled execution
    only (`compiled_forward`): `fastest`, nodes where our kernel is not faster stay native; `cudagraphs`,
    the graphs replay as CUDA graphs (torch's CUDA graph trees)."""
    import workbench

    if execution not in EXECUTIONS:
        raise ValueError(f"execution: expected one of {EXECUTIONS}, got {execution!r}")
    if fastest and execution != "compile":
        raise ValueError("fastest: a compile-time choice per graph node; it needs execution='compile'")
    if cudagraphs and execution != "compile":
        raise ValueError("cudagraphs: graphs to replay come from compiling; it needs execution='compile'")
    if execution == "eager":
        aten_exclude = _aten_only(exclude)
        with workbench.use_ops(include=_aten_only(include), exclude=aten_exclude or None) as cov:
            yield cov
        return
    model.forward = compiled_forward(model, include, exclude, fuse, fastest, cudagraphs)
    try:
        yield _CompileCoverage()
    finally:
        del model.forward  # the class's forward shows through again
