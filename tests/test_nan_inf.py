"""NaN and ±inf propagate through every op exactly as through torch's.

The sweep: for every registered op whose inputs include floating tensors, fresh random inputs of one
small case get NaN, +inf or -inf at scattered positions (every dtype) or along a whole first row
(float32), and the output must have its NaN and inf where the float64 torch reference has them, with
the same signs, and match it elsewhere (`profiling.correctness.verify`: "nonfinite_match", "passed").
Then the row ops' special rows one by one, on the paths the sweep's small shapes do not reach (long rows
in one online pass, rows split over programs).
"""

from __future__ import annotations

import zlib

import pytest
import torch

from workbench import backends
from workbench.ops import REGISTRY, cross_entropy, log_softmax, softmax
from workbench.profiling.correctness import dtype_name, make_inputs, verify

SPECIALS = {"NaN": float("nan"), "+inf": float("inf"), "-inf": float("-inf")}

# The case each op is swept on, where it is not the first quick case with floating inputs.
CASE = {
    # Causal attention: torch's own answer depends on its kernel. A non-finite key or value that a query
    # does not see reaches that query's output in the math kernel (NaN scores + the -inf mask), within a
    # block in the flash kernels (0 * NaN), not at all in exact arithmetic; so causal masks are not
    # swept. Without a mask every query sees every key and all of torch's kernels agree.
    "scaled_dot_product_attention": "decode gqa 2x4x1x16 kv 2x2x37",
}


def _floating(args) -> list[torch.Tensor]:
    out = []
    for a in args:
        if isinstance(a, torch.Tensor) and a.is_floating_point():
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out.extend(_floating(a))
    return out


def _sweep_case(spec):
    """The op's case for the sweep, or None when no quick case has floating inputs (bitwise ops)."""
    if spec.name in CASE:
        return next(c for c in spec.case_list("quick") if c.name == CASE[spec.name])
    for case in spec.case_list("quick"):
        args, _ = case.make(torch.float32, torch.device("cpu"), torch.Generator().manual_seed(0))
        if _floating(args):
            return case
    return None


def _inject(t: torch.Tensor, value: float, pattern: str, gen: torch.Generator) -> torch.Tensor:
    """A copy of `t` (its layout kept where dense) holding `value` at about 1 in 40 scattered positions (at
    least one), or along its whole first row (the last dim; all of a 1-D tensor)."""
    t = t.clone()
    if t.numel() == 0:
        return t
    if pattern == "row":
        t[(0,) * (t.dim() - 1)] = value
        return t
    dense = t.contiguous()
    where = torch.randint(0, t.numel(), (max(1, t.numel() // 40),), generator=gen)
    dense.view(-1)[where.to(t.device)] = value
    return t.copy_(dense)


def _injected(args, value: float, pattern: str, gen: torch.Generator):
    """`args` with every floating tensor (also inside lists: cat's inputs) replaced by `_inject`'s copy."""
    if isinstance(args, torch.Tensor):
        return _inject(args, value, pattern, gen) if args.is_floating_point() else args
    if isinstance(args, (list, tuple)):
        return type(args)(_injected(a, value, pattern, gen) for a in args)
    return args


def _params():
    for spec in REGISTRY.values():
        case = _sweep_case(spec)
        if case is None:
            continue
        for name in SPECIALS:
            for pattern, dtypes in (("scattered", spec.dtypes), ("row", (torch.float32,))):
                place = "at scattered positions" if pattern == "scattered" else "along the first row"
                for dtype in dtypes:
                    yield pytest.param(
                        spec,
                        case,
                        name,
                        pattern,
                        dtype,
                        id=f"{spec.name} with {name} {place} in {dtype_name(dtype)}",
                    )


@pytest.mark.parametrize("spec,case,special,pattern,dtype", list(_params()))
def test_special_values_propagate_like_torch(spec, case, special, pattern, dtype, request):
    seed = zlib.crc32(request.node.name.encode())
    args, kwargs = make_inputs(case, dtype, seed)
    args = _injected(args, SPECIALS[special], pattern, torch.Generator().manual_seed(seed))
    fn = spec.implementation(backends.active().name)
    row = verify(spec, fn, case, dtype, args, kwargs)
    assert row["nonfinite_match"], "NaN/inf positions or signs differ from torch's"
    assert row["passed"], f"finite values differ: rel_err {row['rel_err']:.3g} (tol {spec.tolerance[dtype]})"


# ---- the row ops' special rows, one per row, on each of their paths --------------------------------------


def _rows_with_specials(n_cols: int) -> torch.Tensor:
    """Rows: plain; NaN first (a lane that has seen nothing else); one +inf; all -inf; -inf but one; NaN
    and +inf; a NaN in the last column."""
    dev = backends.active().device()
    x = torch.randn(7, n_cols, generator=torch.Generator().manual_seed(n_cols)).to(dev)
    x[1, 0] = float("nan")
    x[2, n_cols // 2] = float("inf")
    x[3] = float("-inf")
    x[4] = float("-inf")
    x[4, 1] = 0.5
    x[5, 0], x[5, -1] = float("nan"), float("inf")
    x[6, -1] = float("nan")
    return x


@pytest.mark.parametrize("n_cols", [300, 20000], ids=["one tile", "long rows in one online pass"])
@pytest.mark.parametrize("op", [softmax, log_softmax], ids=["softmax", "log_softmax"])
def test_softmax_rows_with_special_values(op, n_cols):
    x = _rows_with_specials(n_cols)
    ref = getattr(torch, op.__name__)(x.double(), -1)
    torch.testing.assert_close(op(x, -1).double(), ref, equal_nan=True, rtol=1e-5, atol=1e-6)


def test_softmax_rows_split_over_programs_keep_special_values():
    """Few long rows are split over programs (a chunk's max and sum, then the row's): a NaN or +inf in
    one chunk reaches the whole row."""
    x = _rows_with_specials(40000)[:3]  # 3 rows of 40000: split into chunks
    x[0, ::4096] = float("nan")  # first in every lane of a tile wherever the chunks start
    for op in (softmax, log_softmax):
        ref = getattr(torch, op.__name__)(x.double(), -1)
        torch.testing.assert_close(op(x, -1).double(), ref, equal_nan=True, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n_cols", [100, 20000], ids=["short rows", "long rows"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=dtype_name)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_cross_entropy_sees_special_logits_at_every_class(reduction, dtype, n_cols):
    """Each special row next to a plain one: a NaN or +inf logit at a class other than the target makes
    the loss NaN, as in torch; the special row's target set to ignore_index leaves it out."""
    x = _rows_with_specials(n_cols).to(dtype)
    target = torch.tensor([0, 3, 0, 0, 1, 2, 0], device=x.device)  # never a special column
    for r in range(1, len(x)):
        pair, t = x[[0, r]], target[[0, r]]
        for ignore in (False, True):
            if ignore:
                t = t.clone()
                t[1] = -100
            got = cross_entropy(pair, t, reduction=reduction)
            ref = torch.nn.functional.cross_entropy(pair.double(), t, reduction=reduction)
            where = f"special row {r}, ignored {ignore}"
            torch.testing.assert_close(
                got.double(),
                ref,
                equal_nan=True,
                rtol=2e-2,
                atol=1e-5,
                msg=lambda m, where=where: f"{where}: {m}",
            )


def test_cross_entropy_under_use_ops_sees_nan():
    import workbench

    x = _rows_with_specials(50)
    target = torch.zeros(7, dtype=torch.int64, device=x.device)
    with workbench.use_ops(include=["cross_entropy"]):
        got = torch.nn.functional.cross_entropy(x, target, reduction="none")
    ref = torch.nn.functional.cross_entropy(x.double(), target, reduction="none")
    torch.testing.assert_close(got.double(), ref, equal_nan=True, rtol=1e-5, atol=1e-6)
    assert got[1].isnan()
