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


def test_cached_layout_matches_expanded_views():
    from workbench.ops._elementwise import _layout, _merge_dims

    a = torch.empty(3, 1, 5).transpose(0, 2)  # (5, 1, 3), non-contiguous
    b = torch.empty(4, 1)  # broadcast along dims 0 and 2
    shape = (5, 4, 3)
    merged = _merge_dims(shape, [t.expand(shape).stride() for t in (a, b)])
    sizes, strides, contiguous, operands = _layout(shape, [a, b])
    assert _layout(shape, [a, b])[:3] == (sizes, strides, contiguous)  # the cached geometry
    pad = 4 - len(merged)
    assert list(sizes) == ([1] * pad + [size for size, _ in merged])[1:]
    assert [list(st) for st in strides] == [[0] * pad + [m[1][k] for m in merged] for k in range(2)]
    assert not contiguous and operands[0] is a and operands[1] is b
    rank5 = torch.randn(2, 3, 4, 5, 6).permute(4, 2, 0, 3, 1)  # no merge: materialised
    sizes, strides, contiguous, (dense,) = _layout(rank5.shape, [rank5])
    assert contiguous and dense.is_contiguous() and torch.equal(dense, rank5)


def test_rows_fast_paths_match_the_general_ones():
    from workbench.ops import _rows

    x = torch.randn(6, 40)
    assert _rows.as_rows(x) is x  # already rows: no reshape
    t = x.t()  # last dim strided: copied
    rows = _rows.as_rows(t)
    assert rows.is_contiguous() and torch.equal(rows, t)
    x3 = torch.randn(2, 3, 40)
    assert _rows.as_rows(x3).shape == (6, 40)
    for n_rows, n in [(1, 4096), (64, 4096), (3, 40000), (100, 7)]:
        block, one_tile = _rows.tile(n)
        block_r = _rows.rows_per_program(n_rows, block) if one_tile else 1
        want = (-(-n_rows // block_r), block_r, block, one_tile, _rows.row_warps(block_r * block))
        assert _rows.packed_launch(n_rows, n) == want
