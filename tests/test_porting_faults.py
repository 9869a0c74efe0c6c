"""Faults against the porting pipeline: promotions killed at every step, concurrent promotions, candidates
that try to forge their verdict or write into the package, callers killed under a hanging worker, escaping
grandchildren, stale temporary directories, endless output and file names that try to become code.

Promotion steps are exercised in a process whose worker runs are replaced by canned results (the
transaction does not depend on them); one promotion runs end to end with real workers. Processes to be killed
are forked from this one, so that they start without importing anything again."""

import ast
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
import tracemalloc
from pathlib import Path

import pandas as pd
import pytest
from helpers import CANDIDATES, REPO, repo_copy, shared_cache

from workbench.cli import main
from workbench.ops import spec as opspec
from workbench.porting import PromotionError, promote, promotion, worker
from workbench.porting.candidate import CandidateError, check_op_name
from workbench.profiling import correctness
from workbench.store import ResultStore

FAST = dict(cases=["quick"], dtypes=["fp32"], bench_cases=["quick"], bench_dtypes=["fp32"], progress=False)
BASELINE_ROWS = 3


def _fake_run(task, candidate, op, delay: float = 0.0, **kw):
    """A worker run that passes (a check row, a baseline of BASELINE_ROWS rows) after `delay` seconds."""
    time.sleep(delay)
    rows = [
        {
            "op": op,
            "variant": "cpu",
            "backend": "cpu",
            "case": "c",
            "dtype": "fp32",
            "seed": 1,
            "rel_err": 0.0,
            "passed": True,
            "skipped": "",
            "error": "",
        }
    ]
    bench = pd.DataFrame(
        [
            {"op": op, "impl": "cpu", "case": f"c{i}", "dtype": "fp32", "ms": 0.5 + i}
            for i in range(BASELINE_ROWS)
        ]
    )
    return worker.RunResult(
        task, "ok", "", check=correctness.table(rows), bench=bench if task == "verify" else None
    )


def _in_child(fn, env: dict | None = None) -> int:
    """Run fn() in a forked copy of this process (imports done: it starts at once); returns its pid.
    Exit codes: 0 done, 1 PromotionError, 2 anything else; or killed by a signal. fn must not compute with
    torch: its CPU thread pool (GNU OpenMP) does not survive a fork once this process has used it."""
    pid = os.fork()
    if pid == 0:
        code = 2
        try:
            os.environ.update(env or {})
            fn()
            code = 0
        except PromotionError as e:
            print(e, file=sys.stderr)
            code = 1
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def _exit_code(pid: int) -> int:
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _promote_faked(root: Path, store: Path, force: bool = False, delay: float = 0.0):
    def go():
        promotion.worker.run = lambda *a, **kw: _fake_run(*a, delay=delay, **kw)
        promotion.promote(
            CANDIDATES / "rms_norm_rows.py", "rms_norm", force=force, root=root, store=store, **FAST
        )

    return go


@pytest.fixture(autouse=True)
def _cache(monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", shared_cache())


def _package_root(tmp_path: Path) -> Path:
    """A tree holding only a copy of the workbench package: enough for promotion's commit."""
    root = tmp_path / "root"
    worker.stage_package(REPO, root)
    return root


def _done_baselines(store: Path):
    if not store.exists():
        return []
    runs = ResultStore(store).runs("baseline")
    return list(runs.loc[runs["status"] == "done", "run_id"])


def _state_is_clean(root: Path) -> bool:
    folder = promotion.state_dir(root)
    leftovers = [p.name for p in folder.iterdir() if not p.name.endswith(".lock")] if folder.exists() else []
    tmp = list((root / "workbench" / "ops" / "variants").glob(".*promote-tmp"))
    return not leftovers and not tmp


# ---- promotion as a transaction ----------------------------------------------------------------------

NEW_STATE = ("installed", "baseline_started", "baseline_recorded", "done")


# a new file has no backup; replacing one changes nothing else before the journal or after the baseline
KILLS = [(step, False) for step in promotion.STEPS if step != "backed_up"] + [
    (step, True) for step in ("journaled", "backed_up", "installed", "baseline_started")
]


@pytest.mark.parametrize("step,force", KILLS, ids=[f"{s}-{'force' if f else 'new'}" for s, f in KILLS])
def test_kill_at_each_step_leaves_old_or_complete_new_state(tmp_path, step, force, capsys):
    root, store = _package_root(tmp_path), tmp_path / "s.db"
    target = promotion.target_path(root, "rms_norm", "cpu", False)
    old = "# the kernel promoted before\n" if force else None
    if old:
        target.write_text(old)
    pid = _in_child(_promote_faked(root, store, force), {promotion.FAULT_ENV: step})
    assert _exit_code(pid) == -signal.SIGKILL

    assert main(["promote", "--recover", "--root", str(root)]) == 0  # what the next command does first
    messages = capsys.readouterr().out.splitlines()
    assert _state_is_clean(root) and not list(Path(tempfile.gettempdir()).glob(f"workbench-*-{pid}-*"))
    backups = list(target.parent.glob(f"{target.name}.bak-*"))
    if step in NEW_STATE:
        assert target.read_text().startswith((CANDIDATES / "rms_norm_rows.py").read_text().rstrip("\n"))
        done = _done_baselines(store)
        assert len(done) == 1 and len(ResultStore(store).rows(done[0])) == BASELINE_ROWS
        assert [b.read_text() for b in backups] == ([old] if old else [])
        if step != "done":
            assert messages and messages[0].startswith("finished the interrupted promotion of 'rms_norm'")
    else:
        assert (target.read_text() if target.exists() else None) == old
        assert _done_baselines(store) == [] and backups == []
        if step in ("journaled", "backed_up"):
            assert messages and messages[0].startswith("rolled back")


def test_concurrent_promotions_of_one_op_one_wins(tmp_path, capfd):
    root, store = _package_root(tmp_path), tmp_path / "s.db"
    pids = [_in_child(_promote_faked(root, store, delay=0.5)) for _ in range(2)]
    codes = sorted(_exit_code(pid) for pid in pids)
    assert codes == [0, 1]
    err = capfd.readouterr().err
    assert "another promotion of 'rms_norm'" in err or "exists" in err, err[-2000:]
    assert len(_done_baselines(store)) == 1 and _state_is_clean(root)


def test_real_promotion_killed_mid_baseline_is_finished_by_the_next_promote(tmp_path):
    repo, store = repo_copy(tmp_path / "repo"), tmp_path / "s.db"
    candidate = str(CANDIDATES / "rms_norm_rows.py")
    script = (
        "from workbench.porting import promote; "
        f"promote({candidate!r}, 'rms_norm', root={str(repo)!r}, store={str(store)!r}, **{FAST!r})"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO), **{promotion.FAULT_ENV: "baseline_started"})
    killed = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    runs = ResultStore(store).runs("baseline")
    assert list(runs["status"]) == ["running"]  # one row of three written, then killed

    with pytest.raises(PromotionError, match="exists") as err:
        promote(CANDIDATES / "rms_norm_rows.py", "rms_norm", root=repo, store=store, **FAST)
    assert err.value.promotion.recovered.startswith("finished the interrupted promotion")
    runs = ResultStore(store).runs("baseline")
    assert sorted(runs["status"]) == ["aborted", "done"]
    rows = ResultStore(store).rows(runs.loc[runs["status"] == "done", "run_id"].iloc[0])
    quick = len(opspec.get("rms_norm").case_list("quick"))
    assert len(rows) == 2 * quick and set(rows["impl"]) == {"native", "cpu"}  # every quick fp32 case, both
    assert _state_is_clean(repo)


# ---- the verdict belongs to the caller ---------------------------------------------------------------

WRONG = """
import torch

def rms_norm(x, weight=None, eps=1e-6):
    y = x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps).to(x.dtype)
    return (y * weight if weight is not None else y) * 1.05
"""


def _candidate(tmp_path, body: str, name: str = "cand.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def test_patching_the_correctness_module_cannot_pass_a_wrong_kernel(tmp_path):
    path = _candidate(
        tmp_path,
        WRONG
        + """
from workbench.profiling import correctness
fake = lambda *a, **k: {"rel_err": 0.0, "max_abs_err": 0.0, "nonfinite_match": True, "elementwise_ok": True,
                        "passed": True, "dtype_match": True}
correctness.verify = correctness.judge = correctness.compare_outputs = fake
""",
    )
    result = worker.run("check", path, "rms_norm", progress=False)
    assert result.ok and not result.passed
    forward = result.check[result.check["direction"] == "forward"]
    assert len(forward) == 2 and (~forward["passed"]).all() and (forward["rel_err"] > 0.04).all()


def test_a_result_file_written_by_the_candidate_runs_no_code_and_forges_nothing(tmp_path):
    marker = tmp_path / "ran_in_caller"
    path = _candidate(
        tmp_path,
        f"""
import json, os, pickle
from pathlib import Path

class Payload:
    def __reduce__(self):
        return (os.system, ("touch {marker}",))

def rms_norm(x, weight=None, eps=1e-6):
    run = Path.cwd()  # the worker's run directory
    with open(run / "outputs.pt", "wb") as f:
        pickle.dump({{"out": Payload()}}, f)
    rows = [{{"case": "8x64", "dtype": "fp32", "seed": 0, "passed": True, "error": ""}}]
    (run / "result.json").write_text(json.dumps({{"status": "ok", "summary": "all passed", "rows": rows}}))
    os._exit(0)
""",
    )
    result = worker.run("check", path, "rms_norm", progress=False)
    assert not marker.exists()
    assert result.status == "error" and "could not be read" in result.summary and not result.passed

    # data-only outputs claiming a pass: judged again here, they fail
    path = _candidate(
        tmp_path,
        WRONG
        + """
import json, os, torch
from pathlib import Path
from workbench.porting import judge

_real = rms_norm

def rms_norm(x, weight=None, eps=1e-6):
    out = _real(x, weight, eps)
    items = json.loads((Path.cwd() / "request.json").read_text())["items"]  # the caller's plan
    rows = [dict(item, error="", passed=True, rel_err=0.0) for item in items]
    torch.save({"out": {str(i): out for i in range(len(rows))}}, Path.cwd() / judge.OUTPUTS)
    (Path.cwd() / "result.json").write_text(json.dumps({"status": "ok", "summary": "passed", "rows": rows}))
    os._exit(0)
""",
        "cand2.py",
    )
    result = worker.run("check", path, "rms_norm", progress=False)
    assert result.ok and not result.passed and not result.check["passed"].any()
    assert result.check["rel_err"].iloc[0] > 0.04  # the first case's own (wrong) output, judged here


def test_gradients_a_worker_returns_are_judged_by_the_caller(tmp_path):
    """An op with a backward: the worker returns each case's input gradients and the caller judges them
    against float64 autograd. Right outputs with forged zero gradients, claimed passed: the forward rows
    pass and every backward row fails."""
    path = _candidate(
        tmp_path,
        """
import json, os, torch
from pathlib import Path
from workbench.ops import REGISTRY
from workbench.porting import judge
from workbench.profiling import correctness as cr

def rms_norm(x, weight=None, eps=1e-6):
    spec, run = REGISTRY["rms_norm"], Path.cwd()
    items = json.loads((run / "request.json").read_text())["items"]
    outs, grads = {}, {}
    for i, item in enumerate(items):
        case, dtype = spec.case_list(item["set"])[item["index"]], cr.DTYPE_NAMES[item["dtype"]]
        args, kwargs = cr.make_inputs(case, dtype, item["seed"])
        outs[str(i)] = spec.reference(*args, **kwargs)
        g_args, g_kwargs, _ = cr.backward_inputs(spec, case, dtype, item["seed"])
        leaves = [a for a in [*g_args, *g_kwargs.values()] if torch.is_tensor(a) and a.is_floating_point()]
        grads[str(i)] = judge.portable([torch.zeros_like(a) for a in leaves])
    torch.save({"out": outs, "grad": grads}, run / judge.OUTPUTS)
    rows = [dict(item, error="", passed=True) for item in items]
    (run / "result.json").write_text(json.dumps({"status": "ok", "summary": "passed", "rows": rows}))
    os._exit(0)
""",
    )
    result = worker.run("check", path, "rms_norm", dtypes=["fp32"], progress=False)
    forward = result.check[result.check["direction"] == "forward"]
    backward = result.check[result.check["direction"] == "backward"]
    assert len(forward) == len(backward) == 2 and forward["passed"].all()
    assert not backward["passed"].any() and (backward["rel_err"] > 0.5).all(), backward["error"].tolist()


def test_files_written_into_the_package_during_a_check_stay_out_of_it(tmp_path):
    where = tmp_path / "where"
    path = _candidate(
        tmp_path,
        f"""
from pathlib import Path
import workbench.ops

dropped = Path(workbench.ops.__file__).parent / "zz_dropped.py"
dropped.write_text("print('DROPPED')\\n")
Path({str(where)!r}).write_text(str(dropped))
from workbench.ops.rms_norm import rms_norm
""",
    )
    result = worker.run("check", path, "rms_norm", progress=False)
    assert result.passed, result.summary
    dropped = Path(where.read_text())  # in the worker's staged copy of the package, removed with it
    assert dropped.name == "zz_dropped.py" and not dropped.exists()
    assert not (worker.package_root() / "workbench" / "ops" / "zz_dropped.py").exists()


# ---- processes and files die with the run ------------------------------------------------------------


def _gone(pid: int) -> bool:
    """Not running: no such process, or a zombie waiting for its parent."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


def _wait_for(path: Path, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} did not appear in {seconds} s")


HANG = """
import os, sys, subprocess, time
from pathlib import Path

def rms_norm(x, weight=None, eps=1e-6):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    Path({info!r}).write_text(f"{{os.getpid()}} {{child.pid}} {{Path.cwd()}}")
    while True:
        time.sleep(0.1)
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP], ids=["kill-9", "hup"])
def test_a_killed_caller_takes_its_worker_and_files_with_it(tmp_path, sig):
    info = tmp_path / "info"
    path = _candidate(tmp_path, HANG.format(info=str(info)))
    caller = _in_child(lambda: worker.run("check", path, "rms_norm", timeout=300, progress=False))
    pid, grandchild, rundir = _wait_for(info, 60).split()
    os.kill(caller, sig)
    assert _exit_code(caller) == -sig
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (
        _gone(int(pid)) and _gone(int(grandchild)) and not Path(rundir).exists()
    ):
        time.sleep(0.1)
    assert _gone(int(pid)) and _gone(int(grandchild)) and not Path(rundir).exists()


def test_a_grandchild_in_its_own_session_is_killed_at_the_timeout(tmp_path):
    info = tmp_path / "info"
    path = _candidate(tmp_path, HANG.format(info=str(info)))
    result = worker.run("check", path, "rms_norm", timeout=3, progress=False)
    assert result.status == "timeout"
    pid, grandchild, rundir = info.read_text().split()
    assert _gone(int(pid)) and _gone(int(grandchild)) and not Path(rundir).exists()


def test_stale_run_directories_of_dead_callers_are_removed(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f"{worker.DIR_PREFIXES[0]}{dead.pid}-abc"
    mine = tmp_path / f"{worker.DIR_PREFIXES[1]}{os.getpid()}-abc"
    other = tmp_path / f"unrelated-{dead.pid}-abc"
    for d in (stale, mine, other):
        (d / "stage").mkdir(parents=True)
    assert worker.remove_stale_dirs(tmp_path) == [stale]
    assert not stale.exists() and mine.exists() and other.exists()


def test_endless_output_is_read_as_a_bounded_tail(tmp_path):
    path = _candidate(
        tmp_path,
        """
import sys
from workbench.ops.rms_norm import rms_norm as _rms_norm

def rms_norm(x, weight=None, eps=1e-6):
    block = "spam " * 200_000 + "\\n"
    for _ in range(16):  # 16 MiB
        sys.stdout.write(block)
    sys.stdout.write("the last line\\n")
    return _rms_norm(x, weight, eps)
""",
    )
    tracemalloc.start()
    try:
        result = worker.run("check", path, "rms_norm", progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.passed and "the last line" in result.log
    assert len(result.log) <= worker.LOG_TAIL_CHARS and peak < 8 << 20, peak


# ---- names never become code -------------------------------------------------------------------------


def test_a_file_name_cannot_become_code(tmp_path):
    evil = tmp_path / 'x\nprint("INJECTED")\n#.py'
    evil.write_text((CANDIDATES / "rms_norm_rows.py").read_text())
    with pytest.raises(CandidateError, match="Python identifier"):
        promote(evil, "rms_norm", root=tmp_path, **FAST)
    with pytest.raises(CandidateError, match="identifier"):
        check_op_name('x\nprint("INJECTED")')
    # and what the footer does embed is inert however it is spelled
    footer = promotion._footer("rms_norm", "cpu", "cpu", False, evil.name, 'ok")\nprint("INJECTED")\n#')
    calls = [
        n.func.id for n in ast.walk(ast.parse(footer)) if isinstance(n, ast.Call) and hasattr(n.func, "id")
    ]
    assert calls == ["_get_spec", "_get_spec"]
    assert not any("INJECTED" in line for line in footer.splitlines() if not line.startswith("#"))
