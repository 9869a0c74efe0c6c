"""How tight an elementwise bound bf16 attention can meet: workbench's and torch's SDPA on the llm cases.

The correctness check requires |out - ref| <= tol * (|ref| + rms(ref)) at every element, ref in float64.
For each llm case of scaled_dot_product_attention this prints, for workbench's kernel and for torch's
own (the op's reference run in bf16, as the check's native column does), the smallest tol that bound
would need: max over elements of |out - ref| / (|ref| + rms(ref)), next to the norm-wise relative error.
From the repo root on a GPU machine:
    WORKBENCH_COMMIT=$(git rev-parse HEAD) PYTHONPATH=$PWD python3 benchmarks/sdpa_bound.py --out $OUT
Writes benchmarks/results/<device>/sdpa_bound/sdpa_bound.csv under --out (default: the repo).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

from workbench.ops import REGISTRY
from workbench.profiling.correctness import _upcast, make_inputs
from workbench.store.meta import results_dir, run_metadata


def needed(out: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    diff = (out.double() - ref).abs()
    rms = float(ref.pow(2).mean().sqrt())
    return float((diff / (ref.abs() + rms)).max()), float(diff.norm() / ref.norm())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parents[1]),
        help="directory that receives benchmarks/results/...",
    )
    args = parser.parse_args()
    spec = REGISTRY["scaled_dot_product_attention"]
    rows = []
    for i, case in enumerate(spec.case_list("llm")):
        a, kw = make_inputs(case, torch.bfloat16, seed=i)
        ref = spec.reference(
            *_upcast(a, torch.float64, a[0].device), **_upcast(kw, torch.float64, a[0].device)
        )
        for impl, fn in (("workbench", spec.impl), ("torch", spec.reference)):
            tol_needed, rel = needed(fn(*a, **kw), ref)
            rows.append(
                {
                    "case": case.name,
                    "impl": impl,
                    "tol_needed": tol_needed,
                    "rel_err": rel,
                    "tol_bf16": spec.tolerance[torch.bfloat16],
                }
            )
    meta = run_metadata()
    df = pd.DataFrame(rows).assign(**{k: meta[k] for k in ("device", "torch", "triton", "commit")})
    df.to_csv(results_dir(args.out, "sdpa_bound", meta) / "sdpa_bound.csv", index=False)
    print(df.pivot_table(index="case", columns="impl", values=["tol_needed", "rel_err"]).to_string())


if __name__ == "__main__":
    main()
