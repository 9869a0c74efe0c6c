"""What a Triton launch did, seen from outside the kernel: the facts the MLU launch rules judge.

Three sources, one record (`Launch` + `Trace`):
- the launch itself: `JITFunction.run` / `InterpretedFunction.run` are wrapped while a watcher is
  installed, which shows the grid (a callable grid is resolved with the launch's arguments), num_warps,
  the constexpr values and the dtypes of tensor arguments;
- the operations the kernel performed: on the cpu interpreter, `TritonSemantic` methods (load, full,
  dot, cast, atomic_*) are wrapped and report tile shapes and dtypes at run time; on a compiled
  backend the kernel's TTIR (`CompiledKernel.asm["ttir"]`) is parsed for tt.load, loop-carried
  tensors (accumulators), tt.dot, tt.atomic_* and f64 types;
- the kernel source (AST), with the jit functions it calls or receives as constexpr arguments, for
  mentions of tl.float64 / tl.double (which the TTIR optimiser may fold away).

Only the outermost semantic call of a kernel statement is recorded (Triton's semantic layer calls
itself, e.g. a load broadcasting its `other`), so each tile is counted at the statement that made it.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import triton

_TRITON_DIR = os.path.dirname(os.path.abspath(triton.__file__))
TRITON_DEFAULT_NUM_WARPS = 4  # what a launch without num_warps gets from Triton's launcher options

TL_NAMES = {
    "f16": "fp16",
    "bf16": "bf16",
    "f32": "fp32",
    "f64": "fp64",
    "i1": "int1",
    "i8": "int8",
    "i16": "int16",
    "i32": "int32",
    "i64": "int64",
    "f8E4M3FN": "fp8e4nv",
    "f8E5M2": "fp8e5",
    "f8E4M3FNUZ": "fp8e4b8",
    "f8E5M2FNUZ": "fp8e5b16",
    "f8E4M3B11FNUZ": "fp8e4b15",
}
ELEMENT_BYTES = {
    "int1": 1,
    "int8": 1,
    "uint8": 1,
    "int16": 2,
    "uint16": 2,
    "fp16": 2,
    "bf16": 2,
    "int32": 4,
    "uint32": 4,
    "fp32": 4,
    "int64": 8,
    "uint64": 8,
    "fp64": 8,
}


def element_bytes(dtype: str) -> int:
    return ELEMENT_BYTES.get(dtype, 1 if dtype.startswith("fp8") else 4)


@dataclass(frozen=True)
class Tile:
    """A block of values a kernel holds on chip: loaded from memory, or an accumulator it created."""

    kind: str  # "load" or "accumulator"
    shape: tuple[int, ...]
    dtype: str  # Triton dtype name: fp32, bf16, int64, ...
    site: str  # file:line of the kernel statement

    @property
    def nbytes(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n * element_bytes(self.dtype)


@dataclass(frozen=True)
class Dot:
    lhs: str
    rhs: str
    out: str
    precision: str | None  # as the kernel asked for it (None: the backend's default)
    site: str


@dataclass(frozen=True)
class Atomic:
    op: str
    dtype: str  # element dtype of the pointer
    site: str


@dataclass
class Trace:
    """Operations one kernel launch performed (or, compiled, that its TTIR holds)."""

    tiles: dict[tuple[str, str], Tile] = field(default_factory=dict)  # (kind, site) -> largest tile there
    dots: set[Dot] = field(default_factory=set)
    atomics: set[Atomic] = field(default_factory=set)
    float64: set[tuple[str, str]] = field(default_factory=set)  # (what, site)

    def add_tile(self, tile: Tile) -> None:
        key = (tile.kind, tile.site)
        if key not in self.tiles or tile.nbytes > self.tiles[key].nbytes:
            self.tiles[key] = tile
        if tile.dtype == "fp64":
            self.float64.add((f"{tile.kind} tile of fp64", tile.site))

    def nram_estimate(self) -> int:
        return sum(t.nbytes for t in self.tiles.values())


@dataclass(frozen=True)
class Launch:
    """One kernel launch as the launcher saw it."""

    fn: Callable  # the kernel's Python function
    grid: tuple[int, int, int]
    num_warps: int
    num_warps_given: bool
    constexprs: dict[str, Any]
    tensor_dtypes: dict[str, torch.dtype]

    @property
    def kernel(self) -> str:
        """module.function, without the package prefix: ops.softmax._softmax_kernel,
        ops.mlu.softmax._softmax_kernel"""
        return f"{self.fn.__module__.removeprefix('workbench.')}.{self.fn.__name__}"


# ---- sites -----------------------------------------------------------------------------------------


def short_path(path: str) -> str:
    parts = os.path.normpath(path).split(os.sep)
    return "/".join(parts[-2:])


def _caller_site() -> str:
    """file:line of the innermost frame outside Triton and this module: the kernel statement."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        if not (name == __file__ or name.startswith(_TRITON_DIR)):
            return f"{short_path(name)}:{frame.f_lineno}"
        frame = frame.f_back
    return ""


# ---- launch description ------------------------------------------------------------------------------


def _is_constexpr(param: inspect.Parameter) -> bool:
    ann = param.annotation
    if isinstance(ann, str):
        return ann.split(".")[-1] == "constexpr"
    return getattr(ann, "__name__", "") == "constexpr"


_signatures: dict[Callable, Any] = {}


def describe(kernel, args: tuple, kwargs: dict, grid) -> Launch:
    """Bind a launch's arguments to the kernel's parameters and resolve its grid."""
    fn = kernel.fn
    if fn not in _signatures:
        _signatures[fn] = inspect.signature(fn).parameters
    params = _signatures[fn]
    bound: dict[str, Any] = {}
    for name, value in zip(params, args):
        bound[name] = value
    for name, param in params.items():
        if name not in bound:
            if name in kwargs:
                bound[name] = kwargs[name]
            elif param.default is not inspect.Parameter.empty:
                bound[name] = param.default
    if callable(grid):
        grid = grid({**kwargs, **bound})
    grid = tuple(int(g) for g in grid) + (1,) * (3 - len(grid))
    constexprs = {n: bound[n] for n, p in params.items() if _is_constexpr(p) and n in bound}
    tensors = {n: v.dtype for n, v in bound.items() if isinstance(v, torch.Tensor)}
    given = kwargs.get("num_warps")
    return Launch(
        fn=fn,
        grid=grid,
        num_warps=int(given) if given is not None else TRITON_DEFAULT_NUM_WARPS,
        num_warps_given=given is not None,
        constexprs=constexprs,
        tensor_dtypes=tensors,
    )


# ---- interpreter: semantic hooks ---------------------------------------------------------------------

_recording: list[Trace] = []  # the trace of the launch running now (interpreter), innermost last
_depth = 0


def _tl_name(dtype) -> str:
    return getattr(dtype, "name", str(dtype))


def _shape(value) -> tuple[int, ...] | None:
    ty = getattr(value, "type", None)
    if ty is None or not ty.is_block():
        return None
    return tuple(int(getattr(s, "value", s)) for s in ty.shape)


def _observe(name: str, arguments: dict, result) -> None:
    trace = _recording[-1]
    if name == "load":
        shape = _shape(result)
        if shape:
            trace.add_tile(Tile("load", shape, _tl_name(result.dtype), _caller_site()))
    elif name == "full":
        shape = _shape(result)
        if shape:
            trace.add_tile(Tile("accumulator", shape, _tl_name(result.dtype), _caller_site()))
    elif name == "dot":
        site = _caller_site()
        lhs, rhs = arguments["lhs"], arguments["rhs"]
        trace.dots.add(
            Dot(
                _tl_name(lhs.dtype),
                _tl_name(rhs.dtype),
                _tl_name(result.dtype),
                arguments.get("input_precision"),
                site,
            )
        )
        if arguments.get("acc") is None and _shape(result):  # a fresh accumulator made by the dot itself
            trace.add_tile(Tile("accumulator", _shape(result), _tl_name(result.dtype), site))
    elif name == "cast":
        if _tl_name(arguments["dst_ty"]) == "fp64":
            trace.float64.add(("cast to fp64", _caller_site()))
    elif name.startswith("atomic_"):
        ptr_ty = arguments["ptr"].type
        scalar = ptr_ty.scalar if hasattr(ptr_ty, "scalar") else ptr_ty
        trace.atomics.add(Atomic(name, _tl_name(scalar.element_ty), _caller_site()))


def _semantic_hook(name: str, original: Callable) -> Callable:
    signature = inspect.signature(original)

    def hooked(self, *args, **kwargs):
        global _depth
        if not _recording or _depth:
            return original(self, *args, **kwargs)
        _depth += 1
        try:
            result = original(self, *args, **kwargs)
        finally:
            _depth -= 1
        _observe(name, signature.bind(self, *args, **kwargs).arguments, result)
        return result

    hooked.__wrapped__ = original
    return hooked


# ---- compiled: TTIR ----------------------------------------------------------------------------------

_TENSOR = re.compile(r"tensor<((?:\d+x)+)([^<>]*(?:<[^<>]*>)?)>")
_PTR_ELEMENT = re.compile(r"!tt\.ptr<(?:tensor<(?:\d+x)+)?(\w+)>?>")
_LOC_REF = re.compile(r"loc\((#loc\d*)\)\s*$")
_LOC_DEF = re.compile(r"^(#loc\d*) = loc\((.*)\)\s*$")


def _tensor_types(text: str) -> list[tuple[tuple[int, ...], str]]:
    """(shape, element) of each tensor<...> type in `text`; pointer elements come back as 'ptr'."""
    out = []
    for dims, element in _TENSOR.findall(text):
        shape = tuple(int(d) for d in dims.rstrip("x").split("x"))
        out.append((shape, "ptr" if element.startswith("!tt.ptr") else TL_NAMES.get(element, element)))
    return out


def _locations(ttir: str) -> dict[str, str]:
    raw = {}
    for line in ttir.splitlines():
        m = _LOC_DEF.match(line.strip())
        if m:
            raw[m.group(1)] = m.group(2)

    def resolve(ref: str, depth: int = 0) -> str:
        body = raw.get(ref, "")
        if depth > 20 or not body:
            return ""
        m = re.match(r'^"([^"]+)":(\d+):\d+$', body)
        if m:
            return f"{short_path(m.group(1))}:{m.group(2)}"
        m = re.match(r'^"[^"]*"\((#loc\d*)\)$', body) or re.match(r"^callsite\((#loc\d*) at", body)
        return resolve(m.group(1), depth + 1) if m else ""

    return {ref: resolve(ref) for ref in raw}


def trace_ttir(ttir: str) -> Trace:
    """The facts the rules need from a compiled kernel's TTIR text."""
    trace = Trace()
    locs = _locations(ttir)
    depth = 0
    open_loops: list[tuple[int, list[tuple[tuple[int, ...], str]]]] = []  # (depth, carried tiles) per scf.for
    for line in ttir.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#loc"):
            continue
        m = _LOC_REF.search(stripped)
        site = locs.get(m.group(1), "") if m else ""
        body = stripped[: m.start()] if m else stripped
        before, depth = depth, depth + body.count("{") - body.count("}")
        # A loop's location is on its closing brace: its carried tensors (accumulators) get it there.
        if open_loops and body.startswith("}") and depth == open_loops[-1][0]:
            for shape, element in open_loops.pop()[1]:
                trace.add_tile(Tile("accumulator", shape, element, site))
        if " tt.load " in body:
            types = body.rsplit(" : ", 1)[-1]
            block_ptr = re.search(r"!tt\.ptr<tensor<((?:\d+x)+)(\w+)>>", types)
            if block_ptr:
                shape = tuple(int(d) for d in block_ptr.group(1).rstrip("x").split("x"))
                element = block_ptr.group(2)
                trace.add_tile(Tile("load", shape, TL_NAMES.get(element, element), site))
            else:
                for shape, _ in _tensor_types(types)[:1]:
                    element = _PTR_ELEMENT.search(types).group(1)
                    trace.add_tile(Tile("load", shape, TL_NAMES.get(element, element), site))
        elif "scf.for" in body:
            carried = _tensor_types(body.rsplit("->", 1)[-1]) if "iter_args" in body and "->" in body else []
            open_loops.append((before, [(shape, element) for shape, element in carried if element != "ptr"]))
        elif " tt.dot " in body:
            types = _tensor_types(body.rsplit(" : ", 1)[-1])
            precision = re.search(r"inputPrecision = (\w+)", body)
            if len(types) == 3:
                trace.dots.add(
                    Dot(
                        types[0][1],
                        types[1][1],
                        types[2][1],
                        precision.group(1) if precision else "ieee",
                        site,
                    )
                )
        elif "tt.atomic_" in body:
            op = re.search(r"tt\.(atomic_\w+)(?:\s+(\w+),)?", body)
            element = _PTR_ELEMENT.search(body.rsplit(" : ", 1)[-1])
            if op and element:
                name = f"atomic_{op.group(2)}" if op.group(1) == "atomic_rmw" and op.group(2) else op.group(1)
                trace.atomics.add(Atomic(name, TL_NAMES.get(element.group(1), element.group(1)), site))
        if re.search(r"(?:\b|\dx)f64\b", body):
            trace.float64.add(("f64 value in the compiled kernel", site))
    return trace


_compiled: dict[object, Trace | None] = {}


def compiled_trace(kernel_result) -> Trace | None:
    """Trace of a compiled kernel (the object JITFunction.run returns), or None without TTIR.
    Parsed once per compiled kernel (keyed by its hash): launches reuse it."""
    if kernel_result is None:
        return None
    if hasattr(kernel_result, "result"):  # an async compile handle (triton 3.6)
        kernel_result = kernel_result.result()
    key = getattr(kernel_result, "hash", None) or id(kernel_result)
    if key not in _compiled:
        try:
            ttir = kernel_result.asm["ttir"]
        except (AttributeError, KeyError, TypeError):
            _compiled[key] = None
        else:
            _compiled[key] = trace_ttir(ttir if isinstance(ttir, str) else ttir.decode())
    return _compiled[key]


# ---- source: float64 mentions --------------------------------------------------------------------------

_FLOAT64_NAMES = {"float64", "double", "fp64"}


def _jit_function(value) -> Callable | None:
    """The Python function of a Triton jit function (compiled or interpreted), else None."""
    fn = getattr(value, "fn", None)
    jit = type(value).__name__ in ("JITFunction", "InterpretedFunction")
    if jit and fn is not None and inspect.isfunction(fn):
        return fn
    return None


def source_float64(fn: Callable, extra: tuple = (), _seen: set | None = None) -> set[tuple[str, str]]:
    """Mentions of tl.float64 / tl.double in `fn`'s source and in the jit functions it calls or is
    passed (`extra`, e.g. the FN constexpr of an elementwise launcher)."""
    seen = _seen if _seen is not None else set()
    if fn in seen:
        return set()
    seen.add(fn)
    try:
        lines, first = inspect.getsourcelines(fn)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError):
        return set()
    path = short_path(inspect.getsourcefile(fn) or "")
    found = set()
    callees = list(extra)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in _FLOAT64_NAMES:
            found.add((f"source mentions {ast.unparse(node)}", f"{path}:{first + node.lineno - 1}"))
        elif isinstance(node, ast.Call):
            target = None
            if isinstance(node.func, ast.Name):
                target = fn.__globals__.get(node.func.id)
            elif isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
                base = fn.__globals__.get(node.func.value.id)
                target = getattr(base, node.func.attr, None) if inspect.ismodule(base) else None
            callees.append(target)
    for value in callees:
        callee = _jit_function(value)
        if callee is not None:
            found |= source_float64(callee, (), seen)
    return found
