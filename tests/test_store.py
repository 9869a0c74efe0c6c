"""ResultStore on SQLite and on a real PostgreSQL server: concurrent writers, a killed writer, migration of an
old file, baselines per device, bad locations, newer schemas, read-only opening, non-finite numbers."""

import math
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from pg_server import PASSWORD, PostgresServer

from workbench.store import ResultStore, StoreError, compare, schema

REPO = Path(__file__).resolve().parents[1]
META = {
    "device": "dev-a",
    "backend": "cpu",
    "torch": "t",
    "triton": "tr",
    "commit": "abc",
    "dirty": False,
    "timestamp": "2026-01-01T00:00:00+00:00",
    "host": "h",
}


@pytest.fixture(scope="module")
def postgres():
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path):
    """A fresh store location on each engine."""
    if request.param == "sqlite":
        return str(tmp_path / "r.db")
    return request.getfixturevalue("postgres").new_database()


def _row(op, ms, spread=0.01, case="c", impl="generic", dtype="bf16"):
    return {
        "op": op,
        "impl": impl,
        "case": case,
        "dtype": dtype,
        "ms": ms,
        "ms_p20": ms - spread / 2,
        "ms_p80": ms + spread / 2,
    }


def test_append_and_query(location):
    store = ResultStore(location)
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


def test_baseline_is_chosen_per_device(location):
    store = ResultStore(location)
    h100 = [store.append([_row("add", ms)], "bench", {**META, "device": "H100"}) for ms in (1.0, 1.1)]
    h200 = [store.append([_row("add", ms)], "bench", {**META, "device": "H200"}) for ms in (0.5, 0.6)]
    store.set_baseline(h100[1])
    store.set_baseline(h200[0])
    store.set_baseline(h200[1])  # moves the mark on H200 only
    assert store.baseline("bench", "H100")["ms"].tolist() == [1.1]
    assert store.baseline("bench", "H200")["ms"].tolist() == [0.6]
    marked = store.runs("bench").set_index("run_id")["baseline"]
    assert marked.sum() == 2 and marked[h100[1]] == 1 and marked[h200[1]] == 1
    with pytest.raises(StoreError, match="set_baseline: no run 'unknown'"):
        store.set_baseline("unknown")


def test_compare_is_noise_aware():
    base = pd.DataFrame([_row("add", 1.0), _row("mm", 1.0, spread=0.5), _row("exp", 1.0)])
    run = pd.DataFrame([_row("add", 1.2), _row("mm", 1.2, spread=0.5), _row("exp", 1.02)])
    flags = compare(run, base, threshold=0.05).set_index("op")["regressed"]
    assert flags["add"]  # 20% slower, far beyond the spread
    assert not flags["mm"]  # 20% slower but within the measured noise
    assert not flags["exp"]  # 2% slower: under the threshold


def _writer(location: str, tag: str, rows: int | None) -> subprocess.Popen:
    """A separate process that writes `rows` rows one transaction each (None: until killed)."""
    script = textwrap.dedent(f"""
        import itertools
        from workbench.store import ResultStore
        store = ResultStore({location!r})
        run = store.start_run("bench", {{**{META!r}, "host": {tag!r}}})
        for i in itertools.count() if {rows!r} is None else range({rows!r}):
            store.add_row(run, {{"op": "{tag}%d" % i, "ms": float(i)}})
        store.finish_run(run)
    """)
    return subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(REPO)})


def _rows_by_host(store: ResultStore) -> dict:
    runs = store.runs("bench")
    return {r.host: (r.status, store.rows(r.run_id)["op"].tolist()) for r in runs.itertuples()}


def test_two_processes_write_500_rows_each_at_once(location):
    ResultStore(location)
    writers = [_writer(location, tag, 500) for tag in ("a", "b")]
    assert [w.wait(120) for w in writers] == [0, 0]
    found = _rows_by_host(ResultStore(location))
    for tag in ("a", "b"):
        assert found[tag] == ("done", [f"{tag}{i}" for i in range(500)])


def test_kill_9_of_a_writer_leaves_the_store_consistent(location):
    ResultStore(location)
    victim = _writer(location, "killed", None)
    store = ResultStore(location)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # let it get going: started and some rows in
        runs = store.runs("bench")
        if len(runs) and len(store.rows(runs["run_id"].iloc[0])) >= 30:
            break
        time.sleep(0.1)
    survivor = _writer(location, "survivor", 200)
    time.sleep(0.5)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(30) == -signal.SIGKILL
    assert survivor.wait(120) == 0
    found = _rows_by_host(store)
    assert found["survivor"] == ("done", [f"survivor{i}" for i in range(200)])
    status, ops = found["killed"]
    assert status == "running" and len(ops) >= 30  # never finished, and says so
    assert ops == [f"killed{i}" for i in range(len(ops))]  # every committed row, in order, no gap
    store.append([_row("add", 1.0)], "bench", META)  # nobody holds a lock any more
    if not location.startswith("postgresql"):
        with sqlite3.connect(location) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_old_sqlite_file_is_migrated_in_place(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript((Path(__file__).parent / "data" / "store_v1.sql").read_text())
    store = ResultStore(path)
    runs = store.runs()
    assert runs["kind"].tolist() == ["bench", "bench", "baseline", "check"]  # insertion order kept
    assert runs["baseline"].tolist() == [0, 1, 0, 0] and runs["status"].iloc[-1] == "running"
    assert store.baseline("bench", "NVIDIA H100 80GB HBM3")["ms"].tolist() == [1.2]
    exp = store.history("bench", op="exp").iloc[0]
    assert exp["ms"] == math.inf and exp["ms_p20"] == -math.inf and pd.isna(exp["ms_p80"])
    assert exp["error"] == "Infinity and NaN in a string"
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(schema.SCHEMA_VERSION,)]
        assert db.execute(
            "SELECT count(*) FROM rows WHERE json_extract(data, '$.ms') = 'inf'"
        ).fetchone() == (1,)
        assert db.execute("SELECT count(*) FROM rows WHERE json_valid(data)").fetchone() == (5,)
    fresh = sa.create_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    ResultStore(tmp_path / "fresh.db")
    migrated = sa.create_engine(f"sqlite:///{path}")

    def layout(engine):
        inspector = sa.inspect(engine)
        return {
            t: [(c["name"], str(c["type"])) for c in inspector.get_columns(t)]
            for t in inspector.get_table_names()
        }

    assert layout(migrated) == layout(fresh)  # one schema, however it came about
    store.append([_row("add", 2.0)], "bench", META)
    assert ResultStore(path).runs()["kind"].tolist()[-1] == "bench"


def test_non_finite_numbers_round_trip_and_stay_queryable(location):
    store = ResultStore(location)
    import numpy as np

    row = {
        "op": "x",
        "ms": math.inf,
        "low": -math.inf,
        "err": math.nan,
        "f32": np.float32("inf"),
        "text": "nan",
        "none": None,
        "ok": 1.5,
        "flag": np.bool_(True),
    }
    run = store.append([row], "bench", META)
    back = store.rows(run).iloc[0]
    assert back["ms"] == math.inf and back["low"] == -math.inf and math.isnan(back["err"])
    assert back["f32"] == math.inf and back["text"] == "nan" and back["none"] is None and back["ok"] == 1.5
    assert store.rows(run)["flag"].dtype == bool and back["flag"]  # numpy's bool comes back a bool
    engine = sa.create_engine(
        location.replace("postgresql://", "postgresql+psycopg://")
        if location.startswith("postgresql")
        else f"sqlite:///{location}"
    )
    with engine.connect() as conn:
        if location.startswith("postgresql"):
            query = "SELECT (data->>'ms')::float8, (data->>'err')::float8, data->>'text' FROM rows"
            ms, err, text = conn.exec_driver_sql(query).one()
            assert ms == math.inf and math.isnan(err) and text == "nan"
        else:
            query = "SELECT json_extract(data, '$.ms'), json_extract(data, '$.ok') FROM rows"
            assert conn.exec_driver_sql(query).one() == ("inf", 1.5)
        assert conn.execute(sa.select(schema.rows.c.nonfinite)).scalar() == ["ms", "low", "err", "f32"]


def test_read_only_file_opens_for_reading(tmp_path):
    path = tmp_path / "r.db"
    run = ResultStore(path).append([_row("add", 1.0)], "bench", META)
    path.chmod(0o444)
    store = ResultStore(path, read_only=True)
    assert store.rows(run)["ms"].tolist() == [1.0] and "read_only=True" in repr(store)
    with pytest.raises(StoreError, match="opened read-only"):
        store.append([_row("add", 2.0)], "bench", META)
    with pytest.raises(StoreError, match="unable to open"):
        ResultStore(tmp_path / "missing.db", read_only=True)
    if os.geteuid() != 0:  # root writes anyway, so only a user sees the file as read-only
        assert ResultStore(path).read_only


def test_a_file_that_is_no_store_is_refused_in_one_line(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("not a database\n" * 100)
    with pytest.raises(StoreError, match=f"store {path}: file is not a database$"):
        ResultStore(path)
    with pytest.raises(StoreError, match="cannot create its folder"):
        ResultStore(path / "sub" / "r.db")  # a folder below a file


def test_newer_schema_is_refused_with_both_versions(location):
    ResultStore(location)
    url = (
        location.replace("postgresql://", "postgresql+psycopg://")
        if location.startswith("postgresql")
        else f"sqlite:///{location}"
    )
    with sa.create_engine(url).begin() as conn:
        conn.execute(schema.schema_version.update().values(version=99, written_by="9.9.9"))
    with pytest.raises(StoreError) as info:
        ResultStore(location)
    message = str(info.value)
    assert (
        "schema version 99" in message
        and "9.9.9" in message
        and f"schema version {schema.SCHEMA_VERSION}" in message
        and PASSWORD not in message
    )


def test_tuning_cache(location):
    store = ResultStore(location)
    ident = {
        "device": "H100",
        "kernel": "ops.rms_norm._kernel",
        "source_hash": "abc123",
        "key": "4096-bf16",
        "triton": "3.6.0",
        "workbench": "0.1.0",
    }
    assert store.get_tuning(**ident) is None
    store.put_tuning(**ident, config={"BLOCK": 1024, "num_warps": 4})
    store.put_tuning(**ident, config={"BLOCK": 2048, "num_warps": 8})  # replaces
    store.put_tuning(**{**ident, "device": "H200"}, config={"BLOCK": 512})
    assert store.get_tuning(**ident) == {"BLOCK": 2048, "num_warps": 8}
    assert store.get_tuning(**{**ident, "triton": "3.7.0"}) is None  # stale: another triton
    assert store.get_tuning(**{**ident, "source_hash": "def456"}) is None  # stale: changed source
    assert len(store.tuning_rows()) == 2
    assert store.clear_tuning("H200") == 1 and store.clear_tuning() == 1 and store.tuning_rows().empty


def test_credentials_are_never_printed(postgres):
    store = ResultStore(postgres.new_database())
    assert PASSWORD not in repr(store) and PASSWORD not in store.location and "***" in store.location
    with pytest.raises(StoreError) as info:
        ResultStore(postgres.url(password="wrong-Secret-9"))
    assert "wrong-Secret-9" not in str(info.value) and "password authentication failed" in str(info.value)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("host", ["127.0.0.1", "10.255.255.1"])  # a closed port; an address nobody answers
def test_unreachable_url_fails_fast_in_one_line(host):
    port = _closed_port()
    start = time.monotonic()
    with pytest.raises(StoreError) as info:
        ResultStore(f"postgresql://me:{PASSWORD}@{host}:{port}/db")
    message = str(info.value)
    assert time.monotonic() - start < 10
    assert "\n" not in message and f"cannot connect to {host}:{port}" in message and PASSWORD not in message


def test_cli_reports_a_bad_store_in_one_line():
    url = f"postgresql://me:{PASSWORD}@127.0.0.1:9/db"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "workbench.cli",
            "bench",
            "add",
            "--cases",
            "quick",
            "--dtype",
            "fp32",
            "--store",
            url,
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "cannot connect to 127.0.0.1:9" in result.stderr
    assert PASSWORD not in result.stderr + result.stdout and "Traceback" not in result.stderr
