"""Every registered op x every implementation (generic and each backend variant) x its quick and edge
cases x every dtype, against a float64 reference, on the active backend.

Variants written for the MLU are run here too (their launches sized for the default MLU's figures) and
must also keep to the MLU launch rules.
"""

import zlib

import pytest

from workbench import backends
from workbench.ops import REGISTRY
from workbench.ops.mlu.rules import LaunchRules
from workbench.profiling.correctness import check_case, dtype_name


def _params():
    for spec in REGISTRY.values():
        for variant in spec.variant_names():
            for case_set in ("quick", "edge"):
                for case in spec.case_list(case_set):
                    for dtype in spec.dtypes:
                        marks = [pytest.mark.gpu] if case.big else []
                        yield pytest.param(
                            spec,
                            variant,
                            case,
                            dtype,
                            marks=marks,
                            id=f"{spec.name}[{variant}]-{case_set}-{case.name}-{dtype_name(dtype)}",
                        )


@pytest.mark.parametrize("spec,variant,case,dtype", list(_params()))
def test_op_matches_reference(spec, variant, case, dtype, request):
    rules = LaunchRules.for_device("mlu") if variant == "mlu" else None
    row = check_case(
        spec, case, dtype, seed=zlib.crc32(request.node.name.encode()), variant=variant, rules=rules
    )
    assert row["variant"] == variant
    assert row["error"] == "", row.get("traceback")
    assert row["dtype_match"], "output dtype or shape differs from the native op's"
    assert row["nonfinite_match"], "NaN/Inf positions differ from the reference"
    assert row["passed"], (
        f"rel_err {row['rel_err']:.3g} (tol {row['tol']}), elementwise ok: {row['elementwise_ok']}"
    )
    if rules is not None:
        assert rules.clean, rules.violations().to_string()


def test_backend_is_bound():
    assert backends.active().name in backends.BACKENDS
