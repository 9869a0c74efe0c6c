"""ResultStore: durable, append-only, two concurrent writers, a killed run keeps its rows."""

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap

import pandas as pd

from workbench.profiling.store import ResultStore, compare

META = {"device": "dev-a", "backend": "cpu", "torch": "t", "triton": "tr", "commit": "abc", "dirty": False,
        "timestamp": "2026-01-01T00:00:00+00:00", "host": "h"}


def _row(op, ms, spread=0.01, case="c", impl="generic", dtype="bf16"):
    return {"op": op, "impl": impl, "case": case, "dtype": dtype, "ms": ms, "ms_p20": ms - spread / 2,
            "ms_p80": ms + spread / 2}


def test_append_and_query(tmp_path):
    store = ResultStore(tmp_path / "r.db")
    first = store.append([_row("add", 1.0), _row("mm", 2.0)], "bench", META)
    second = store.append([_row("add", 1.5), _row("mm", 2.0)], "bench", {**META, "timestamp": "2026-01-02"})
    assert list(store.runs("bench")["run_id"]) == [first, second]
    assert store.latest("bench")["ms"].tolist() == [1.5, 2.0]
    assert store.baseline("bench", "dev-a")["ms"].tolist() == [1.0, 2.0]  # oldest finished run
    store.set_baseline(second)
    assert store.baseline("bench", "dev-a")["run_id"].iloc[0] == second
    assert store.latest("bench", device="other").empty
    hist = store.history("bench", op="add")
    assert hist["ms"].tolist() == [1.0, 1.5] and hist["commit"].tolist() == ["abc", "abc"]


def test_compare_is_noise_aware():
    base = pd.DataFrame([_row("add", 1.0), _row("mm", 1.0, spread=0.5), _row("exp", 1.0)])
    run = pd.DataFrame([_row("add", 1.2), _row("mm", 1.2, spread=0.5), _row("exp", 1.02)])
    flags = compare(run, base, threshold=0.05).set_index("op")["regressed"]
    assert flags["add"]  # 20% slower, far beyond the spread
    assert not flags["mm"]  # 20% slower but within the measured noise
    assert not flags["exp"]  # 2% slower: under the threshold


def _writer(path, tag, n):
    store = ResultStore(path)
    run = store.start_run("bench", {**META, "host": tag})
    for i in range(n):
        store.add_row(run, _row(f"{tag}{i}", float(i)))
    store.finish_run(run)


def test_two_concurrent_writers(tmp_path):
    path = str(tmp_path / "r.db")
    ResultStore(path)
    procs = [mp.get_context("spawn").Process(target=_writer, args=(path, tag, 150)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = ResultStore(path)
    runs = store.runs("bench")
    assert len(runs) == 2 and set(runs["status"]) == {"done"}
    for run_id in runs["run_id"]:
        assert len(store.rows(run_id)) == 150


def test_killed_run_keeps_its_rows(tmp_path):
    path = tmp_path / "r.db"
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {os.getcwd()!r})
        from workbench.profiling.store import ResultStore
        store = ResultStore({str(path)!r})
        run = store.start_run("bench", {META!r})
        for i in range(5):
            store.add_row(run, {{"op": "op%d" % i, "ms": float(i)}})
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    result = subprocess.run([sys.executable, "-c", script], timeout=60)
    assert result.returncode == -signal.SIGKILL
    store = ResultStore(path)
    runs = store.runs("bench")
    assert runs["status"].tolist() == ["running"]  # never finished, and says so
    assert store.rows(runs["run_id"].iloc[0])["op"].tolist() == [f"op{i}" for i in range(5)]
