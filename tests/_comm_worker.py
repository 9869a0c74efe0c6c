"""One rank of a multi-process comm test (started by tests/test_comm.py with torchrun's environment).

Usage: python tests/_comm_worker.py SCENARIO OUT_DIR. Each rank writes OUT_DIR/rank<r>.json: a dict
from check name to {"ok": bool, "detail": str, "seconds": float} (bad-input checks also record the
exception class and message so the test can compare them across ranks).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

import torch

from workbench.comm import CollectiveError, Communicator
from workbench.comm.selfcheck import selfcheck

RANK, WORLD = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
TIMEOUT = 20.0  # seconds: a hang fails fast
results: dict[str, dict] = {}


def record(name: str, fn) -> None:
    t0 = time.perf_counter()
    try:
        detail = fn()
        entry = {"ok": True, "detail": detail or ""}
    except Exception as e:  # noqa: BLE001 - every failure becomes a result
        entry = {"ok": False, "detail": f"{type(e).__name__}: {e}\n{traceback.format_exc()}"}
    entry["seconds"] = time.perf_counter() - t0
    results[name] = entry


def cluster_layouts() -> dict[str, list[str]]:
    """Simulated clusters on CPU: each cluster gets its own gloo subgroup."""
    if WORLD == 2:
        return {"split": ["a", "b"]}
    return {
        "halves": ["a", "a", "b", "b"],
        "interleaved": ["a", "b", "a", "b"],
        "uneven": ["a", "b", "b", "c"],
    }


def check_selfcheck(comm: Communicator):
    df = selfcheck(comm)
    bad = df[~df["passed"]]
    assert len(df) > 50 and not len(bad), bad.to_string()


def random_inputs(seed: int, n: int, dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1000 + RANK)
    if dtype.is_floating_point:
        return torch.randn(n, generator=g).to(dtype)
    return torch.randint(-1000, 1000, (n,), generator=g, dtype=dtype)


def run_all(comm: Communicator, seed: int) -> dict[str, torch.Tensor]:
    """Every collective on random inputs; the results, keyed by operation."""
    out = {}
    n = WORLD * 5
    for dtype in (torch.float32, torch.int64):
        tag = str(dtype).replace("torch.", "")
        ops = ("sum", "avg", "max", "min") if dtype.is_floating_point else ("sum", "max", "min")
        for op in ops:
            t = random_inputs(seed, n, dtype)
            out[f"all_reduce {op} {tag}"] = comm.all_reduce(t, op)
            o = torch.empty(5, dtype=dtype)
            out[f"reduce_scatter {op} {tag}"] = comm.reduce_scatter(o, random_inputs(seed + 1, n, dtype), op)
        o = torch.empty(WORLD, 5, dtype=dtype)
        out[f"all_gather {tag}"] = comm.all_gather(o, random_inputs(seed + 2, 5, dtype))
        out[f"broadcast {tag}"] = comm.broadcast(random_inputs(seed + 3, n, dtype), src=WORLD - 1)
        o = torch.empty(n, dtype=dtype)
        out[f"all_to_all {tag}"] = comm.all_to_all(o, random_inputs(seed + 4, n, dtype))
    return out


def check_equal(flat: dict, hier: dict):
    assert flat.keys() == hier.keys()
    for k, want in flat.items():
        if want.is_floating_point():
            torch.testing.assert_close(hier[k], want, rtol=1e-5, atol=1e-5, msg=k)
        else:
            assert torch.equal(hier[k], want), k


def check_async(comm: Communicator):
    a, b = torch.full((6,), float(RANK)), torch.full((6,), 1.0)
    ha = comm.all_reduce(a, async_op=True)
    hb = comm.all_reduce(b, "max", async_op=True)
    c = comm.broadcast(torch.full((3,), float(RANK)), src=0)  # a blocking call while two are in flight
    assert ha.wait() is a and hb.wait() is b and ha.is_completed()
    assert torch.equal(a, torch.full((6,), float(sum(range(WORLD)))))
    assert torch.equal(b, torch.ones(6)) and torch.equal(c, torch.zeros(3))


# ------------------------------------------------------------------------------------------ bad input
def bad_cases(comm: Communicator) -> dict:
    last = WORLD - 1
    me = RANK

    def f32(n):
        return torch.ones(n)

    return {
        "size mismatch": lambda: comm.all_reduce(f32(5 if me == last else 4)),
        "dtype mismatch": lambda: comm.all_reduce(
            torch.ones(4, dtype=torch.int32 if me == last else torch.float32)
        ),
        "wrong device": lambda: comm.all_reduce(torch.empty(4, device="meta") if me == 1 else f32(4)),
        "unsupported op on one rank": lambda: comm.all_reduce(f32(4), "prod" if me == 0 else "sum"),
        "unsupported op everywhere": lambda: comm.reduce_scatter(f32(1), f32(WORLD), "median"),
        "avg on integers": lambda: comm.all_reduce(torch.ones(4, dtype=torch.int64), "avg"),
        "non-contiguous": lambda: comm.all_reduce(torch.ones(4, 2).t() if me == 0 else torch.ones(2, 4)),
        "not a tensor": lambda: comm.broadcast([1.0, 2.0] if me == last else f32(2), src=0),
        "reduce_scatter output size": lambda: comm.reduce_scatter(f32(2 if me == 0 else 1), f32(WORLD)),
        "all_gather output size": lambda: comm.all_gather(f32(WORLD * 2 + (me == last)), f32(2)),
        "all_to_all uneven": lambda: comm.all_to_all(f32(WORLD + 1), f32(WORLD + 1)),
        "broadcast src mismatch": lambda: comm.broadcast(f32(3), src=0 if me == 0 else 1),
        "broadcast src out of range": lambda: comm.broadcast(f32(3), src=WORLD),
        "different collectives": lambda: comm.all_reduce(f32(4)) if me == 0 else comm.broadcast(f32(4), 0),
        "send/recv dtype": lambda: (
            comm.send(f32(4), 1)
            if me == 0
            else comm.recv(torch.empty(4, dtype=torch.int64), 0)
            if me == 1
            else None
        ),
        "send/recv size": lambda: (
            comm.send(f32(4), 1) if me == 0 else comm.recv(torch.empty(3), 0) if me == 1 else None
        ),
    }


def check_bad(comm: Communicator, label: str) -> None:
    for name, call in bad_cases(comm).items():
        t0 = time.perf_counter()
        try:
            call()
            entry = {"raised": None, "message": ""}
        except Exception as e:  # noqa: BLE001 - the test compares what each rank raised
            entry = {"raised": type(e).__name__, "message": str(e)}
        entry["seconds"] = time.perf_counter() - t0
        entry["ok"] = True
        entry["detail"] = ""
        results[f"bad {label}: {name}"] = entry
    x = torch.full((4,), 1.0)
    record(
        f"usable after bad input {label}",
        lambda: (comm.all_reduce(x), torch.testing.assert_close(x, torch.full((4,), float(WORLD))))[-1],
    )


def check_local_only(comm: Communicator) -> None:
    """validate=False: a problem every rank has raises at once, without any exchange."""
    comm.validate = False
    try:
        comm.all_reduce(torch.ones(4), "prod")
    except CollectiveError as e:
        assert "expected one of ['sum', 'avg', 'max', 'min'], got 'prod'" in str(e), e
    else:
        raise AssertionError("no error")
    finally:
        comm.validate = True


# ------------------------------------------------------------------------------------------ scenarios
def scenario_collectives() -> None:
    flat = Communicator("cpu", timeout=TIMEOUT)
    record(
        "flat topology",
        lambda: (
            None
            if (not flat.hierarchical and flat.world_size == WORLD and flat.collective == "gloo")
            else 1 / 0
        ),
    )
    record("flat selfcheck", lambda: check_selfcheck(flat))
    record("flat async", lambda: check_async(flat))
    reference = run_all(flat, seed=7)
    for label, keys in cluster_layouts().items():
        hier = Communicator("cpu", cluster=keys[RANK], timeout=TIMEOUT)
        want = [[r for r in range(WORLD) if keys[r] == k] for k in dict.fromkeys(keys)]
        record(
            f"{label} topology",
            lambda h=hier, w=want: (
                None if (h.hierarchical and [list(c.ranks) for c in h.topology.clusters] == w) else 1 / 0
            ),
        )
        record(f"{label} selfcheck", lambda h=hier: check_selfcheck(h))
        record(f"{label} equals flat", lambda h=hier: check_equal(reference, run_all(h, seed=7)))
        record(f"{label} async", lambda h=hier: check_async(h))
        if label in ("split", "halves"):
            check_bad(hier, label)
    check_bad(flat, "flat")
    record("validate off: local error", lambda: check_local_only(flat))
    flat.close()


def scenario_timeout() -> None:
    comm = Communicator("cpu", timeout=2.0)  # seconds
    if RANK == 0:
        record("missing peer times out", lambda: comm.all_reduce(torch.ones(4)))
    else:
        time.sleep(4.5)  # never joins: rank 0 must fail by its timeout, not wait for us


if __name__ == "__main__":
    scenario, out_dir = sys.argv[1], sys.argv[2]
    try:
        {"collectives": scenario_collectives, "timeout": scenario_timeout}[scenario]()
    finally:
        with open(os.path.join(out_dir, f"rank{RANK}.json"), "w") as f:
            json.dump(results, f)
    os._exit(0)  # skip process-group teardown: after the timeout scenario the peers are gone
