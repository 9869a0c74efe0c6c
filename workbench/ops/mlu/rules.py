"""The MLU launch-rules profile: run kernels on cpu (interpreter) or cuda while checking every launch
against the rules a Triton kernel must follow on a Cambricon MLU, and report each violation.

Rules (docs/mlu.md), for a named device's figures (backends/mlu_devices.py):
- grid: programs x num_warps <= the core count (the MLU launcher multiplies gridX by num_warps; a
  launch without num_warps is counted with Triton's default, 4);
- num_warps: 1 or 4;
- nram: estimated on-chip memory of one program <= the device's NRAM;
- float64: no float64 tensor arguments, fp64 tiles or casts, nor tl.float64 in the kernel source;
- dot_dtype: tl.dot operands of one dtype among int8/int16/fp16/bf16/fp32 (fp8 only where the device
  has it), no int32 accumulator for integer operands, tf32 input precision only where the device has it;
- atomic_dtype: no atomics on int64, uint64 or int1.

The NRAM estimate, and its assumptions: a program holds every tile it loads (one per tl.load statement,
at the largest shape that statement loaded) and every accumulator it creates (tl.zeros / tl.full, or
tl.dot without `acc`, on the interpreter; loop-carried tensors in the TTIR of a compiled kernel), all
live at once, each at its own element size. Not counted: fp32 copies made by casts, masks, index and
pointer tiles, software-pipelining buffers (num_stages), and whatever the MLU compiler adds. It is a
lower bound of what the compiler needs for those tiles, and an upper bound where tiles are not live
together (e.g. the passes of a multi-pass row kernel) — which is why mlu-style kernels fill only half
of NRAM by it.

Usage:
    rules = LaunchRules.for_device("mlu590")          # or "mlu" (default device), cores=..., nram_bytes=...
    with rules:
        workbench.ops.softmax(x)
    rules.violations()                                 # DataFrame: kernel, rule, detail, site, count
    df = workbench.profiling.check(ops, cases, dtypes, variant="mlu", rules=rules)  # + a violations column
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
import torch

from workbench import backends
from workbench.backends import mlu_devices
from workbench.backends.mlu_devices import MluDevice

from .. import _launch as _fast_launch
from . import _kernel_trace as kt

RULES = {
    "grid": "programs x num_warps must not exceed the core count",
    "num_warps": "num_warps must be 1 or 4",
    "nram": "estimated on-chip memory per program must fit NRAM",
    "float64": "no float64 in kernels",
    "dot_dtype": "tl.dot operand and accumulator dtypes the MLU supports",
    "atomic_dtype": "no int64 / uint64 / int1 atomics",
}
DOT_DTYPES = ("int8", "int16", "fp16", "bf16", "fp32")
BAD_ATOMIC_DTYPES = ("int64", "uint64", "int1")
CONTEXT = ("op", "variant", "case", "dtype")


@dataclass(frozen=True)
class Violation:
    op: str
    variant: str
    case: str
    dtype: str
    kernel: str
    rule: str
    detail: str
    site: str


def dot_problems(dot: kt.Dot, dev: MluDevice) -> list[str]:
    """What is wrong with one tl.dot on `dev` (empty when it is fine)."""
    problems = []
    if dot.lhs != dot.rhs:
        problems.append(f"operands differ: {dot.lhs} x {dot.rhs}")
    for dtype in sorted({dot.lhs, dot.rhs}):
        if dtype.startswith("fp8"):
            if not dev.fp8:
                problems.append(f"{dtype} operands: {dev.name} has no fp8 dot")
        elif dtype not in DOT_DTYPES:
            problems.append(f"{dtype} operands: expected one of {', '.join(DOT_DTYPES)}")
    if dot.lhs in ("int8", "int16") and dot.out in ("int32", "int64"):
        problems.append(
            f"{dot.lhs} dot accumulates in {dot.out}: the MLU gives fp16/fp32 results (set out_dtype)"
        )
    if dot.lhs == "fp32" and dot.precision in ("tf32", "tf32x3") and not dev.tf32:
        problems.append(f"input_precision={dot.precision}: {dev.name} has no tf32 (use 'ieee')")
    return problems


# ---- interception (installed while at least one LaunchRules is entered) -------------------------------

_sessions: list[LaunchRules] = []
_patches: list[tuple[object, str, object]] = []
_float64_cache: dict[tuple, frozenset] = {}


def _run_hook(original):
    def run(self, *args, grid, warmup, **kwargs):
        if warmup or not _sessions:
            return original(self, *args, grid=grid, warmup=warmup, **kwargs)
        launch = kt.describe(self, args, kwargs, grid)
        interpreted = type(self).__name__ == "InterpretedFunction"
        trace = kt.Trace()
        if interpreted:
            kt._recording.append(trace)
        try:
            result = original(self, *args, grid=grid, warmup=warmup, **kwargs)
        finally:
            if interpreted:
                kt._recording.pop()
        if not interpreted:
            trace = kt.compiled_trace(result)
        _sessions[-1].observe(launch, trace)
        return result

    run.__wrapped__ = original
    return run


def _install() -> None:
    from triton.language.semantic import TritonSemantic
    from triton.runtime.jit import JITFunction

    targets = [(JITFunction, "run", _run_hook(JITFunction.run))]
    try:
        from triton.runtime.interpreter import InterpretedFunction

        targets.append((InterpretedFunction, "run", _run_hook(InterpretedFunction.run)))
    except ImportError:  # a Triton without the interpreter
        pass
    if backends.active().interpreted:  # compiled kernels are read from their TTIR instead
        atomics = [n for n in vars(TritonSemantic) if n.startswith("atomic_")]
        for name in ["load", "full", "dot", "cast", *atomics]:
            original = vars(TritonSemantic)[name]
            targets.append((TritonSemantic, name, kt._semantic_hook(name, original)))
    for owner, name, replacement in targets:
        _patches.append((owner, name, vars(owner)[name]))
        setattr(owner, name, replacement)
    _fast_launch.watchers += 1  # the launch cache would skip JITFunction.run: take Triton's path


def _uninstall() -> None:
    _fast_launch.watchers -= 1
    while _patches:
        owner, name, original = _patches.pop()
        setattr(owner, name, original)


# ---- the profile ---------------------------------------------------------------------------------------


class LaunchRules:
    """MLU launch rules for one device's figures; a context manager that watches kernel launches.

    While entered, every Triton launch in the process is checked, and mlu-style kernels size their
    launches for this device (mlu_devices.targeting).
    """

    def __init__(self, device: MluDevice):
        self.device = device
        self._violations: Counter[Violation] = Counter()
        self._launches: Counter[tuple] = Counter()
        self._context: dict[str, str] = {}
        self._found: list[list[Violation]] = []
        self._depth = 0
        self._targeting: contextlib.AbstractContextManager | None = None

    @classmethod
    def for_device(
        cls, name: str = "mlu", cores: int | None = None, nram_bytes: int | None = None
    ) -> LaunchRules:
        """Rules for a named device ("mlu": the default one, $WORKBENCH_MLU_DEVICE or MLU590; "mlu370",
        "mlu590"), with the core count and NRAM optionally overridden."""
        dev = mlu_devices.default_device() if name.lower() == "mlu" else mlu_devices.device(name)
        return cls(dev.with_overrides(cores=cores, nram_bytes=nram_bytes))

    def __enter__(self) -> LaunchRules:
        if self._depth == 0:
            if not _sessions:
                _install()
            _sessions.append(self)
            self._targeting = mlu_devices.targeting(self.device)
            self._targeting.__enter__()
        self._depth += 1
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._targeting.__exit__(*exc)
            _sessions.remove(self)
            if not _sessions:
                _uninstall()

    @contextlib.contextmanager
    def scope(self, **context: str) -> Iterator[list[Violation]]:
        """Label launches inside with op / variant / case / dtype; yields the list of distinct violations
        first recorded inside (filled as they happen)."""
        unknown = set(context) - set(CONTEXT)
        if unknown:
            raise ValueError(f"scope: expected labels among {CONTEXT}, got {sorted(unknown)}")
        previous, self._context = self._context, {**self._context, **context}
        found: list[Violation] = []
        self._found.append(found)
        try:
            with self:
                yield found
        finally:
            self._found.remove(found)
            self._context = previous

    # ---- judging ----

    def judge(self, launch: kt.Launch, trace: kt.Trace | None) -> list[tuple[str, str, str]]:
        """(rule, detail, site) for every rule this launch breaks on this device."""
        dev = self.device
        out = []
        programs = launch.grid[0] * launch.grid[1] * launch.grid[2]
        tasks = programs * launch.num_warps
        if tasks > dev.cores:
            how = "" if launch.num_warps_given else " (Triton's default)"
            detail = f"{programs} programs x num_warps {launch.num_warps}{how} = {tasks} > {dev.cores} cores"
            out.append(("grid", detail, ""))
        if launch.num_warps not in self.device.policy().num_warps:
            out.append(("num_warps", f"num_warps={launch.num_warps}: legal values are 1 and 4", ""))
        for name, dtype in launch.tensor_dtypes.items():
            if dtype == torch.float64:
                out.append(("float64", f"argument {name} is a float64 tensor", ""))
        extra = tuple(v for v in launch.constexprs.values() if kt._jit_function(v) is not None)
        key = (launch.fn, tuple(id(v) for v in extra))
        if key not in _float64_cache:
            _float64_cache[key] = frozenset(kt.source_float64(launch.fn, extra))
        float64 = set(_float64_cache[key])
        if trace is not None:
            float64 |= trace.float64
            estimate = trace.nram_estimate()
            if estimate > dev.nram_bytes:
                tiles = sorted(trace.tiles.values(), key=lambda t: -t.nbytes)
                listed = ", ".join(
                    f"{t.kind} {'x'.join(map(str, t.shape))} {t.dtype} @{t.site}" for t in tiles[:3]
                )
                more = f" and {len(tiles) - 3} more" if len(tiles) > 3 else ""
                detail = (
                    f"estimated {estimate / 1024:.0f} KiB per program > "
                    f"{dev.nram_bytes // 1024} KiB NRAM: {listed}{more}"
                )
                out.append(("nram", detail, ""))
            for dot in sorted(trace.dots, key=str):
                out += [("dot_dtype", problem, dot.site) for problem in dot_problems(dot, dev)]
            for atomic in sorted(trace.atomics, key=str):
                if atomic.dtype in BAD_ATOMIC_DTYPES:
                    out.append(("atomic_dtype", f"tl.{atomic.op} on {atomic.dtype}", atomic.site))
        out += [("float64", what, site) for what, site in sorted(float64)]
        return out

    def observe(self, launch: kt.Launch, trace: kt.Trace | None) -> None:
        context = tuple(self._context.get(k, "") for k in CONTEXT)
        estimate = trace.nram_estimate() if trace is not None else None
        constexprs = ", ".join(f"{k}={getattr(v, '__name__', v)}" for k, v in launch.constexprs.items())
        self._launches[context + (launch.kernel, launch.grid, launch.num_warps, estimate, constexprs)] += 1
        for rule, detail, site in self.judge(launch, trace):
            v = Violation(*context, kernel=launch.kernel, rule=rule, detail=detail, site=site)
            if v not in self._violations:
                for found in self._found:
                    found.append(v)
            self._violations[v] += 1

    # ---- reports ----

    @property
    def clean(self) -> bool:
        return not self._violations

    def violations(self) -> pd.DataFrame:
        """One row per distinct violation: context, kernel, rule, detail, site, launches (how often)."""
        rows = [{**vars(v), "launches": n} for v, n in self._violations.items()]
        columns = list(CONTEXT) + ["kernel", "rule", "detail", "site", "launches"]
        return pd.DataFrame(rows, columns=columns)

    def launches(self) -> pd.DataFrame:
        """One row per distinct launch shape: grid, num_warps, tasks, NRAM estimate, constexprs, count."""
        rows = []
        for (*context, kernel, grid, warps, estimate, constexprs), n in self._launches.items():
            rows.append(
                {
                    **dict(zip(CONTEXT, context)),
                    "kernel": kernel,
                    "grid": grid,
                    "num_warps": warps,
                    "tasks": grid[0] * grid[1] * grid[2] * warps,
                    "nram_kib": None if estimate is None else round(estimate / 1024, 1),
                    "constexprs": constexprs,
                    "launches": n,
                }
            )
        columns = [*CONTEXT, "kernel", "grid", "num_warps", "tasks", "nram_kib", "constexprs", "launches"]
        return pd.DataFrame(rows, columns=columns)

    def summary(self) -> str:
        v = self.violations()
        kernels = v["kernel"].nunique() if len(v) else 0
        return (
            f"MLU launch rules for {self.device.name} ({self.device.cores} cores, "
            f"{self.device.nram_bytes // 1024} KiB NRAM): "
            f"{sum(self._launches.values())} launches checked, "
            f"{len(v)} violations in {kernels} kernels"
        )
