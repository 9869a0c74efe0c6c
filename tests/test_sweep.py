"""Sweeps over devices: ops balanced by cost, results merged, a crashed or hung worker reported while the
others finish (on cpu, with N workers on the interpreter)."""

import os
import sys
import textwrap
import time

import pytest

from workbench import backends, sweep
from workbench.store import ResultStore


def test_balance_puts_the_longest_ops_first_on_the_least_loaded_worker():
    workers = [sweep.Worker("cpu#0", {}), sweep.Worker("cpu#1", {})]
    sweep.balance({"a": 7.0, "b": 5.0, "c": 4.0, "d": 3.0, "e": 1.0}, workers)
    assert [w.ops for w in workers] == [["a", "d"], ["b", "c", "e"]]
    assert [w.estimate_s for w in workers] == [10.0, 10.0]


def test_costs_come_from_the_store_else_from_the_case_count(tmp_path):
    backend = backends.active()
    store = ResultStore(tmp_path / "r.db")
    params = {"cases": ["quick"], "dtypes": ["fp32"]}
    static = sweep.costs("check", ["add", "exp"], params, store, backend.properties().name)
    assert static == {op: float(sweep.static_cost("check", op, params)) for op in ("add", "exp")}
    store.append([{"command": "check", "op": "add", "seconds": 30.0}], kind=sweep.SWEEP_KIND)
    measured = sweep.costs("check", ["add", "exp"], params, store, backend.properties().name)
    per_case = 30.0 / sweep.static_cost("check", "add", params)
    assert measured == {"add": 30.0, "exp": sweep.static_cost("check", "exp", params) * per_case}
    assert (
        sweep.costs("bench", ["add"], params, store, backend.properties().name)["add"] != 30.0
    )  # other kind


def test_device_lists_are_checked():
    backend = backends.active()
    assert [w.device_id for w in sweep.slots("cpu:3", backend)] == ["cpu#0", "cpu#1", "cpu#2"]
    for bad in ("0,1", "cpu:0", "gpu"):
        with pytest.raises(ValueError, match="--devices"):
            sweep.slots(bad, backend)


# cpu#0 finishes its ops, cpu#1 finishes one op and is killed, cpu#2 hangs: stand-ins for real workers.
FAKE_WORKER = textwrap.dedent("""
    import json, os, signal, sys, time
    job, out = json.loads(sys.argv[sys.argv.index("--job") + 1]), sys.argv[sys.argv.index("--out") + 1]
    device = os.environ["WORKBENCH_SWEEP_DEVICE"]
    if device == "cpu#2":
        print("compiling forever", flush=True)
        time.sleep(600)
    with open(out, "a") as f:
        for op in job["params"]["ops"]:
            row = {"op": op, "case": "c", "dtype": "fp32", "passed": True, "skipped": "", "error": "",
                   "rel_err": "inf"}
            f.write(json.dumps({"op": op, "seconds": 0.5, "rows": [row], "nonfinite": [["rel_err"]]}) + "\\n")
            f.flush()
            if device == "cpu#1":
                print("Segmentation fault in the kernel", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_crashed_and_a_hung_worker_are_reported_while_the_other_finishes(tmp_path):
    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE_WORKER)
    store = ResultStore(tmp_path / "r.db")
    ops = ["add", "mul", "exp", "silu", "sin", "neg"]
    start = time.monotonic()
    df, workers = sweep.run(
        "check",
        "cpu:3",
        {"ops": ops, "cases": ["quick"], "dtypes": ["fp32"]},
        store=store,
        timeout=5,
        worker_command=[sys.executable, str(script)],
        log=lambda line: None,
    )
    assert time.monotonic() - start < 30
    status = {w.device_id: w for w in workers}
    assert status["cpu#0"].status == "ok"
    assert status["cpu#1"].status == "crashed" and "exit -9" in status["cpu#1"].detail
    assert "Segmentation fault" in status["cpu#1"].detail
    assert status["cpu#2"].status == "timeout" and "compiling forever" in status["cpu#2"].detail
    assert df["op"].tolist() == ops and df["device_id"].notna().all()  # one row per op, in order
    by_op = df.set_index("op")
    for w in workers:
        done = w.ops if w.status == "ok" else w.ops[:1] if w.status == "crashed" else []
        for op in w.ops:
            row = by_op.loc[op]
            assert row["device_id"] == w.device_id
            if op in done:
                assert row["passed"] and row["error"] == "" and row["rel_err"] == float("inf")
            else:
                assert not row["passed"] and row["error"].startswith(f"worker {w.device_id} {w.status}")
    timed = store.history(sweep.SWEEP_KIND)
    assert sorted(timed["op"]) == sorted(status["cpu#0"].ops + status["cpu#1"].ops[:1])


def test_regression_check_and_bench_over_two_cpu_workers(tmp_path, monkeypatch):
    from workbench import regression
    from workbench.profiling import failures

    monkeypatch.setenv("WORKBENCH_STORE", str(tmp_path / "store.db"))
    cfg = regression.configure(
        backend="cpu",
        ops="add,exp,mul",
        check_dtypes="fp32",
        rep_ms=1.0,
        seed=3,
        devices="cpu:2",
        output_dir=str(tmp_path / "out"),
    )
    check_df = regression.run_check(cfg)
    bench_df = regression.run_bench(cfg)
    assert set(check_df["device_id"]) == set(bench_df["device_id"]) == {"cpu#0", "cpu#1"}
    assert failures(check_df).empty and (bench_df["error"].fillna("") == "").all()
    assert sorted(set(check_df["op"])) == ["add", "exp", "mul"]
    devices = regression.devices_summary(check_df, bench_df).set_index("device_id")
    assert devices["ops"].sum() == 3 and devices["check_failed"].sum() == 0
    assert devices["check_rows"].sum() == len(check_df) and devices["bench_rows"].sum() == len(bench_df)
    timings = ResultStore(cfg.store).history(sweep.SWEEP_KIND)
    assert sorted(timings["command"]) == ["bench"] * 3 + ["check"] * 3 and (timings["seconds"] > 0).all()
    assert os.environ["WORKBENCH_STORE"] == cfg.store
