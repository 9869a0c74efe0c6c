"""Reductions too long for the programs they start are split over more programs and reduced twice:
forced here on small shapes (small tiles, a large device) and compared with torch, NaNs and ties included."""

import pytest
import torch

import workbench
from workbench import backends
from workbench.ops import _reduce, _scratch, _split_rows


@pytest.fixture
def forced_splits(monkeypatch):
    monkeypatch.setattr(_reduce, "TILE", 64 // backends.active().policy.block_scale or 1)
    monkeypatch.setattr(_split_rows, "target_programs", lambda: 64)
    assert _reduce._splits(1, 1, 5000, *_reduce._tiles(5000, 1)[:2])[0] > 1


@pytest.mark.parametrize("shape,dim", [((2, 5000), -1), ((3000, 3), 0)])
def test_split_sum_mean_max_match_torch(forced_splits, shape, dim):
    gen = torch.Generator().manual_seed(7)
    dev = backends.active().device()
    x = torch.randn(shape, generator=gen).round(decimals=1).to(dev)  # rounded: ties for max
    x.view(-1)[1234] = float("nan")
    ints = torch.randint(-(2**40), 2**40, shape, generator=gen).to(dev)
    assert torch.allclose(workbench.ops.sum(x, dim), x.double().sum(dim).float(), equal_nan=True)
    assert torch.allclose(workbench.ops.mean(x.nan_to_num(), dim), x.nan_to_num().double().mean(dim).float())
    assert torch.equal(workbench.ops.sum(ints, dim), ints.sum(dim))
    values, indices = workbench.ops.max(x, dim)
    want = torch.max(x, dim)
    assert torch.equal(values.isnan(), want.values.isnan()) and torch.equal(indices, want.indices)
    clean = x.nan_to_num(0.0)
    assert torch.equal(workbench.ops.max(clean, dim).indices, torch.max(clean, dim).indices)


def test_split_argmax_merges_chunk_winners_read_back_from_x(monkeypatch):
    """argmax over few long rows: one winner index per chunk, merged by reading their values back from x."""
    monkeypatch.setattr(_split_rows, "target_programs", lambda: 64)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(3, 40000, generator=gen).round(decimals=1).to(backends.active().device())
    x[0, 30000] = x[0, 100] = x[0].max() + 1  # a tie across chunks: the first index wins
    x[1, 35000] = float("nan")  # NaN wins, in whichever chunk it is
    x[2] = -float("inf")  # all -inf: index 0
    assert _split_rows.chunking(3, 40000, min(4096 * backends.active().policy.block_scale, 16384))[0] > 1
    assert torch.equal(workbench.ops.argmax(x, dim=1), torch.tensor([100, 35000, 0], device=x.device))
    assert torch.equal(workbench.ops.argmax(x[:2].t(), dim=0), torch.tensor([100, 35000], device=x.device))
    # one launch: the last program of each row took the result and put the row's slots back
    best, count = _scratch.kept("argmax", x.device)
    assert (best == -(2**63)).all() and not count.any()


# shorter than one tile; three tiles (the interpreter's are wide), the last one partial; whole tiles only
# (loads without a bounds mask)
@pytest.mark.parametrize("n", [37, 70000, 65536])
def test_argmax_signed_zero_repeated_nan_and_all_inf_rows(monkeypatch, n):
    """torch's rule lane by lane: -0.0 equals 0.0 (the first wins), the first of several NaNs wins, a row of
    -inf gives index 0, and lanes past the row's end never win. Every 16th column repeats the tie or the
    NaN, so that one lane of any tile width meets several."""
    monkeypatch.setattr(_split_rows, "target_programs", lambda: 1)  # a program per row: its lanes loop
    dev = backends.active().device()
    x = torch.full((4, n), -1.0)
    x[0, 3::16], x[0, 11::16] = -0.0, 0.0  # all of them the maximum
    x[1, 4::16] = float("nan")
    x[1, 2] = float("inf")
    x[2] = -float("inf")
    x[3, n - 1] = 2.0  # the last column
    for dtype in (torch.float32, torch.bfloat16):
        got = workbench.ops.argmax(x.to(dev, dtype), dim=1)
        assert torch.equal(got, torch.argmax(x.to(dtype), dim=1).to(dev))
        assert torch.equal(got.cpu(), torch.tensor([3, 4, 0, n - 1]))


@pytest.mark.parametrize("variant,n", [("generic", 70000), ("generic", 65536), ("mlu", 100)])
def test_argmax_nan_behind_larger_values_of_its_lane(monkeypatch, variant, n):
    """A lane that meets finite values first and a NaN later: torch's index is the NaN's, not the lane's
    best finite column (the lane loop's compare leaves NaN out; the first-NaN pass must find it). One
    program per row, rows many tiles long: the one-launch kernel's at 70000 columns or 65536 (whole tiles,
    no bounds mask), the MLU style's with its tiles cut to 16 columns."""
    from workbench.ops import REGISTRY
    from workbench.ops.mlu import persistent

    monkeypatch.setattr(_split_rows, "target_programs", lambda: 1)
    monkeypatch.setattr(persistent, "tile_elems", lambda *args, **kwargs: 16)
    monkeypatch.setattr(persistent, "max_programs", lambda *args, **kwargs: 1)
    argmax = workbench.ops.argmax if variant == "generic" else REGISTRY["argmax"].variants["mlu"]
    x = torch.arange(n, 0, -1, dtype=torch.float32).repeat(3, 1)  # each lane's first column is its best
    x[0, n - 1] = float("nan")
    x[1, n - 3] = x[1, n // 2 + 7] = float("nan")  # two NaNs in different lanes: the first wins
    for dtype in (torch.float32, torch.bfloat16):
        got = argmax(x.to(backends.active().device(), dtype), dim=1)
        assert got.cpu().tolist() == [n - 1, n // 2 + 7, 0]
        assert torch.equal(got.cpu(), torch.argmax(x.to(dtype), dim=1))
