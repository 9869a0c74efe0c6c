"""Host cost of the ATen override per call, on whatever backend this process binds to (cpu: no GPU needed).

Separates what `workbench.use_ops` adds from the kernels themselves:
  native          torch.add on small tensors, no override
  override, no-op torch.add inside use_ops with the adapter replaced by one that returns its input:
                  dispatcher -> Python kernel -> re-entrancy flag -> adapter -> coverage count
  fallback        torch.add on float64 inside use_ops: the adapter's TypeError, then the native kernel
  wrapper         workbench.ops.add called directly with the Triton launch stubbed out: validation,
                  broadcasting, layout, allocation (the Python path every call pays before launching)
  not claimed     torch.atan2 inside use_ops (an op workbench does not replace)

Run from the repo root: `PYTHONPATH=$PWD python benchmarks/dispatch_overhead.py [--calls 20000]`.
Prints microseconds per call (median of 5 rounds).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import workbench
from workbench import backends
from workbench.ops import REGISTRY, _elementwise


def per_call_us(fn, calls: int) -> float:
    rounds = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        rounds.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    device = backends.active().device()
    x = torch.randn(4, 64, device=device)
    y = torch.randn(4, 64, device=device)
    x64 = x.double()
    rows = {}
    rows["native torch.add"] = per_call_us(lambda: torch.add(x, y), args.calls)

    spec = REGISTRY["add"]
    saved = dict(spec.aten_impls)
    spec.aten_impls["aten::add.Tensor"] = lambda impl, self, other, alpha=1: self
    try:
        with workbench.use_ops(include=["aten::add.Tensor"]):
            rows["override, no-op adapter"] = per_call_us(lambda: torch.add(x, y), args.calls)
    finally:
        spec.aten_impls.clear()
        spec.aten_impls.update(saved)
    with workbench.use_ops():
        rows["fallback (float64)"] = per_call_us(lambda: torch.add(x64, x64), args.calls)
        rows["not claimed (atan2)"] = per_call_us(lambda: torch.atan2(x, y), args.calls)
    rows["native atan2"] = per_call_us(lambda: torch.atan2(x, y), args.calls)

    real_launch = _elementwise.launch
    _elementwise.launch = lambda *args, **kwargs: None  # everything up to the launch, not the launch
    try:
        rows["ops.add wrapper, launch stubbed"] = per_call_us(lambda: workbench.ops.add(x, y), args.calls)
        rows["ops.add(x, 1e-6) wrapper, launch stubbed"] = per_call_us(lambda: workbench.ops.add(x, 1e-6),
                                                                        args.calls)
    finally:
        _elementwise.launch = real_launch

    print(f"backend {backends.active().name}, torch {torch.__version__}, {args.calls} calls x 5 rounds (median)")
    for name, us in rows.items():
        print(f"{name:45s} {us:8.2f} us/call")


if __name__ == "__main__":
    main()
