"""Candidate kernels: the file format, loading one, and putting it in the registry of a process.

A candidate is one Python file that imports only absolute names (`from workbench.ops._common import
new_output`, never `from ._common ...`), because it is loaded on its own before it has a home in the
package. It holds:

* the op's torch-like wrapper, a function **named after the op** (``def rms_norm(x, weight=None,
  eps=1e-6)``), plus whatever ``@triton.jit`` kernels and helpers it calls;
* for an op the registry already has: nothing else. The wrapper must keep the registered op's
  signature (same parameter names, kinds and defaults): it becomes a per-backend variant
  (``OpSpec.variants[backend]``) and is checked against the registered reference and cases;
* for a new op: also ``SPEC = OpSpec(name=<op>, impl=<the wrapper>, reference=..., cases=...,
  cost=..., aten=...)``, **not** registered (promotion adds the ``register`` call).

Loading executes the file, so untrusted candidates are loaded only inside a worker process
(`workbench.porting.worker`); promoted kernels are ordinary package modules. `template(op, backend)`
turns the module of an op's current implementation into a candidate to start from.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import keyword
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Callable

from workbench.ops import spec as opspec

# Names that are package modules in workbench/ops/ but not ops; promotion must not write over them.
RESERVED_NAMES = frozenset({"spec", "variants"})


class CandidateError(ValueError):
    """The candidate file does not follow the candidate format."""


@dataclass
class Candidate:
    op: str
    path: Path
    module: ModuleType
    fn: Callable  # the wrapper named after the op
    new_op: bool  # True: the file declares SPEC for an op the registry lacks
    spec: opspec.OpSpec  # for a new op its own SPEC; else the registered spec (unchanged)

    def spec_for(self, backend: str) -> opspec.OpSpec:
        """A spec whose implementation on `backend` is this candidate (the registry is left alone)."""
        if self.new_op:
            return self.spec
        return replace(
            self.spec,
            variants={**self.spec.variants, backend: self.fn},
            status=dict(self.spec.status),
            tolerance=dict(self.spec.tolerance),
        )


def check_op_name(op: str) -> str:
    if not isinstance(op, str) or not op.isidentifier() or keyword.iskeyword(op):
        raise CandidateError(f"op: expected a Python identifier such as 'rms_norm', got {op!r}")
    if op.startswith("_") or op in RESERVED_NAMES:
        raise CandidateError(f"op: {op!r} is reserved (names starting with '_' and {sorted(RESERVED_NAMES)})")
    return op


def check_file_name(path: str | Path) -> Path:
    """A candidate file name is an identifier ending in .py (it is named in generated code)."""
    path = Path(path)
    if path.suffix != ".py" or not path.stem.isidentifier():
        raise CandidateError(
            f"candidate file: expected a name such as 'rms_norm_v2.py' (a Python identifier + "
            f"'.py'), got {path.name!r}"
        )
    return path


def declares_spec(source: str) -> bool:
    """Whether the module source assigns SPEC at top level (a new op), read without executing it."""
    for node in ast.parse(source).body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else ([node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else [])
        )
        if any(isinstance(t, ast.Name) and t.id == "SPEC" for t in targets):
            return True
    return False


def signature_problem(fn: Callable, registered: Callable) -> str | None:
    """None when `fn` takes the same parameters (names, kinds, defaults) as `registered`."""
    try:
        got, want = inspect.signature(fn), inspect.signature(registered)
    except (TypeError, ValueError):
        return None  # builtins without a signature: nothing to compare

    def describe(sig):
        return [(p.name, p.kind.description, p.default) for p in sig.parameters.values()]

    if describe(got) == describe(want):
        return None
    return f"expected the registered signature {want}, got {got}"


def load_module(path: str | Path, module_name: str | None = None) -> ModuleType:
    """Execute the file at `path` as module `module_name` (default: a name derived from the file).

    Triton reads kernel source through `inspect`, so the module must come from a real file.
    """
    path = Path(path)
    if not path.is_file():
        raise CandidateError(f"candidate: expected a Python file, got {str(path)!r} (not found)")
    name = module_name or "workbench_candidate_" + re.sub(r"\W", "_", path.stem)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CandidateError(f"candidate: cannot load {str(path)!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def load(path: str | Path, op: str, module_name: str | None = None, replacing: bool = False) -> Candidate:
    """Load and validate the candidate at `path` for `op` (see the module docstring for the format).

    replacing: a file that declares SPEC may name a registered op (promotion with force=True
    replaces that op's module); `install` then drops the registered spec first.
    """
    check_op_name(op)
    module = load_module(path, module_name)
    fn = getattr(module, op, None)
    if not callable(fn):
        raise CandidateError(
            f"candidate {Path(path).name}: expected a function named {op!r} (the op's wrapper), "
            f"found {'none' if fn is None else type(fn).__name__}"
        )
    declared = getattr(module, "SPEC", None)
    registered = opspec.REGISTRY.get(op)
    if declared is None:
        if registered is None:
            raise CandidateError(
                f"candidate {Path(path).name}: op {op!r} is not registered, so the file must declare "
                f"SPEC = OpSpec(name={op!r}, impl={op}, ...) for the new op; "
                f"registered ops: {sorted(opspec.REGISTRY)}"
            )
        problem = signature_problem(fn, registered.impl)
        if problem:
            raise CandidateError(f"candidate {Path(path).name}: {op}() {problem}")
        return Candidate(op, Path(path), module, fn, new_op=False, spec=registered)
    if not isinstance(declared, opspec.OpSpec):
        raise CandidateError(
            f"candidate {Path(path).name}: SPEC: expected an OpSpec, got {type(declared).__name__}"
        )
    if registered is not None and not replacing:
        raise CandidateError(
            f"candidate {Path(path).name}: declares SPEC for {op!r}, which is already registered; "
            f"drop SPEC to make it a backend variant of the registered op"
        )
    if declared.name != op:
        raise CandidateError(
            f"candidate {Path(path).name}: SPEC.name: expected {op!r}, got {declared.name!r}"
        )
    if declared.impl is not fn:
        raise CandidateError(
            f"candidate {Path(path).name}: SPEC.impl: expected the wrapper {op}(), "
            f"got {getattr(declared.impl, '__name__', declared.impl)!r}"
        )
    missing = [s for s in opspec.CASE_SETS if s not in declared.cases]
    if missing:
        raise CandidateError(f"candidate {Path(path).name}: SPEC.cases lacks case sets {missing}")
    return Candidate(op, Path(path), module, fn, new_op=True, spec=declared)


def install(candidate: Candidate, backend: str) -> opspec.OpSpec:
    """Make the registry of *this* process run the candidate on `backend` (workers only: no undo)."""
    if candidate.new_op:
        opspec.REGISTRY.pop(candidate.op, None)  # only present when `load` was told it is replacing
        return opspec.register(candidate.spec)
    spec = opspec.REGISTRY[candidate.op]
    spec.variants[backend] = candidate.fn
    return spec


def _mentions_spec(node: ast.AST) -> bool:
    """A top-level statement that builds, registers or extends the op's SPEC (a candidate for a
    registered op declares none)."""
    for n in ast.walk(node):
        if (isinstance(n, ast.Name) and n.id == "SPEC") or (
            isinstance(n, ast.Attribute) and n.attr == "SPEC"
        ):
            return True  # the op's SPEC, or another op's (`log_softmax.SPEC.add_variant(...)`)
        if isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", None)) == "register":
            return True
    return False


def template(op: str, backend: str) -> str:
    """The source of the implementation `op` runs on `backend`, as a candidate file: relative imports
    made absolute, SPEC and its registration dropped, the wrapper reachable under the op's name."""
    spec = opspec.get(op)
    fn = spec.variants.get(backend, spec.impl)
    module = sys.modules[fn.__module__]
    path = Path(inspect.getsourcefile(module))
    source = path.read_text()
    lines = source.splitlines(keepends=True)
    replace_at: dict[int, str] = {}  # a node's first line (0-based) -> its new text; its other lines go
    dropped: set[int] = set()
    tree = ast.parse(source)
    for node in ast.walk(tree):  # relative imports anywhere (a function may import lazily), made absolute
        if isinstance(node, ast.ImportFrom) and (node.level or any(a.name == "SPEC" for a in node.names)):
            span = range(node.lineno - 1, node.end_lineno)
            name = importlib.util.resolve_name("." * node.level + (node.module or ""), module.__package__)
            names = [a for a in node.names if a.name != "SPEC"]  # a variant's module imports the op's SPEC
            statement = ast.unparse(ast.ImportFrom(module=name, names=names, level=0))
            replace_at[span[0]] = " " * node.col_offset + statement + "\n" if names else ""
            dropped.update(span[1:])
    for node in tree.body:
        if not isinstance(node, ast.ImportFrom) and _mentions_spec(node):
            dropped.update(range(node.lineno - 1, node.end_lineno))
    body = "".join(replace_at.get(i, line) for i, line in enumerate(lines) if i not in dropped)
    where = module.__name__.replace(".", "/") + ".py"
    head = f"# The current {op} on {backend} ({where}) as a candidate: edit it, then Check.\n"
    tail = ""
    if fn.__name__ != op:  # a variant's wrapper may have another name; a candidate's has the op's
        tail = f"\n\n{op} = {fn.__name__}\n"
    return head + body.rstrip() + "\n" + tail
