"""Out-of-range indices raise as in torch: embedding, index_select, gather and cross_entropy's targets.

Every index outside [0, size) raises, negative ones too (torch accepts no negative index in these ops),
through the op and under `use_ops`; the error is an IndexError (and a RuntimeError, gather's in torch)
that names the op, the index and the size. The flag the kernels set is cleared, so the next call works.
On a GPU the error may come after the call returns (the flag is read without waiting): `reported` asks
for it, as the end of a `use_ops` context does.
WORKBENCH_INDEX_CHECK=0 turns the check off (then the documented fill values come back).
"""

from __future__ import annotations

import runpy
import sys
import weakref

import pytest
import torch
import torch.nn.functional as F

import workbench
from workbench import backends
from workbench.ops import _index_check, cross_entropy, embedding, gather, index_select

DEV = backends.active().device()


def reported(fn):
    """`fn()`, then any bad index still unreported: on a GPU the flag is read without waiting for the
    kernel, so the call itself may return before the error (docs/ops.md); on the interpreter it raises."""
    out = fn()
    workbench.ops.raise_pending()  # public: docs/ops.md
    return out


def _x(*shape, dtype=torch.float32):
    return torch.randn(shape, generator=torch.Generator().manual_seed(len(shape))).to(DEV, dtype)


def _i(values, dtype=torch.int64):
    return torch.tensor(values, dtype=dtype, device=DEV)


# (ours, torch's) for one call with a bad index; the message must name the op, the index and the size.
CALLS = {
    "embedding index past the table": (
        lambda: embedding(_i([[1, 50]]), _x(50, 8)),
        lambda: F.embedding(_i([[1, 50]]), _x(50, 8)),
        "embedding",
        "50",
        50,
    ),
    "embedding negative index": (
        lambda: embedding(_i([-1, 2]), _x(50, 8)),
        lambda: F.embedding(_i([-1, 2]), _x(50, 8)),
        "embedding",
        "-1",
        50,
    ),
    "embedding int32 index": (
        lambda: embedding(_i([3, 70], torch.int32), _x(50, 8)),
        lambda: F.embedding(_i([3, 70], torch.int32), _x(50, 8)),
        "embedding",
        "70",
        50,
    ),
    "index_select rows of a table": (
        lambda: index_select(_x(20, 6), 0, _i([0, 20])),
        lambda: torch.index_select(_x(20, 6), 0, _i([0, 20])),
        "index_select",
        "20",
        20,
    ),
    "index_select negative row": (
        lambda: index_select(_x(20, 6), 0, _i([-3])),
        lambda: torch.index_select(_x(20, 6), 0, _i([-3])),
        "index_select",
        "-3",
        20,
    ),
    "index_select columns": (
        lambda: index_select(_x(4, 9), 1, _i([2, 9, 1])),
        lambda: torch.index_select(_x(4, 9), 1, _i([2, 9, 1])),
        "index_select",
        "9",
        9,
    ),
    "index_select middle dim of rank 3": (
        lambda: index_select(_x(2, 5, 3), 1, _i([-1], torch.int32)),
        lambda: torch.index_select(_x(2, 5, 3), 1, _i([-1], torch.int32)),
        "index_select",
        "-1",
        5,
    ),
    "gather past the dim": (
        lambda: gather(_x(3, 7), 1, _i([[0, 7], [1, 2], [3, 4]])),
        lambda: torch.gather(_x(3, 7), 1, _i([[0, 7], [1, 2], [3, 4]])),
        "gather",
        "7",
        7,
    ),
    "gather negative index": (
        lambda: gather(_x(6, 4), 0, _i([[0, 1, -2, 3]])),
        lambda: torch.gather(_x(6, 4), 0, _i([[0, 1, -2, 3]])),
        "gather",
        "-2",
        6,
    ),
    "cross_entropy target past the classes": (
        lambda: cross_entropy(_x(4, 5), _i([0, 5, 1, 2])),
        lambda: F.cross_entropy(_x(4, 5), _i([0, 5, 1, 2])),
        "cross_entropy",
        "Target 5",
        5,
    ),
    "cross_entropy target -1 (not ignore_index)": (
        lambda: cross_entropy(_x(4, 5), _i([0, -1, -100, 2])),
        lambda: F.cross_entropy(_x(4, 5), _i([0, -1, -100, 2])),
        "cross_entropy",
        "Target -1",
        5,
    ),
    "cross_entropy rank 3, reduction none": (
        lambda: cross_entropy(_x(2, 3, 4), _i([[0, 1, 2, 3], [0, 0, 0, 0]]), reduction="none"),
        lambda: F.cross_entropy(_x(2, 3, 4), _i([[0, 1, 2, 3], [0, 0, 0, 0]]), reduction="none"),
        "cross_entropy",
        "Target 3",
        3,
    ),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_out_of_range_index_raises_like_torch(name, monkeypatch):
    ours, native, op, value, size = CALLS[name]
    with monkeypatch.context() as cpu:  # torch's cpu kernels raise at once (a CUDA one asserts on the device)
        cpu.setattr(sys.modules[__name__], "DEV", torch.device("cpu"))
        with pytest.raises(Exception) as torch_error:
            native()
    with pytest.raises(_index_check.IndexOutOfRange) as error:
        reported(ours)
    torch_class = type(torch_error.value)
    assert isinstance(error.value, torch_class), f"torch raises {torch_class.__name__}"
    message = str(error.value)
    assert message.startswith(f"{op}: ") and value in message and str(size) in message, message
    assert not _index_check.flag(DEV).item(), "the flag must be cleared after the error"


def test_the_next_call_after_an_error_works():
    w = _x(10, 4)
    with pytest.raises(IndexError):
        reported(lambda: embedding(_i([10]), w))
    assert torch.equal(embedding(_i([9, 0]), w), w[[9, 0]])
    assert torch.equal(gather(w, 1, _i([[3]] * 10)), w[:, 3:])


def test_ignore_index_and_in_range_targets_do_not_raise():
    x = _x(4, 5)
    for t, kwargs in (
        (_i([0, 4, -100, 2]), {}),
        (_i([0, -1, -1, 2]), {"ignore_index": -1}),
        (_i([0, 7, 1, 2]), {"ignore_index": 7}),
    ):
        torch.testing.assert_close(cross_entropy(x, t, **kwargs), F.cross_entropy(x, t, **kwargs))


def test_use_ops_raises_like_torch():
    w, x = _x(50, 8), _x(4, 5)
    with workbench.use_ops(include=["embedding", "gather", "cross_entropy", "index_select"]):
        with pytest.raises(IndexError, match="embedding: index out of range in self"):
            reported(lambda: F.embedding(_i([50]), w))
        with pytest.raises(RuntimeError, match="gather: .*index 5 is out of bounds for dimension 1"):
            reported(lambda: torch.gather(x, 1, _i([[5]] * 4)))
        with pytest.raises(IndexError, match="cross_entropy: Target 9 is out of bounds"):
            reported(lambda: F.cross_entropy(x, _i([0, 9, 1, 2])))
        with pytest.raises(IndexError, match="index_select: index out of range in self"):
            reported(lambda: torch.index_select(w, 0, _i([-1])))


def test_switched_off_the_kernels_read_nothing(monkeypatch):
    """With the check off (WORKBENCH_INDEX_CHECK=0) nothing raises and nothing outside is read: a NaN
    embedding row, 0 from gather and index_select, a NaN loss."""
    monkeypatch.setattr(_index_check, "ENABLED", False)
    w = _x(10, 4)
    assert embedding(_i([2, 10]), w)[1].isnan().all()
    assert (index_select(w, 0, _i([-1]))[0] == 0).all() and (index_select(w, 1, _i([4]))[:, 0] == 0).all()
    assert gather(w, 1, _i([[7]] * 10)).eq(0).all()
    assert cross_entropy(w, _i([0, 5] + [1] * 8), reduction="none")[1].isnan()
    assert not _index_check.flag(DEV).item()


@pytest.mark.parametrize("value,enabled", [("0", False), ("1", True), (None, True)])
def test_environment_switch(monkeypatch, value, enabled):
    """WORKBENCH_INDEX_CHECK as the module reads it at import (run again here in a namespace of its own)."""
    if value is None:
        monkeypatch.delenv("WORKBENCH_INDEX_CHECK", raising=False)
    else:
        monkeypatch.setenv("WORKBENCH_INDEX_CHECK", value)
    assert runpy.run_path(_index_check.__file__)["ENABLED"] is enabled


@pytest.mark.parametrize("name", list(CALLS))
def test_the_mlu_forms_raise_too(name):
    """In the persistent launch style (the MLU form of every op) an index outside its dim raises the same
    error."""
    from workbench.ops.mlu.persistent import launch_style

    ours, _, op, value, _ = CALLS[name]
    with launch_style(True), pytest.raises(_index_check.IndexOutOfRange) as error:
        reported(ours)
    assert str(error.value).startswith(f"{op}: ") and value in str(error.value)
    assert not _index_check.flag(DEV).item()


def test_a_flag_seen_later_names_the_call_that_set_it(monkeypatch):
    """On a GPU the flag is read without waiting, so a later call or the end of `use_ops` may be the first
    to see it: the error then names the earlier call whose index was out of range, not the caller."""
    w = _x(10, 4)
    bad = _i([3, 12])
    real_read = _index_check.raise_if_set

    def unread(device, message, op):  # as on a GPU: the kernel has not finished when the flag is read
        _index_check._pending.append((op, message))

    monkeypatch.setattr(_index_check, "raise_if_set", unread)
    embedding(bad, w)  # sets the flag; nobody has seen it
    embedding(_i([1, 2]), w)
    monkeypatch.setattr(_index_check, "raise_if_set", real_read)
    backends.active().synchronize()  # the kernels are done: the next read sees the flag
    with pytest.raises(_index_check.IndexOutOfRange, match="embedding: .*index 12 .*with size 10"):
        index_select(w, 0, _i([0]))  # a clean call sees the flag and names the bad one
    assert not _index_check.flag(DEV).item()
    monkeypatch.setattr(_index_check, "raise_if_set", unread)
    with pytest.raises(_index_check.IndexOutOfRange, match="index 12"):
        with workbench.use_ops():
            F.embedding(bad, w)
    monkeypatch.setattr(_index_check, "raise_if_set", real_read)
    index_select(w, 0, _i([0]))  # reported: the flag is clear again


def test_kept_calls_do_not_keep_their_indices_alive():
    """The calls kept to name a bad index hold their indices weakly: a CUDA graph's pool refuses a tensor
    that outlives the graph's call (a compiled decode step's copy of its token ids was one)."""
    w, x = _x(10, 4), _x(4, 5)
    calls = {
        "embedding, 2-D ids (a view inside the op)": lambda ids: embedding(ids, w),
        "gather": lambda ids: gather(w, 1, ids.reshape(1, 2).expand(10, 2)),
        "index_select": lambda ids: index_select(w, 0, ids.flatten()),
        "cross_entropy": lambda ids: cross_entropy(x[:2], ids.flatten()),
    }
    for name, call in calls.items():
        ids = _i([[1, 3]])
        held = weakref.ref(ids)
        call(ids)
        assert _index_check._pending, name
        del ids
        assert held() is None, f"{name}: a kept call holds its indices"


def test_an_error_whose_indices_are_freed_names_the_op(monkeypatch):
    w = _x(10, 4)
    workbench.ops.raise_pending()  # no earlier test's calls kept
    monkeypatch.setattr(
        _index_check, "raise_if_set", lambda device, message, op: _index_check._pending.append((op, message))
    )
    embedding(_i([[3, 12]]), w)  # sets the flag, unread; its ids are freed when the call returns
    monkeypatch.undo()
    backends.active().synchronize()
    with pytest.raises(
        _index_check.IndexOutOfRange, match="embedding, index_select: index out of range in self: .*freed"
    ):
        index_select(w, 0, _i([0]))
    assert not _index_check.flag(DEV).item()
