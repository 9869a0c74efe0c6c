"""GPU check of the porting front end: isolated candidate runs, promotion and the regression run
on cuda, without Jupyter (the GPU machine has no jupyter/papermill/ipywidgets).

What it shows on a real GPU: a candidate is checked and profiled in a worker process; a kernel that makes
an illegal memory access, and one that never ends, are reported ("crashed", "timeout") while this process
keeps using the GPU; promotion into a copy of the package compiles and benches the installed module; the
regression functions run twice (the first seeds the baseline, the second compares against it).

Run from the repo root (about 2 minutes on an H100):
    PYTHONPATH=$PWD python3 benchmarks/ui_gpu_check.py --out $OUT
Writes ui_gpu_check.json, profile_rms_norm.csv, regress/ (report.html, plots, summary.json) to
benchmarks/results/<device>/ui/ under --out (default: the repo) and prints a summary table last.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CANDIDATE = ROOT / "tests" / "candidates" / "rms_norm_rows.py"

ILLEGAL_ACCESS = """
import torch
import triton
import triton.language as tl


@triton.jit
def _wild_store(out_ptr, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK).to(tl.int64) + (1 << 40)  # terabytes past any allocation
    tl.store(out_ptr + offs, tl.zeros([BLOCK], tl.float32))


def rms_norm(x, weight=None, eps=1e-6):
    out = torch.empty_like(x, dtype=torch.float32)
    _wild_store[(1,)](out, BLOCK=128)
    return out.to(x.dtype)
"""

SPIN = """
import torch
import triton
import triton.language as tl


@triton.jit
def _spin(flag_ptr):
    spins = 0
    while tl.load(flag_ptr, volatile=True) == 0:  # the flag is never set: the kernel never ends
        spins += 1
    tl.store(flag_ptr + 1, spins)


def rms_norm(x, weight=None, eps=1e-6):
    flag = torch.zeros(2, dtype=torch.int32, device=x.device)
    _spin[(1,)](flag)
    if x.is_cuda:
        torch.cuda.synchronize()
    return x
"""


def parent_still_works() -> bool:
    """This process can still launch kernels: a workbench op against torch on fresh inputs."""
    import torch

    import workbench.ops as ops
    from workbench import backends

    device = backends.active().device()
    x = torch.randn(64, 4096, device=device, dtype=torch.bfloat16)
    w = torch.randn(4096, device=device, dtype=torch.bfloat16)
    ref = torch.nn.functional.rms_norm(x.float(), (4096,), w.float(), 1e-6)
    return bool(torch.allclose(ops.rms_norm(x, w, eps=1e-6).float(), ref, rtol=2e-2, atol=2e-2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT), help="directory that receives benchmarks/results/...")
    parser.add_argument("--backend", default="cuda", help="cuda; cpu only to try the script itself (slow)")
    args = parser.parse_args()
    os.environ["WORKBENCH_BACKEND"] = args.backend

    from workbench import backends, regression
    from workbench.porting import promote, worker
    from workbench.reports import views
    from workbench.store.meta import results_dir, run_metadata

    backends.active(args.backend)
    gpu = args.backend != "cpu"
    big = ["quick", "edge", "llm"] if gpu else ["quick"]
    meta = run_metadata()
    out = results_dir(args.out, "ui", meta)
    steps: list[dict] = []
    scratch = Path(tempfile.mkdtemp(prefix="ui-gpu-"))

    def step(name: str, expected: str, fn):
        t0 = time.monotonic()
        try:
            got, detail = fn()
        except Exception as e:  # a step that breaks is a result too
            got, detail = "exception", f"{type(e).__name__}: {e}"
        steps.append(
            {
                "step": name,
                "expected": expected,
                "got": got,
                "ok": got == expected,
                "seconds": round(time.monotonic() - t0, 1),
                "detail": str(detail)[:300],
            }
        )
        print(
            f"[{name}] expected {expected}, got {got} ({steps[-1]['seconds']} s): {steps[-1]['detail']}",
            flush=True,
        )

    def check():
        r = worker.run(
            "check", CANDIDATE, "rms_norm", cases=big, dtypes=["fp32", "bf16"], timeout=300, progress=False
        )
        ran = r.check[r.check["skipped"] == ""] if r.check is not None else []
        return ("passed" if r.passed else r.status), f"{len(ran)} rows ran; {r.summary}"

    def profile():
        r = worker.run(
            "profile", CANDIDATE, "rms_norm", cases=big[-1:], dtypes=["bf16"], timeout=300, progress=False
        )
        if r.bench is None:
            return r.status, r.summary
        table = views.comparison_table(r.bench)
        table.to_csv(out / "profile_rms_norm.csv", index=False)
        return r.status, table[["case", "native ms", "current ms", "candidate ms"]].round(4).to_dict(
            "records"
        )

    def crash(source: str, timeout: float):
        path = scratch / f"cand_{len(steps)}.py"
        path.write_text(source)
        r = worker.run(
            "check", path, "rms_norm", cases=["quick"], dtypes=["fp32"], timeout=timeout, progress=False
        )
        return r.status, f"{r.summary}; parent still works: {parent_still_works()}"

    def promotion():
        tree = scratch / "tree"
        shutil.copytree(ROOT / "workbench", tree / "workbench", ignore=shutil.ignore_patterns("__pycache__"))
        p = promote(
            CANDIDATE,
            "rms_norm",
            root=tree,
            store=out / "store.db",
            bench_cases=big[-1:],
            bench_dtypes=["bf16"],
            timeout=300,
            progress=False,
            **({} if gpu else {"cases": ["quick"]}),
        )
        return ("written" if p.written else "refused"), p.message

    def regress():
        cfg = regression.configure(
            ops=["rms_norm", "silu", "add", "softmax"] if gpu else ["silu"],
            cases=big[-1:],
            dtypes=["bf16"],
            check_cases=["quick"],
            check_dtypes=["bf16"],
            store=str(out / "store.db"),
            output_dir=str(out / "regress"),
        )
        found = []
        for _ in range(2):  # the first run seeds the baseline, the second is compared with it
            check_df, bench_df = regression.run_check(cfg), regression.run_bench(cfg)
            comparison = regression.compare_with_baseline(cfg, bench_df)
            ids = regression.record(cfg, check_df, bench_df)
            plots = regression.save_figures(cfg, regression.figures(cfg, bench_df, comparison))
            regression.write_report(cfg, check_df, bench_df, comparison, plots, ids)
            found = regression.problems(cfg, check_df, bench_df, comparison)
        changes = comparison[comparison["impl"] != "native"]["change"]
        return ("PASS" if not found else "FAIL"), (
            f"{len(comparison)} rows compared, run-to-run change of "
            f"Triton rows {changes.min():+.1%} .. {changes.max():+.1%}; "
            f"problems: {found[:3]}"
        )

    step("check candidate in a worker", "passed", check)
    step("profile native/promoted/candidate", "ok", profile)
    # on cpu the interpreter's wild store is a segfault of the worker: "crashed" too
    step("illegal memory access", "crashed", lambda: crash(ILLEGAL_ACCESS, 120))
    step("promote into a copy of the package", "written", promotion)
    step("regression run twice", "PASS", regress)
    step("kernel that never ends", "timeout", lambda: crash(SPIN, 40 if gpu else 15))
    step(
        "parent process after all that", "True", lambda: (str(parent_still_works()), "rms_norm bf16 64x4096")
    )

    (out / "ui_gpu_check.json").write_text(json.dumps({"meta": meta, "steps": steps}, indent=1, default=str))
    print(
        f"\n{meta['device']} · torch {meta['torch']} · triton {meta['triton']} · commit {meta['commit'][:12]}"
    )
    width = max(len(s["step"]) for s in steps)
    print(f"{'step':{width}s}  {'expected':9s} {'got':9s} {'ok':3s} seconds")
    for s in steps:
        print(
            f"{s['step']:{width}s}  {s['expected']:9s} {s['got']:9s} "
            f"{'yes' if s['ok'] else 'NO':3s} {s['seconds']}"
        )
    return 0 if all(s["ok"] for s in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
