"""The verdict on a candidate, computed in the caller from the outputs its worker returned.

The worker process runs the candidate on each planned (case, dtype, seed) and returns only data: the
outputs as tensors in a ``torch.save`` file, read here with ``weights_only=True`` (tensors, lists,
dicts and numbers; no code), and a JSON file. The caller then draws the same inputs from the same
seeds on its own device, runs the registered op's reference on float64 copies and compares
(`workbench.profiling.correctness.judge`). Nothing the candidate does in its own process (patching
the correctness module, rewriting the result files, skipping cases) can make a wrong output pass: a
missing output is a failed row, a forged one is judged like any other.

For a registered op with a backward the worker also returns, per case, the input gradients of the op's
custom operator (which runs the candidate as its forward, with the op's backward rule) for output
gradients drawn from the case's seed; the caller draws the same and judges them against float64 autograd
on the reference (`correctness.judge_grads`): a row with `direction` "backward" after the forward one.

A new op (the candidate declares ``SPEC``) has no registered reference: its worker also returns its
own reference outputs (float64) and the caller compares the two. That verdict is only as good as the
reference its author wrote; such an op is checked forward only.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import pandas as pd
import torch

from workbench.ops import spec as opspec
from workbench.ops._library import trainable
from workbench.profiling import correctness as cr

OUTPUTS = "outputs.pt"  # the tensors a worker returns, beside its result.json


# ---- worker side: outputs as plain data -------------------------------------------------------------


def portable(value):
    """`value` as tensors on the cpu inside lists and dicts, with the tuple type kept by name (None, an
    input with no gradient, stays None)."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, (tuple, list)):
        return {"kind": type(value).__name__, "items": [portable(v) for v in value]}
    raise TypeError(f"the output is a {type(value).__name__}; expected a tensor or a tuple of tensors")


def rebuild(value):
    """The inverse of `portable` (a torch.return_types tuple comes back as that type)."""
    if isinstance(value, dict):
        items = [rebuild(v) for v in value["items"]]
        kind = value.get("kind")
        if kind == "list":
            return items
        structseq = getattr(torch.return_types, str(kind), None)
        return structseq(items) if isinstance(structseq, type) else tuple(items)
    return value


def item_request(item: cr.WorkItem) -> dict:
    return {
        "set": item.case_set,
        "index": item.index,
        "case": item.case.name,
        "dtype": cr.dtype_name(item.dtype),
        "seed": item.seed,
        "skip": item.skip,
    }


def run_items(
    spec: opspec.OpSpec, fn, items: list[dict], own_reference: bool, progress=None
) -> tuple[list, dict]:
    """Worker side: run `fn` on each item's inputs; returns (row metadata, tensors by row position).

    own_reference: also return the spec's reference outputs (a new op: the caller has no reference);
    else, for an op with a backward, also its input gradients (`correctness.backward_grads`).
    """
    from workbench.ops._common import poisoned_outputs

    rows, tensors = [], {"out": {}, "ref": {}, "grad": {}}
    for i, item in enumerate(progress(items) if progress else items):
        row = dict(item, error="", traceback="")
        rows.append(row)
        if item["skip"]:
            continue
        try:
            case = spec.case_list(item["set"])[item["index"]]
            if case.name != item["case"]:
                raise LookupError(
                    f"case {item['set']}[{item['index']}] is {case.name!r}, expected {item['case']!r}"
                )
            args, kwargs = cr.make_inputs(case, cr.DTYPE_NAMES[item["dtype"]], item["seed"])
            row["shape"] = cr.shape_label(args)
            with poisoned_outputs():
                out = fn(*args, **kwargs)
            tensors["out"][str(i)] = portable(out)
            if own_reference:
                row["dtype_match"] = cr.same_kind(out, spec.reference(*args, **kwargs))
                row["tol"] = spec.tolerance[cr.DTYPE_NAMES[item["dtype"]]]
                row["dim"] = kwargs.get("dim", -1)
                del out
                tensors["ref"][str(i)] = portable(cr.reference(spec, case, args, kwargs))
            elif spec.backward is not None:
                _gradients(spec, case, item, row, tensors["grad"], str(i))
        except Exception as e:  # the row reports it; the run goes on
            row.update(error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
    return rows, tensors


def _gradients(spec: opspec.OpSpec, case: opspec.Case, item: dict, row: dict, grads: dict, key: str) -> None:
    """Worker side: the case's input gradients into `grads[key]`; a failing backward into the row's
    `grad_error` (the forward row stands on its own)."""
    inputs = cr.backward_inputs(spec, case, cr.DTYPE_NAMES[item["dtype"]], item["seed"])
    if isinstance(inputs, str):
        return  # the caller finds the same reason
    try:
        grads[key] = portable(cr.backward_grads(trainable(spec.name), *inputs)[0])
    except Exception as e:
        row["grad_error"] = f"{type(e).__name__}: {e}"


# ---- caller side: the verdict ------------------------------------------------------------------------


def load_outputs(path: Path) -> dict:
    """The worker's tensors, read as data only (a file that is not plain tensors and lists is refused)."""
    if not path.exists():
        return {"out": {}, "ref": {}, "grad": {}}
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict):
        raise ValueError(f"{path.name}: expected a dict of outputs, got {type(data).__name__}")
    return {k: data.get(k) or {} for k in ("out", "ref", "grad")}


def verdicts(
    op: str, planned: list[cr.WorkItem] | None, rows: list[dict], tensors: dict, variant: str
) -> pd.DataFrame:
    """The correctness table, judged here.

    planned: the caller's plan for a registered op (its reference judges); None for a new op, whose
    worker planned the rows and returned its own reference outputs.
    """
    backend = cr.backends.active().name
    out_rows = []
    items = planned if planned is not None else [None] * len(rows)
    for i, item in enumerate(items):
        got = rows[i] if i < len(rows) else None
        desc = item_request(item) if item is not None else got
        base = {
            "op": op,
            "variant": variant,
            "backend": backend,
            "case": desc["case"],
            "dtype": desc["dtype"],
            "seed": desc["seed"],
            "skipped": desc.get("skip") or "",
            "error": "",
        }
        out_rows.append(base)
        if base["skipped"]:
            base["passed"] = False
            continue
        if item is not None:
            base["tol"] = item.spec.tolerance[item.dtype]
        if got is None or any(got.get(k) != desc[k] for k in ("case", "dtype", "seed")):
            base.update(passed=False, error="the worker returned no output for this case")
            continue
        base["shape"] = got.get("shape")
        if got.get("error"):
            base.update(passed=False, error=got["error"], traceback=got.get("traceback", ""))
            continue
        out = tensors["out"].get(str(i))
        if out is None:
            base.update(passed=False, error="the worker returned no output for this case")
            continue
        try:
            out = rebuild(out)
            if item is not None:
                args, kwargs = cr.make_inputs(item.case, item.dtype, item.seed)
                base.update(cr.judge(item.spec, out, item.case, item.dtype, args, kwargs))
            else:
                ref = rebuild(tensors["ref"][str(i)])
                base["tol"] = float(got["tol"])
                metrics = cr.compare_outputs(out, ref, base["tol"], dim=int(got.get("dim", -1)))
                dtype_match = bool(got.get("dtype_match"))
                base.update(metrics, dtype_match=dtype_match, passed=metrics["passed"] and dtype_match)
        except Exception as e:
            base.update(passed=False, error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
        if item is not None and item.spec.backward is not None:
            out_rows.append(_backward_verdict(item, got, tensors["grad"].get(str(i)), variant))
    return cr.table(out_rows)


def _backward_verdict(item: cr.WorkItem, got: dict, grads, variant: str) -> dict:
    """Caller side: the backward row of one planned case whose forward ran (`got`: its worker's row) from
    the gradients the worker returned."""
    row = {**cr.backward_row(item.spec, item.case, item.dtype, item.seed), "variant": variant, "error": ""}
    reason = cr.backward_inputs(item.spec, item.case, item.dtype, item.seed)
    if isinstance(reason, str):
        return {**row, "skipped": reason, "passed": False}
    error = got.get("grad_error") or (
        "" if grads is not None else "the worker returned no gradients for this case"
    )
    if error:
        return {**row, "passed": False, "error": error}
    try:
        row.update(cr.judge_grads(item.spec, item.case, item.dtype, item.seed, rebuild(grads)))
    except Exception as e:
        row.update(passed=False, error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
    return row
