"""Compile time of the workbench backend against the depth of the graph before an op's first node.

Inductor lowers a custom operator it has no lowering for by making a fallback on first meeting it, and
before that formats the node's inputs for an info log line; torch 2.11 formats it whether or not the log
is shown. An input's IR prints every kernel that fed it, inputs first, so a residual stream (each step
read twice) prints as a tree that doubles with every step. The workbench backend makes those fallbacks
before inductor runs. This script measures both ways on the cpu: a residual stream of `depth` steps
through our rms_norm and an inductor matmul, then a softmax, our op met first at the graph's end; the
info log of inductor's graph lowering goes to a handler that formats it (what torch 2.11 does anyway),
and `--without` puts inductor's own path back (the backend's fallbacks not made).

    PYTHONPATH=$PWD python benchmarks/compile_depth.py [--depths 4 8 12 14 16] [--out DIR]

One fresh process per depth and way (inductor keeps a fallback once made). Writes
benchmarks/results/<device>/compile_depth/summary.json (device, torch, triton, commit, command, seconds:
{with, without}: {depth: s}) under --out (default: the repo) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def compile_seconds(depth: int, without: bool) -> float:
    """One compile of the residual stream (run in its own process by main)."""
    import torch

    from workbench.compile import backend

    if without:
        backend._inductor_fallbacks = lambda: None
    log = logging.getLogger("torch._inductor.graph")
    log.setLevel(logging.INFO)
    log.addHandler(logging.StreamHandler(open(os.devnull, "w")))  # noqa: SIM115 (lives as long as the process)
    log.propagate = False

    def f(x, w):
        r = x
        for _ in range(depth):
            r = torch.mm(torch.nn.functional.rms_norm(r, (64,), w, 1e-6), w.expand(64, 64)) + r
        return torch.softmax(r, -1)

    x, w = torch.randn(4, 64), torch.randn(64)
    options = {"include": ["rms_norm", "softmax"]}
    start = time.perf_counter()
    torch.compile(f, backend="workbench", fullgraph=True, options=options)(x, w)
    return time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--depths", type=int, nargs="+", default=[4, 8, 12, 14, 16])
    p.add_argument("--out", default=str(ROOT), help="the directory that receives benchmarks/results/...")
    p.add_argument("--one", nargs=2, metavar=("DEPTH", "WAY"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(compile_seconds(int(args.one[0]), args.one[1] == "without"))
        return 0
    from workbench.store.meta import results_dir, run_metadata

    seconds: dict = {"with": {}, "without": {}}
    for depth in args.depths:
        for way in seconds:
            run = subprocess.run(
                [sys.executable, __file__, "--one", str(depth), way],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            seconds[way][depth] = round(float(run.stdout.split()[-1]), 2)
            print(f"depth {depth:3d} {way:8s} {seconds[way][depth]:7.2f} s", flush=True)
    meta = run_metadata()
    summary = {**meta, "command": " ".join(["python", *sys.argv]), "seconds": seconds}
    folder = results_dir(args.out, "compile_depth", meta)
    (folder / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {folder / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
