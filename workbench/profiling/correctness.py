"""Correctness: each op against its native reference run on float64 inputs (docs/correctness.md).

One row per (op, case, dtype): relative error ‖out − ref‖/‖ref‖, max abs error, an elementwise
bound `|out − ref| <= tol * (|ref| + rms(ref))`, NaN/Inf agreement, and whether the output dtype and
shape match what the native op gives on the same inputs. Outputs are poisoned with NaN before each
run, inputs are fresh random draws, and the seed is in the row so a failure can be replayed.
`check(backward=True)` adds a row per (op, case, dtype) of every op with a backward (`direction`
"backward"): each input's gradient against float64 autograd (`check_backward_case`).
"""

from __future__ import annotations

import contextlib
import math
import random
import traceback
from dataclasses import dataclass
from typing import Iterable

import pandas as pd
import torch
from tqdm.auto import tqdm

from workbench import backends
from workbench.ops import spec as opspec
from workbench.ops._common import poisoned_outputs
from workbench.ops._library import trainable
from workbench.ops.mlu.rules import LaunchRules

DTYPE_NAMES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
GRAD_TOL_FACTOR = 4  # a backward sums over rows or classes: a few times the forward's relative tolerance
NATIVE_GRAD_FACTOR = 4  # and, where that is exceeded, this many times native's own gradient error on top


def dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in DTYPE_NAMES.items()}.get(dtype, str(dtype).replace("torch.", ""))


def parse_dtypes(names: Iterable[str | torch.dtype] | None) -> list[torch.dtype]:
    if names is None:
        return list(DTYPE_NAMES.values())
    out = []
    for n in names:
        if isinstance(n, torch.dtype):
            out.append(n)
        elif n in DTYPE_NAMES:
            out.append(DTYPE_NAMES[n])
        else:
            raise ValueError(f"dtype: expected one of {list(DTYPE_NAMES)}, got {n!r}")
    return out


def _upcast(value, dtype: torch.dtype, device: torch.device):
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.to(device=device, dtype=dtype)
    if isinstance(value, (tuple, list)):
        return type(value)(_upcast(v, dtype, device) for v in value)
    if isinstance(value, dict):
        return {k: _upcast(v, dtype, device) for k, v in value.items()}
    return value


def compare_outputs(out, ref, tol: float, dim: int = -1) -> dict:
    """Error metrics of `out` against the high-precision `ref` (same shape).

    Floating outputs: relative and elementwise error within `tol`, NaN/Inf in the same places.
    Integer and bool outputs (argmax, indices): exact equality. Tuples (rope's (q, k), topk's
    (values, indices)): element by element, every element must pass; for sorted (values, indices)
    results (topk, sort) the indices of tied values are not unique, so only those of distinct values
    are compared, `dim` being the dim they are sorted along.
    """
    if isinstance(ref, (tuple, list)):
        return _compare_tuple(out, ref, tol, dim)
    if not (ref.is_floating_point() or ref.is_complex()):
        return _compare_exact(out, ref)
    out = out.to(device=ref.device, dtype=ref.dtype)
    nan_ok = torch.equal(torch.isnan(out), torch.isnan(ref))
    inf_ok = (
        torch.equal(torch.isinf(out), torch.isinf(ref))
        and torch.equal(out[torch.isinf(out)], ref[torch.isinf(ref)])
        if nan_ok
        else False
    )
    finite = torch.isfinite(ref) & torch.isfinite(out)
    diff = (out - ref)[finite].abs()
    ref_f = ref[finite]
    ref_norm = float(torch.linalg.vector_norm(ref_f)) if ref_f.numel() else 0.0
    diff_norm = float(torch.linalg.vector_norm(diff)) if diff.numel() else 0.0
    rel_err = diff_norm / ref_norm if ref_norm > 0 else diff_norm
    rms = ref_norm / ref_f.numel() ** 0.5 if ref_f.numel() else 0.0
    within = bool((diff <= tol * (ref_f.abs() + rms)).all()) if diff.numel() else True
    return {
        "rel_err": rel_err,
        "max_abs_err": float(diff.max()) if diff.numel() else 0.0,
        "nonfinite_match": bool(nan_ok and inf_ok),
        "elementwise_ok": within,
        "passed": bool(nan_ok and inf_ok and within and rel_err <= tol),
    }


def _compare_exact(out: torch.Tensor, ref: torch.Tensor, where: torch.Tensor | None = None) -> dict:
    """Exact equality (at `where` only, if given); rel_err is the fraction of elements that differ."""
    out = out.to(ref.device)
    if out.dtype != ref.dtype:  # a wrong dtype is reported by dtype_match; compare the values anyway
        out = out.to(ref.dtype)
    differ = out != ref
    if where is not None:
        differ &= where
    n_bad = int(differ.sum())
    gap = (out[differ].double() - ref[differ].double()).abs()
    return {
        "rel_err": n_bad / max(1, ref.numel()),
        "max_abs_err": float(gap.max()) if gap.numel() else 0.0,
        "nonfinite_match": True,
        "elementwise_ok": n_bad == 0,
        "passed": n_bad == 0,
    }


def _distinct_sorted(values: torch.Tensor, dim: int) -> torch.Tensor:
    """Positions of sorted dim `dim` whose value is unique there and differs from the last kept value.

    In topk/sort results only these positions have one right index: equal values may come in either
    order, and a value equal to the last one kept may tie with an element that was left out.
    """
    if values.dim() == 0 or values.shape[dim] == 0:
        return torch.ones_like(values, dtype=torch.bool)
    v = values.movedim(dim, -1)

    def same(a, b):
        return (a == b) | (torch.isnan(a) & torch.isnan(b))

    tied = torch.zeros_like(v, dtype=torch.bool)
    tied[..., 1:] |= same(v[..., 1:], v[..., :-1])
    tied[..., :-1] |= same(v[..., :-1], v[..., 1:])
    tied |= same(v, v[..., -1:])
    return (~tied).movedim(-1, dim)


def _compare_tuple(out, ref, tol: float, dim: int) -> dict:
    if not isinstance(out, (tuple, list)) or len(out) != len(ref):
        got = f"{len(out)} outputs" if isinstance(out, (tuple, list)) else type(out).__name__
        raise ValueError(f"expected {len(ref)} outputs like the reference, got {got}")
    sorted_pair = type(ref).__name__ in ("topk", "sort") and hasattr(ref, "indices")
    parts = []
    for i, (o, r) in enumerate(zip(out, ref)):
        if sorted_pair and i == 1:
            parts.append(_compare_exact(o, r, where=_distinct_sorted(ref.values.to(r.device), dim)))
        else:
            parts.append(compare_outputs(o, r, tol, dim))
    return {
        "rel_err": max((p["rel_err"] for p in parts), default=0.0),
        "max_abs_err": max((p["max_abs_err"] for p in parts), default=0.0),
        **{k: all(p[k] for p in parts) for k in ("nonfinite_match", "elementwise_ok", "passed")},
    }


def same_kind(out, native) -> bool:
    """Same type, dtype and shape as the native op's result (tuples element by element)."""
    if isinstance(native, (tuple, list)):
        return (
            type(out) is type(native)
            and len(out) == len(native)
            and all(same_kind(o, n) for o, n in zip(out, native))
        )
    return isinstance(out, torch.Tensor) and out.dtype == native.dtype and out.shape == native.shape


def _tensors(args):
    """The tensors among `args`, including those inside lists and tuples (cat's inputs)."""
    for a in args:
        if isinstance(a, torch.Tensor):
            yield a
        elif isinstance(a, (list, tuple)):
            yield from _tensors(a)


def shape_label(args) -> str:
    return " ".join("x".join(map(str, t.shape)) or "scalar" for t in _tensors(args))


def verify(spec: opspec.OpSpec, fn, case: opspec.Case, dtype: torch.dtype, args, kwargs) -> dict:
    """Run `fn` once on (args, kwargs) with poisoned outputs and compare it with the float64 reference."""
    with poisoned_outputs():
        out = fn(*args, **kwargs)
    return judge(spec, out, case, dtype, args, kwargs)


def judge(spec: opspec.OpSpec, out, case: opspec.Case, dtype: torch.dtype, args, kwargs) -> dict:
    """The verdict on `out`, an output of some implementation on (args, kwargs): compared with the
    reference run on float64 copies of the inputs, and with the native op's result type, dtype and shape.

    Used both after `verify` runs an implementation in this process and on outputs a worker process
    returned (workbench.porting), so that code under test never computes its own verdict."""
    native = spec.reference(*args, **kwargs)
    dtype_match = same_kind(out, native)
    del native
    ref = reference(spec, case, args, kwargs)
    # `dim` (keyword) is the dim sorted (values, indices) results are sorted along
    metrics = compare_outputs(out, ref, spec.tolerance[dtype], dim=kwargs.get("dim", -1))
    if not metrics["passed"] and not case.big:
        # Does the native op meet the same bound on these inputs? Tells a kernel bug from a strict tolerance.
        del out
        native = compare_outputs(
            spec.reference(*args, **kwargs), ref, spec.tolerance[dtype], dim=kwargs.get("dim", -1)
        )
        metrics.update(native_rel_err=native["rel_err"], native_passed=native["passed"])
    return {**metrics, "dtype_match": dtype_match, "passed": metrics["passed"] and dtype_match}


def reference(spec: opspec.OpSpec, case: opspec.Case, args, kwargs):
    """The op's reference on float64 copies of the inputs (float32 for cases past 2**31 elements)."""
    ref_dtype = torch.float32 if case.big else torch.float64
    on_inputs = backends.active().capabilities.fp64 or case.big
    ref_device = next(_tensors(args)).device if on_inputs else torch.device("cpu")
    return spec.reference(*_upcast(args, ref_dtype, ref_device), **_upcast(kwargs, ref_dtype, ref_device))


def make_inputs(case: opspec.Case, dtype: torch.dtype, seed: int):
    device = backends.active().device()
    return case.make(dtype, device, torch.Generator(device=device).manual_seed(seed))


def check_case(
    spec: opspec.OpSpec,
    case: opspec.Case,
    dtype: torch.dtype,
    seed: int,
    variant: str | None = None,
    rules: LaunchRules | None = None,
) -> dict:
    """Run one case once; never raises (errors land in the row).

    variant: run this implementation ("generic", "mlu", "generic:merge", ...) instead of the backend's own.
    rules: check the launches against these MLU launch rules; the row counts the distinct violations.
    """
    backend = backends.active()
    name = variant or spec.variant_name(backend.name)
    row = {
        "op": spec.name,
        "variant": name,
        "backend": backend.name,
        "case": case.name,
        "dtype": dtype_name(dtype),
        "direction": "forward",
        "seed": seed,
        "tol": spec.tolerance[dtype],
    }
    scope = (
        rules.scope(op=spec.name, variant=name, case=case.name, dtype=row["dtype"])
        if rules
        else contextlib.nullcontext(None)
    )
    with scope as found:
        try:
            fn = spec.variant(variant) if variant else spec.implementation(backend.name)
            args, kwargs = make_inputs(case, dtype, seed)
            row["shape"] = shape_label(args)
            row.update(verify(spec, fn, case, dtype, args, kwargs))
            row["error"] = ""
        except Exception as e:  # the row reports it; the run goes on
            row.update(passed=False, error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
    if found is not None:
        row["violations"] = len(found)
    return row


def check_backward_case(spec: opspec.OpSpec, case: opspec.Case, dtype: torch.dtype, seed: int) -> dict:
    """The backward of one case through the op's custom operator (what `workbench.ops.<op>`, `use_ops` and
    the compile backend train with); never raises (errors land in the row). See `backward_grads` and
    `judge_grads`."""
    row = backward_row(spec, case, dtype, seed)
    try:
        inputs = backward_inputs(spec, case, dtype, seed)
        if isinstance(inputs, str):
            return {**row, "skipped": inputs, "passed": False, "error": ""}
        grads, _ = backward_grads(trainable(spec.name), *inputs)
        row.update(judge_grads(spec, case, dtype, seed, grads))
        row["error"] = ""
    except Exception as e:  # the row reports it; the run goes on
        row.update(passed=False, error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
    return row


def backward_row(spec: opspec.OpSpec, case: opspec.Case, dtype: torch.dtype, seed: int) -> dict:
    backend = backends.active()
    return {
        "op": spec.name,
        "variant": spec.variant_name(backend.name),
        "backend": backend.name,
        "case": case.name,
        "dtype": dtype_name(dtype),
        "direction": "backward",
        "seed": seed,
        "tol": GRAD_TOL_FACTOR * spec.tolerance[dtype],
    }


def backward_inputs(spec: opspec.OpSpec, case: opspec.Case, dtype: torch.dtype, seed: int):
    """(args, kwargs, generator) of a backward check: drawn in float64 from `seed` and rounded to `dtype`
    (the generator goes on to draw the output gradients); or why the case has no backward check."""
    device = backends.active().device()
    gen = torch.Generator(device=device).manual_seed(seed)
    args, kwargs = case.make(torch.float64, device, gen)
    schema = trainable(spec.name)._schema.arguments
    if any(
        not isinstance(a, torch.Tensor) and isinstance(s.type, torch.TensorType) for a, s in zip(args, schema)
    ):
        return "a Python number where the op's signature declares a Tensor"
    rounded = [_rounded(a, dtype) for a in args]
    return rounded, {k: _rounded(v, dtype) for k, v in kwargs.items()}, gen


def _rounded(a, dtype: torch.dtype):
    return a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a


def backward_grads(fn, args, kwargs, gen: torch.Generator) -> tuple[list[torch.Tensor | None], float]:
    """(the gradients of `fn`'s floating tensor inputs in argument order, the sum of the output gradients'
    norms) for random output gradients drawn from `gen` (float64, one per output, cast to the output's
    dtype). No gradients where nothing flows back (a zero-size output)."""
    leaves = [a.detach().requires_grad_() if _floating(a) else a for a in args]
    kw = {k: v.detach().requires_grad_() if _floating(v) else v for k, v in kwargs.items()}
    outs = fn(*leaves, **kw)
    outs = tuple(outs) if isinstance(outs, (tuple, list)) else (outs,)
    if sum(o.numel() for o in outs) == 0:
        return [], 0.0
    dys = [torch.randn(o.shape, generator=gen, dtype=torch.float64, device=gen.device) for o in outs]
    inputs = [t for t in [*leaves, *kw.values()] if _floating(t)]
    grads = torch.autograd.grad(outs, inputs, [d.to(o.dtype) for d, o in zip(dys, outs)], allow_unused=True)
    return list(grads), sum(float(d.norm()) for d in dys)


def _floating(a) -> bool:
    return isinstance(a, torch.Tensor) and a.is_floating_point()


def judge_grads(spec: opspec.OpSpec, case: opspec.Case, dtype: torch.dtype, seed: int, grads: list) -> dict:
    """The verdict on `grads` (an implementation's `backward_grads` for this case): against torch.autograd
    on the reference over the same rounded inputs in float64 and the same output gradients. Per input:
    shape and dtype, NaN positions, and ‖g − ref‖ / max(‖ref‖, 1e-3·‖dy‖) (the floor serves gradients that
    cancel to almost nothing); the row's errors are the worst input's. It passes within GRAD_TOL_FACTOR
    times the forward's tolerance plus NATIVE_GRAD_FACTOR times the native op's own error in `dtype` on
    the same inputs (`native_rel_err`, measured where the tolerance alone is exceeded): an ill-conditioned
    gradient (a norm over one column) is as far from float64 in torch's own kernels."""
    args, kwargs, gen = backward_inputs(spec, case, dtype, seed)
    refs, dy_norm = backward_grads(spec.reference, *_widened(args, kwargs), gen)
    row = {"shape": shape_label(args)}
    if not refs:
        return {
            **row,
            "rel_err": 0.0,
            "max_abs_err": 0.0,
            "nonfinite_match": True,
            "dtype_match": True,
            "passed": not grads,
        }
    if len(grads) != len(refs):
        raise AssertionError(f"{len(grads)} input gradients, the reference has {len(refs)}")
    row.update(_grad_errors(grads, refs, dtype, 1e-3 * dy_norm))
    tol = GRAD_TOL_FACTOR * spec.tolerance[dtype]
    budget = tol
    if row["rel_err"] > tol:
        args, kwargs, gen = backward_inputs(spec, case, dtype, seed)
        native = _grad_errors(
            backward_grads(spec.reference, args, kwargs, gen)[0], refs, dtype, 1e-3 * dy_norm
        )
        row.update(native_rel_err=native["rel_err"], native_passed=native["rel_err"] <= tol)
        budget += NATIVE_GRAD_FACTOR * native["rel_err"]
    ok = row["dtype_match"] and row["nonfinite_match"] and row["rel_err"] <= budget
    return {**row, "passed": bool(ok)}


def _widened(args, kwargs):
    return (
        [a.double() if _floating(a) else a for a in args],
        {k: v.double() if _floating(v) else v for k, v in kwargs.items()},
    )


def _grad_errors(grads: list, refs: list, dtype: torch.dtype, floor: float) -> dict:
    """Worst relative and absolute error of `grads` against `refs`, and whether every one has the
    reference's shape, `dtype` and NaN positions; a gradient missing, or present where the reference
    has none, raises."""
    out = {"rel_err": 0.0, "max_abs_err": 0.0, "nonfinite_match": True, "dtype_match": True}
    for i, (g, r) in enumerate(zip(grads, refs)):
        if r is None:
            if g is not None and g.any():
                raise AssertionError(f"input {i}: a gradient where the reference has none")
            continue
        if g is None:
            raise AssertionError(f"input {i}: no gradient")
        out["dtype_match"] &= g.shape == r.shape and g.dtype == dtype
        g = g.to(r.device)
        out["nonfinite_match"] &= torch.equal(torch.isnan(g), torch.isnan(r))
        ok = torch.isfinite(r) & torch.isfinite(g)
        diff = (g.double() - r)[ok]
        out["rel_err"] = max(out["rel_err"], float(diff.norm()) / max(float(r[ok].norm()), floor, 1e-30))
        out["max_abs_err"] = max(out["max_abs_err"], float(diff.abs().max()) if diff.numel() else 0.0)
    return out


def selected_variant(
    spec: opspec.OpSpec, backend: str, variant: str | None = None, algorithm: str | None = None
) -> str | None:
    """The name of the implementation to run: `variant` (None: the backend's own), of `algorithm` when one
    is asked for ("<variant>:<algorithm>", e.g. "generic:merge"); None means the backend's own."""
    if algorithm is None:
        return variant
    return f"{variant or spec.variant_name(backend)}:{algorithm}"


def check(
    ops: Iterable[str] | None = None,
    cases: Iterable[str] = ("quick",),
    dtypes: Iterable[str | torch.dtype] | None = None,
    backend: str | None = None,
    seed: int | None = None,
    progress: bool = True,
    variant: str | None = None,
    rules: LaunchRules | None = None,
    algorithm: str | None = None,
    backward: bool = False,
) -> pd.DataFrame:
    """Correctness table for `ops` (default: all registered) over the case sets and dtypes.

    backward: after each forward row of an op with a backward, its backward row (`check_backward_case`;
    the backend's own implementation only: not with `variant` or `algorithm`).
    variant: run this implementation of each op instead of the backend's own; algorithm: that
    implementation's named algorithm (e.g. topk's "merge"); ops without it get a skipped row. rules: also
    check every launch against these MLU launch rules (column `violations`: distinct violations in that
    row; the details are in `rules.violations()`).
    """
    chosen = backends.active(backend)
    specs = [opspec.get(name) for name in ops] if ops else list(opspec.REGISTRY.values())
    names = {s.name: selected_variant(s, chosen.name, variant, algorithm) for s in specs}
    if (variant or algorithm) and not any(names[s.name] in s.variant_names() for s in specs):
        wanted = variant if algorithm is None else f"{variant or '<backend>'}:{algorithm}"
        raise ValueError(
            f"variant: no selected op has a {wanted!r} variant; they have "
            f"{sorted({v for s in specs for v in s.variant_names()})}"
        )
    rows = []
    with rules if rules is not None else contextlib.nullcontext():
        for item in tqdm(
            plan(specs, cases, dtypes, seed, variant, algorithm),
            desc="check",
            disable=not progress,
            leave=False,
        ):
            if item.skip:
                rows.append(skipped_row(item, item.variant or item.spec.variant_name(chosen.name)))
                continue
            rows.append(
                check_case(item.spec, item.case, item.dtype, item.seed, variant=item.variant, rules=rules)
            )
            if backward and item.variant is None and item.spec.backward is not None:
                rows.append(check_backward_case(item.spec, item.case, item.dtype, item.seed))
    return table(rows, rules is not None)


@dataclass(frozen=True)
class WorkItem:
    """One row of a check: an (op, case, dtype) with its input seed, or the reason it is skipped."""

    spec: opspec.OpSpec
    case_set: str
    index: int  # position of `case` in spec.case_list(case_set)
    case: opspec.Case
    dtype: torch.dtype
    seed: int
    skip: str = ""
    variant: str | None = None  # the implementation to run (None: the backend's own)


def plan(
    specs: Iterable[opspec.OpSpec],
    cases: Iterable[str],
    dtypes: Iterable[str | torch.dtype] | None,
    seed: int | None,
    variant: str | None = None,
    algorithm: str | None = None,
) -> list[WorkItem]:
    """The rows `check` runs, in order, each with its own seed (the base seed + its position) and the
    implementation it runs (`variant`, of `algorithm`: see selected_variant)."""
    active = backends.active()
    interpreted = active.interpreted
    dtype_list = parse_dtypes(dtypes)
    seed = random.randrange(2**31) if seed is None else seed
    work = [
        (s, cs, j, c, d)
        for s in specs
        for cs in cases
        for j, c in enumerate(s.case_list(cs))
        for d in dtype_list
        if d in s.dtypes
    ]
    out = []
    for i, (spec, case_set, j, case, dtype) in enumerate(work):
        skip, name = "", selected_variant(spec, active.name, variant, algorithm)
        if name and name not in spec.variant_names():
            skip = f"no {name} variant"
        elif case.big and interpreted:
            skip = "needs a GPU (past 2**31 elements)"
        out.append(WorkItem(spec, case_set, j, case, dtype, seed + i, skip, name))
    return out


def skipped_row(item: WorkItem, variant: str) -> dict:
    return {
        "op": item.spec.name,
        "variant": variant,
        "backend": backends.active().name,
        "case": item.case.name,
        "dtype": dtype_name(item.dtype),
        "direction": "forward",
        "seed": item.seed,
        "skipped": item.skip,
        "passed": False,
        "error": "",
    }


def table(rows: list[dict], violations: bool = False) -> pd.DataFrame:
    """The correctness table of `rows` (check_case's dicts), with every column present."""
    columns = [
        "op",
        "variant",
        "backend",
        "case",
        "dtype",
        "direction",
        "shape",
        "rel_err",
        "max_abs_err",
        "tol",
        "nonfinite_match",
        "elementwise_ok",
        "dtype_match",
        "passed",
        "native_rel_err",
        "native_passed",
        "skipped",
        "error",
        "seed",
    ]
    if violations:
        columns.insert(columns.index("skipped"), "violations")
    df = pd.DataFrame(rows)
    for col in columns + ["traceback"]:
        if col not in df:
            df[col] = None
    df["skipped"] = df["skipped"].fillna("")
    df["direction"] = df["direction"].fillna("forward")  # a worker's rows: forward only
    return df[columns + ["traceback"]]


def check_rules(
    ops: Iterable[str] | None = None,
    cases: Iterable[str] = ("quick",),
    dtypes=None,
    variant: str | None = None,
    device: str = "mlu",
    cores: int | None = None,
    nram_bytes: int | None = None,
    seed: int | None = None,
    progress: bool = True,
) -> tuple[pd.DataFrame, LaunchRules]:
    """Correctness check of `ops` under the MLU launch rules of `device` (figures overridden by `cores`,
    `nram_bytes`): (check table with a `violations` column, the LaunchRules holding every violation and
    launch)."""
    rules = LaunchRules.for_device(device, cores=cores, nram_bytes=nram_bytes)
    df = check(
        ops=ops, cases=cases, dtypes=dtypes, variant=variant, rules=rules, seed=seed, progress=progress
    )
    return df, rules


def failures(df: pd.DataFrame) -> pd.DataFrame:
    """Rows that ran and did not pass (skipped rows are not failures)."""
    return df[(~df["passed"].astype(bool)) & (df["skipped"] == "")]


def _is_false(value) -> bool:
    """False, numpy's False included; None and NaN (not measured) are not False."""
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and not bool(value)


def failure_reason(row) -> str:
    """Why one correctness row failed, in words."""
    error = row.get("error")
    if isinstance(error, str) and error:
        return error
    if _is_false(row.get("dtype_match")):
        return "output dtype or shape differs from the native op's"
    if _is_false(row.get("nonfinite_match")):
        return "NaN/Inf positions differ from the reference"
    return f"rel_err {row['rel_err']:.3g} (tol {row['tol']:g}), elementwise ok: {row['elementwise_ok']}"
