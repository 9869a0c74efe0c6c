"""workbench.comm: every collective on 2 and 4 gloo ranks, flat and with simulated clusters, bad input
on every rank, timeouts, the benchmark under real torchrun, and the pure helpers.

Multi-rank tests start processes on 127.0.0.1 with torchrun's environment (tests/_comm_worker.py) once
per scenario and assert on what each rank recorded; every launch has a wall-clock limit so a hang
fails the test instead of stalling CI.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest
import torch

from workbench.comm import (
    Topology,
    collective_backend,
    validate,
)
from workbench.comm import bench as cb

# one test process runs this module: each world size's collectives job (the module fixture) runs once
pytestmark = pytest.mark.xdist_group("test_comm")

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("_comm_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_env(rank: int, world: int, port: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "GROUP_RANK")}
    env.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    return env


def launch(world: int, scenario: str, tmp_path: Path, limit: float = 120.0) -> list[dict]:
    """Run the worker on `world` ranks; each rank's recorded results, in rank order."""
    port = free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), scenario, str(tmp_path)],
            env=rank_env(r, world, port),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in range(world)
    ]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=limit)[0])
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail(f"{scenario} on {world} ranks did not finish in {limit} s (a hang)")
    out = []
    for r, p in enumerate(procs):
        path = tmp_path / f"rank{r}.json"
        assert path.exists(), f"rank {r} exited {p.returncode} without results:\n{logs[r][-3000:]}"
        out.append(json.loads(path.read_text()))
    return out


@pytest.fixture(scope="module", params=[2, 4], ids=["2ranks", "4ranks"])
def collectives(request, tmp_path_factory):
    return request.param, launch(request.param, "collectives", tmp_path_factory.mktemp(f"c{request.param}"))


def _names(results: list[dict], prefix: str) -> list[str]:
    return sorted(k for k in results[0] if k.startswith(prefix))


def _assert_ok(results: list[dict], name: str) -> None:
    for rank, res in enumerate(results):
        assert name in res, f"rank {rank} did not record {name!r}"
        assert res[name]["ok"], f"rank {rank}: {name}: {res[name]['detail']}"


@pytest.mark.parametrize(
    "check", ["flat topology", "flat selfcheck", "flat async", "validate off: local error"]
)
def test_flat(collectives, check):
    _assert_ok(collectives[1], check)


@pytest.mark.parametrize("check", ["topology", "selfcheck", "equals flat", "async"])
def test_hierarchical(collectives, check):
    world, results = collectives
    layouts = ["split"] if world == 2 else ["halves", "interleaved", "uneven"]
    for layout in layouts:
        _assert_ok(results, f"{layout} {check}")


BAD = {  # case -> what the message must say (every rank raises CollectiveError with the same text)
    "size mismatch": r"ranks disagree on the element count",
    "dtype mismatch": r"ranks disagree on the dtype \(.*int32",
    "wrong device": r"rank 1: tensor: expected a tensor on cpu, got one on meta",
    "unsupported op on one rank": r"rank 0: op: expected one of \['sum', 'avg', 'max', 'min'\], got 'prod'",
    "unsupported op everywhere": r"got 'median'",
    "avg on integers": r"op: 'avg' needs a floating dtype, got torch.int64",
    "non-contiguous": r"rank 0: tensor: expected a contiguous tensor",
    "not a tensor": r"tensor: expected a torch.Tensor, got list",
    "reduce_scatter output size": r"rank 0: output: expected \d+ / \d ranks elements, got 2",
    "all_gather output size": r"output: expected \d ranks x 2 elements",
    "all_to_all uneven": r"input: expected a multiple of \d ranks elements",
    "broadcast src mismatch": r"ranks disagree on the root rank",
    "broadcast src out of range": r"src: expected a rank in \[0, \d\), got \d",
    "different collectives": r"ranks disagree on the collective \(rank 0: all_reduce, rank 1: broadcast",
    "send/recv dtype": r"ranks disagree on the dtype \(rank 0: float32, rank 1: int64\)",
    "send/recv size": r"ranks disagree on the element count \(rank 0: 4, rank 1: 3\)",
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_raises_on_every_rank(collectives, case):
    world, results = collectives
    for label in ["flat", "split" if world == 2 else "halves"]:
        name = f"bad {label}: {case}"
        ranks = [0, 1] if case.startswith("send/recv") else range(world)
        entries = [results[r][name] for r in ranks]
        assert {e["raised"] for e in entries} == {"CollectiveError"}, (label, entries)
        # each rank names its own call first ("all_reduce: ..."); the rest is the same everywhere
        assert len({e["message"].split(": ", 1)[1] for e in entries}) == 1, (
            f"{label}: messages differ: {entries}"
        )
        assert re.search(BAD[case], entries[0]["message"]), entries[0]["message"]
        assert max(e["seconds"] for e in entries) < 5, entries
        _assert_ok(results, f"usable after bad input {label}")


def test_missing_rank_fails_by_timeout(tmp_path):
    results = launch(2, "timeout", tmp_path, limit=60)
    entry = results[0]["missing peer times out"]
    assert not entry["ok"] and entry["detail"].startswith("RuntimeError"), entry["detail"][:500]
    assert 1.5 < entry["seconds"] < 5, entry["seconds"]  # the 2 s timeout, not the peer leaving at 4.5 s


def test_comm_bench_under_torchrun(tmp_path):
    """The CLI as users run it: torchrun, 2 ranks, tiny sizes; rank 0 writes CSV, PNG and store rows."""
    port = free_port()
    csv, png, store = tmp_path / "c.csv", tmp_path / "c.png", tmp_path / "r.db"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={port}",
        "-m",
        "workbench.cli",
        "comm-bench",
        "--devices",
        "cpu",
        "--max-bytes",
        "4K",
        "--factor",
        "4",
        "--reps",
        "2",
        "--min-time",
        "0.001",
        "--checked",
        "--selfcheck",
        "--timeout",
        "20",
        "--no-progress",
        "--csv",
        str(csv),
        "--png",
        str(png),
        "--store",
        str(store),
    ]
    env = rank_env(0, 1, port)
    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k)
    proc = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "selfcheck (2x cpu/gloo [0,1]): 192 passed, 0 failed" in proc.stdout
    df = pd.read_csv(csv)
    assert len(df) == 5 * 2 * 3  # collectives x sizes (1K, 4K) x impls
    assert set(df["impl"]) == set(cb.IMPLS) and set(df["op"]) == set(cb.COLLECTIVES)
    assert (df["busbw_gbps"] > 0).all() and (df["ms"] > 0).all()
    assert df.loc[df["impl"] == "raw", "overhead"].isna().all()
    assert (df.loc[df["impl"] != "raw", "overhead"] > 0).all()
    assert {"commit", "torch", "device", "command", "clusters"} <= set(df.columns)
    assert png.stat().st_size > 10_000
    from workbench.store import ResultStore

    stored = ResultStore(store).latest("comm")
    assert len(stored) == len(df) and set(stored["op"]) == set(cb.COLLECTIVES)


# ------------------------------------------------------------------------------------------ single process
def test_bus_factors_follow_nccl_tests():
    assert cb.bus_factor("all_reduce", 8) == pytest.approx(2 * 7 / 8)
    assert cb.bus_factor("all_gather", 4) == cb.bus_factor("reduce_scatter", 4) == 0.75
    assert cb.bus_factor("all_to_all", 2) == 0.5 and cb.bus_factor("broadcast", 8) == 1.0
    with pytest.raises(ValueError, match="collective: expected one of"):
        cb.bus_factor("gather", 2)


def test_sizes():
    assert (
        cb.size_range("1K", "1G")[::10] == [1 << 10, 1 << 20, 1 << 30]
        and len(cb.size_range("1K", "1G")) == 21
    )
    assert cb.size_range(1024, "16K", factor=4) == [1024, 4096, 16384]
    assert cb.parse_size("64MB") == 64 << 20 and cb.human(3 << 20) == "3M" and cb.human(1000) == "1000B"
    with pytest.raises(ValueError, match="size: expected a byte count"):
        cb.parse_size("lots")
    with pytest.raises(ValueError, match="max_bytes: expected >= min_bytes"):
        cb.size_range("1M", "1K")


def test_buffers_follow_nccl_tests_sizes():
    out, inp, moved = cb._buffers("all_gather", 4096, 4, torch.float32, torch.device("cpu"))
    assert (out.numel(), inp.numel(), moved) == (1024, 256, 4096)
    out, inp, moved = cb._buffers("reduce_scatter", 4096, 4, torch.float32, torch.device("cpu"))
    assert (out.numel(), inp.numel(), moved) == (256, 1024, 4096)
    a, b, moved = cb._buffers("all_reduce", 10, 4, torch.float32, torch.device("cpu"))
    assert b is None and a.numel() == 4 and moved == 16  # at least one element per rank


def test_collective_backend(monkeypatch):
    monkeypatch.delenv("WORKBENCH_COLLECTIVE", raising=False)
    assert collective_backend("cpu") == "gloo"
    if not __import__("importlib").util.find_spec("flagcx"):
        assert collective_backend("cuda") == "nccl" and collective_backend("mlu") == "cncl"
    monkeypatch.setenv("WORKBENCH_COLLECTIVE", "mpi")
    assert collective_backend("cuda") == "mpi"
    monkeypatch.delenv("WORKBENCH_COLLECTIVE")
    with pytest.raises(ValueError, match="device: expected a device type in"):
        collective_backend("tpu")


def test_topology_from_ranks():
    topo = Topology.from_ranks(
        [("x", "cpu", "gloo"), ("y", "cuda", "nccl"), ("x", "cpu", "gloo"), ("y", "cuda", "nccl")]
    )
    assert topo.hierarchical and [c.ranks for c in topo.clusters] == [(0, 2), (1, 3)]
    assert topo.leaders == (0, 1) and topo.cluster_of(3).device_type == "cuda" and topo.world_size == 4
    assert not Topology.from_ranks([("cpu", "cpu", "gloo")] * 3).hierarchical
    with pytest.raises(ValueError, match="cluster: ranks of cluster 'x' must share one device type"):
        Topology.from_ranks([("x", "cpu", "gloo"), ("x", "cuda", "nccl")])


def test_call_description_round_trips():
    call = validate.Call(
        "reduce_scatter",
        {"output": torch.empty(2), "input": torch.empty(8)},
        reduce="max",
        problems=["output: something é"],
    )
    row = validate.decode(validate.encode(call, seq=42))
    assert row["seq"] == 42 and validate.OPS[row["op"]] == "reduce_scatter"
    assert validate.REDUCE_OPS[row["reduce"]] == "max" and (row["numel_in"], row["numel_out"]) == (2, 2)
    assert row["problem"] == 1 and row["message"] == "output: something é"


def test_local_problems_name_the_argument():
    cpu = torch.device("cpu")
    call = validate.Call("all_gather", {"output": torch.empty(7), "input": torch.empty(2, dtype=torch.int64)})
    problems = validate.local_problems(call, cpu, world_size=4, rank=0)
    assert any("dtypes: expected one dtype for all tensors" in p for p in problems)
    assert any("output: expected 4 ranks x 2 elements, got 7" in p for p in problems)
    assert validate.local_problems(validate.Call("send", {"tensor": torch.empty(1)}, root=0), cpu, 2, 0) == [
        "dst: expected another rank than this one (0)"
    ]
    assert (
        validate.local_problems(
            validate.Call("all_reduce", {"tensor": torch.empty(3)}, reduce="sum"), cpu, 2, 0
        )
        == []
    )


def test_plot_and_summary():
    rows = []
    for impl, ms in (("raw", 1.0), ("comm", 1.01)):
        for b in (1 << 10, 1 << 20, 1 << 30):
            rows.append(
                {
                    "op": "all_reduce",
                    "impl": impl,
                    "case": cb.human(b),
                    "bytes": b,
                    "ms": ms,
                    "busbw_gbps": b / ms / 1e6,
                    "overhead": 1.01 if impl == "comm" else float("nan"),
                    "device": "test",
                    "commit": "abc",
                }
            )
    df = pd.DataFrame(rows)
    fig = cb.plot_busbw(df, cb.plot_title(df, "torchrun ..."))
    assert len(fig.axes) == 2 and "test" in fig._suptitle.get_text()
    s = cb.summary(df)
    assert s.loc[s["impl"] == "comm", "max_overhead_ge_1M"].item() == 1.01
    assert s.loc[s["impl"] == "raw", "largest"].item() == "1G"


def test_notebook_is_committed_without_outputs():
    nb = json.loads((ROOT / "notebooks" / "comm.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    assert any("parameters" in c["metadata"].get("tags", []) for c in code)
