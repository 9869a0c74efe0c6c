"""Every registered op declares a reference, cases, a cost model, a tolerance and a status."""

import pytest
import torch

from workbench import backends
from workbench.ops import CASE_SETS, REGISTRY, OpSpec, get, register
from workbench.ops.spec import Cost

EXPECTED = {"add", "mul", "silu", "gelu", "exp", "softmax", "rms_norm", "layer_norm", "mm"}


def test_first_ops_are_registered():
    assert EXPECTED <= set(REGISTRY)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_declaration_is_complete(name):
    spec = REGISTRY[name]
    assert callable(spec.reference) and callable(spec.impl)
    for case_set in CASE_SETS:
        assert spec.case_list(case_set), f"{name} has no {case_set} cases"
    for dtype in spec.dtypes:
        assert 0 < spec.tolerance[dtype] < 0.1
    assert set(spec.status) == set(backends.BACKENDS)
    assert all(a.startswith("aten::") for a in spec.aten)
    # a fused op (rope, silu_and_mul, ...) replaces no single ATen overload: its doc must say so
    assert spec.aten or "no ATen overload" in spec.doc, f"{name} declares no ATen overloads and no reason"
    case = spec.case_list("quick")[0]
    device = backends.active().device()
    args, kwargs = case.make(torch.float32, device, torch.Generator(device=device).manual_seed(0))
    cost = spec.cost(*args, **kwargs)
    # data movement (copy, cat, gather, ...) does no arithmetic: 0 FLOPs is the honest count
    assert isinstance(cost, Cost) and cost.bytes > 0 and cost.flops >= 0


def test_ops_are_callable_from_the_package():
    import workbench

    for name in EXPECTED:
        assert callable(getattr(workbench.ops, name))


def test_unknown_op_and_duplicate_registration():
    with pytest.raises(ValueError, match="unknown op 'nope'"):
        get("nope")
    spec = REGISTRY["add"]
    with pytest.raises(ValueError, match="registered twice"):
        register(spec)
    with pytest.raises(ValueError, match="lacks case sets"):
        register(OpSpec(name="half_done", reference=torch.add, impl=torch.add, cases={}, cost=spec.cost))
