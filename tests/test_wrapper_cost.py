"""Op wrappers without their kernels (workbench.profiling.no_kernels): the launch cache is hit on every
repeated call, which keeps the host cost of decode-sized ops low on compiling backends."""

import pytest
import torch

from workbench import backends
from workbench.ops import REGISTRY, _launch
from workbench.profiling.correctness import make_inputs
from workbench.profiling.no_kernels import no_kernels


@pytest.mark.parametrize("op", sorted(REGISTRY))
def test_repeated_call_hits_the_launch_cache(op):
    spec = REGISTRY[op]
    fn = spec.implementation(backends.active().name)
    for case in spec.case_list("quick"):
        args, kwargs = make_inputs(case, torch.float16, 0)
        with no_kernels("cached") as stub:
            fn(*args, **kwargs)  # autotuned ops (mm) launch through the cache from their second call
            fn(*args, **kwargs)
            first = stub.compiles
            fn(*args, **kwargs)
            assert stub.compiles == first, f"{case.name}: a repeated call missed the launch cache"
    assert not _launch._ENABLED  # restored: the interpreter takes Triton's path


def test_wrapper_mode_launches_nothing():
    x = torch.randn(64)
    with no_kernels("wrapper"):
        out = REGISTRY["neg"].impl(x)
    assert out.shape == x.shape
    assert torch.equal(REGISTRY["neg"].impl(x), -x)  # the real launch is back
