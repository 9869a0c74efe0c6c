"""Bus-bandwidth benchmark of the Communicator against raw torch.distributed on the same group.

Conventions follow nccl-tests: `bytes` is the size nccl-tests reports (the whole buffer: the output of
all_gather, the input of reduce_scatter, each rank's send buffer of all_to_all), algbw = bytes / time
and busbw = algbw x a per-collective factor that makes the number comparable to the link speed:
2(n-1)/n for all_reduce, (n-1)/n for all_gather, reduce_scatter and all_to_all, 1 for broadcast.

Each (collective, size) is timed as loops of back-to-back calls between device synchronizations, the
implementations interleaved rep by rep so drift hits them alike; a loop's time is the slowest rank's
(exchanged over the host group) and a row holds the median over reps. Implementations:
  raw          - the torch.distributed function on `comm.group` (flat jobs only);
  comm         - Communicator with validation off (its fast path);
  comm_checked - Communicator with validation on (one extra small gloo exchange per call).
Buffers hold zeros so that repeated in-place reductions never overflow into inf.
"""

from __future__ import annotations

import math
import re
import textwrap
import time
from collections.abc import Callable, Iterable

import pandas as pd
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from .communicator import Communicator

COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "all_to_all")
IMPLS = ("raw", "comm", "comm_checked")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "int32": torch.int32}
_UNITS = {
    "": 1,
    "B": 1,
    "K": 1 << 10,
    "KB": 1 << 10,
    "M": 1 << 20,
    "MB": 1 << 20,
    "G": 1 << 30,
    "GB": 1 << 30,
}


def bus_factor(collective: str, world_size: int) -> float:
    """busbw / algbw for `collective` on `world_size` ranks (nccl-tests' factors)."""
    n = world_size
    factors = {
        "all_reduce": 2 * (n - 1) / n,
        "all_gather": (n - 1) / n,
        "reduce_scatter": (n - 1) / n,
        "all_to_all": (n - 1) / n,
        "broadcast": 1.0,
    }
    if collective not in factors:
        raise ValueError(f"collective: expected one of {list(factors)}, got {collective!r}")
    return factors[collective]


def parse_size(text: str | int) -> int:
    """'1K' / '64MB' / '1G' / 4096 -> bytes (binary units)."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?B?)\s*", str(text).upper())
    if not m:
        raise ValueError(f"size: expected a byte count like 1K, 64M or 1G, got {text!r}")
    return int(m.group(1)) * _UNITS[m.group(2)]


def size_range(min_bytes: int | str = "1K", max_bytes: int | str = "1G", factor: int = 2) -> list[int]:
    """min, min*factor, ... up to max (inclusive), like nccl-tests' -b/-e/-f."""
    lo, hi = parse_size(min_bytes), parse_size(max_bytes)
    if lo <= 0 or hi < lo:
        raise ValueError(f"max_bytes: expected >= min_bytes > 0, got min {lo}, max {hi}")
    if factor < 2:
        raise ValueError(f"factor: expected an integer >= 2, got {factor}")
    out = [lo]
    while out[-1] * factor <= hi:
        out.append(out[-1] * factor)
    return out


def human(nbytes: int) -> str:
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if nbytes >= scale and nbytes % scale == 0:
            return f"{nbytes // scale}{unit}"
    return f"{nbytes}B"


def _buffers(collective: str, nbytes: int, world: int, dtype: torch.dtype, device: torch.device):
    """(primary, secondary) buffers for one call and the bytes actually moved (a multiple of world)."""
    esize = torch.tensor([], dtype=dtype).element_size()
    count = max(world, nbytes // esize // world * world)

    def z(n):
        return torch.zeros(n, dtype=dtype, device=device)

    if collective in ("all_reduce", "broadcast"):
        return z(count), None, count * esize
    if collective == "all_gather":  # (output, input)
        return z(count), z(count // world), count * esize
    if collective == "reduce_scatter":
        return z(count // world), z(count), count * esize
    return z(count), z(count), count * esize  # all_to_all


def _calls(
    comm: Communicator, collective: str, a: torch.Tensor, b: torch.Tensor | None
) -> dict[str, Callable]:
    g = comm.group
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
    raw = {
        "all_reduce": lambda: dist.all_reduce(a, group=g),
        "broadcast": lambda: dist.broadcast(a, 0, group=g),
        "all_gather": lambda: gather(a, b, group=g),
        "reduce_scatter": lambda: scatter(a, b, group=g),
        "all_to_all": lambda: dist.all_to_all_single(a, b, group=g),
    }[collective]
    ours = {
        "all_reduce": lambda: comm.all_reduce(a),
        "broadcast": lambda: comm.broadcast(a, 0),
        "all_gather": lambda: comm.all_gather(a, b),
        "reduce_scatter": lambda: comm.reduce_scatter(a, b),
        "all_to_all": lambda: comm.all_to_all(a, b),
    }[collective]
    return {"raw": raw, "comm": ours, "comm_checked": ours}


def _slowest(comm: Communicator, values: list[float]) -> list[float]:
    """Element-wise max over ranks (host group)."""
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=comm.host_group)
    return t.tolist()


def _loop(comm: Communicator, fn: Callable, iters: int) -> float:
    """Seconds per call over `iters` back-to-back calls, started together on every rank."""
    sync = comm.synchronize
    sync()
    dist.barrier(group=comm.host_group)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    sync()
    return (time.perf_counter() - t0) / iters


def bench(
    comm: Communicator,
    collectives: Iterable[str] = COLLECTIVES,
    sizes: Iterable[int] | None = None,
    dtype: str | torch.dtype = "fp32",
    impls: Iterable[str] = ("raw", "comm"),
    reps: int = 5,
    min_time_s: float = 0.02,
    max_iters: int = 1000,
    warmup: int = 2,
    progress: bool = False,
    metadata: bool = True,
) -> pd.DataFrame:
    """Tidy timings: one row per (collective, bytes, impl). All ranks call it and get the same table.

    `raw` is skipped on hierarchical jobs (no single native group spans them). `metadata` adds
    workbench.store.meta.run_metadata() columns.
    """
    dtype = DTYPES[dtype] if isinstance(dtype, str) and dtype in DTYPES else dtype
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype: expected one of {list(DTYPES)} or a torch.dtype, got {dtype!r}")
    collectives = list(collectives)
    for c in collectives:
        bus_factor(c, 2)  # raises on an unknown name
    impls = [i for i in impls if not (i == "raw" and comm.hierarchical)]
    unknown = [i for i in impls if i not in IMPLS]
    if unknown or not impls:
        raise ValueError(f"impls: expected some of {list(IMPLS)}, got {unknown or 'none'}")
    sizes = list(sizes) if sizes is not None else size_range()
    world, rows = comm.world_size, []
    saved = comm.validate
    work = [(c, s) for c in collectives for s in sizes]
    try:
        for collective, nbytes in tqdm(work, desc="comm-bench", disable=not progress or comm.rank != 0):
            a, b, moved = _buffers(collective, nbytes, world, dtype, comm.device)
            calls = _calls(comm, collective, a, b)
            for impl in impls:
                comm.validate = impl == "comm_checked"
                for _ in range(warmup):
                    calls[impl]()
            once = []
            for impl in impls:
                comm.validate = impl == "comm_checked"
                once.append(_loop(comm, calls[impl], 1))
            iters = {
                impl: int(min(max_iters, max(1, math.ceil(min_time_s / max(t, 1e-9)))))
                for impl, t in zip(impls, _slowest(comm, once))
            }
            times: dict[str, list[float]] = {i: [] for i in impls}
            for rep in range(reps):
                order = impls[rep % len(impls) :] + impls[: rep % len(impls)]
                for impl in order:
                    comm.validate = impl == "comm_checked"
                    times[impl].append(_loop(comm, calls[impl], iters[impl]))
            flat = _slowest(comm, [t for i in impls for t in times[i]])
            for k, impl in enumerate(impls):
                per = sorted(flat[k * reps : (k + 1) * reps])
                sec = per[len(per) // 2]
                algbw = moved / sec / 1e9
                rows.append(
                    {
                        "op": collective,
                        "impl": impl,
                        "case": human(moved),
                        "dtype": str(dtype).replace("torch.", ""),
                        "bytes": moved,
                        "iters": iters[impl],
                        "reps": reps,
                        "ms": sec * 1e3,
                        "ms_p20": _quantile(per, 0.2) * 1e3,
                        "ms_p80": _quantile(per, 0.8) * 1e3,
                        "algbw_gbps": algbw,
                        "busbw_gbps": algbw * bus_factor(collective, world),
                    }
                )
            del a, b, calls
    finally:
        comm.validate = saved
    df = pd.DataFrame(rows)
    raw = df[df["impl"] == "raw"].set_index(["op", "bytes"])["ms"]
    df["overhead"] = [
        r.ms / raw.get((r.op, r.bytes), float("nan")) if r.impl != "raw" else float("nan")
        for r in df.itertuples()
    ]
    df = df.assign(
        world_size=world,
        mode="hierarchical" if comm.hierarchical else "flat",
        clusters=describe_clusters(comm),
    )
    if metadata:
        from workbench.store.meta import run_metadata

        df = df.assign(**run_metadata())
    return df


def _quantile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))]


def describe_clusters(comm: Communicator) -> str:
    """e.g. '2x cuda/nccl [0,1] + 1x cpu/gloo [2]'."""
    return " + ".join(
        f"{c.size}x {c.device_type}/{c.collective} [{','.join(map(str, c.ranks))}]"
        for c in comm.topology.clusters
    )


def summary(df: pd.DataFrame, min_bytes: int = 1 << 20) -> pd.DataFrame:
    """Per collective and impl, against the targets: the median and worst time / raw time over
    sizes >= min_bytes, and busbw at the largest size, also as a fraction of raw's there."""
    rows = []
    for (op, impl), g in df.groupby(["op", "impl"], sort=False):
        big = g[(g["bytes"] >= min_bytes) & g["overhead"].notna()]
        top = g.loc[g["bytes"].idxmax()]
        raw_top = df[(df["op"] == op) & (df["impl"] == "raw") & (df["bytes"] == top["bytes"])]["busbw_gbps"]
        rows.append(
            {
                "op": op,
                "impl": impl,
                "largest": top["case"],
                "busbw_gbps_largest": round(float(top["busbw_gbps"]), 2),
                "busbw_vs_raw_largest": round(float(top["busbw_gbps"] / raw_top.iloc[0]), 3)
                if len(raw_top)
                else float("nan"),
                f"median_overhead_ge_{human(min_bytes)}": round(float(big["overhead"].median()), 3)
                if len(big)
                else float("nan"),
                f"max_overhead_ge_{human(min_bytes)}": round(float(big["overhead"].max()), 3)
                if len(big)
                else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def plot_busbw(df: pd.DataFrame, title: str = ""):
    """busbw vs size per collective (solid: comm, dashed: raw, dotted: comm_checked) and, when raw rows
    exist, Communicator time / raw time. Returns a matplotlib Figure."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    has_raw = (df["impl"] == "raw").any()
    fig, axes = plt.subplots(1, 2 if has_raw else 1, figsize=(13 if has_raw else 7, 4.5), squeeze=False)
    styles = {"comm": "-", "raw": "--", "comm_checked": ":"}
    colors = {}
    for (collective, impl), g in df.sort_values("bytes").groupby(["op", "impl"], sort=False):
        color = colors.setdefault(collective, f"C{len(colors)}")
        axes[0][0].plot(
            g["bytes"],
            g["busbw_gbps"],
            styles.get(impl, "-"),
            color=color,
            marker=".",
            label=f"{collective} ({impl})",
        )
        if has_raw and impl != "raw":
            axes[0][1].plot(
                g["bytes"],
                g["overhead"],
                styles.get(impl, "-"),
                color=color,
                marker=".",
                label=f"{collective} ({impl})",
            )
    ticks = sorted(set(df["bytes"]))
    ticks = ticks[:: max(1, math.ceil(len(ticks) / 11))]
    for ax in axes[0]:
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [human(int(t)) for t in ticks], fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set(
        xlabel="message size (nccl-tests convention)", ylabel="bus bandwidth (GB/s)", title="busbw vs size"
    )
    if has_raw:
        ax = axes[0][1]
        ax.axhline(1.02, color="gray", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set(
            xlabel="message size",
            ylabel="time / raw torch.distributed time",
            title="Communicator overhead (dashed: 1.02, the target for >= 1 MB)",
        )
    fig.suptitle("\n".join(textwrap.wrap(title, 160)), fontsize=8)
    fig.tight_layout()
    return fig


def plot_title(df: pd.DataFrame, command: str = "") -> str:
    """Which devices, clusters, commit and command made `df` (for figures)."""
    first = df.iloc[0] if len(df) else {}
    parts = [
        str(first.get("device", "")),
        str(first.get("clusters", "")),
        f"commit {str(first.get('commit', ''))[:10]}",
        command,
    ]
    return " | ".join(p for p in parts if p)
