"""Every registered op x its quick and edge cases x every dtype, against a float64 reference."""

import pytest

from workbench import backends
from workbench.ops import REGISTRY
from workbench.profiling.correctness import check_case, dtype_name


def _params():
    for spec in REGISTRY.values():
        for case_set in ("quick", "edge"):
            for case in spec.case_list(case_set):
                for dtype in spec.dtypes:
                    marks = [pytest.mark.gpu] if case.big else []
                    yield pytest.param(spec, case, dtype, marks=marks,
                                       id=f"{spec.name}-{case_set}-{case.name}-{dtype_name(dtype)}")


@pytest.mark.parametrize("spec,case,dtype", list(_params()))
def test_op_matches_reference(spec, case, dtype, request):
    row = check_case(spec, case, dtype, seed=abs(hash(request.node.name)) % 2**31)
    assert row["error"] == "", row.get("traceback")
    assert row["dtype_match"], "output dtype or shape differs from the native op's"
    assert row["nonfinite_match"], "NaN/Inf positions differ from the reference"
    assert row["passed"], f"rel_err {row['rel_err']:.3g} (tol {row['tol']}), elementwise ok: {row['elementwise_ok']}"


def test_backend_is_bound():
    assert backends.active().name in backends.BACKENDS
