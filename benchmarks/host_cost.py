"""Host cost per call at decode size: native vs `workbench.ops.X` called directly vs the ATen override.

One clean process. For each op, rounds alternate native, direct and `use_ops` (the same ATen call as
native, inside `workbench.use_ops()`); each round is the wall time of 2,000 back-to-back calls plus the
final synchronize, divided by the calls; the median round is reported. Inputs are bf16 at Qwen3-8B decode
sizes. Before timing, each side's output is compared with native's, so that a broken path cannot look fast.

`--model` adds Qwen3-8B dims through `use_ops` alone (no module fusions, no graphs) against native eager:
prefill 1x2048 and greedy decode 8 x (512 prompt + 128 new), rounds alternated, median of `--model-reps`
(>= 3); `--layers N` cuts the decoder to N layers to fit a time budget. It also says where a decode step's
time goes: each side's device time per step (profiler) beside its wall time per step, and `use_ops`'
coverage of a decode (which calls fell back, and why).

`--ops all` adds every other registered op at its smallest `llm` case. The override's own cost is measured
too, apart from any op (`dispatch_us`: a no-op adapter, a float64 fallback, an op no one claims, each next
to the native call).

`--stub` (cpu, no GPU needed): kernel launches go through the launch cache to a fake compiled kernel
(workbench.profiling.no_kernels "cached"), so `direct` and `use_ops` are the Python cost of the call path
alone, timed by the process's cpu time; native is not timed (its cpu compute is not a host cost).
`--profile OP` prints cProfile of OP's `use_ops` and direct paths by own time (with `--stub` on cpu).

From the repo root on a GPU machine (not yet timed there: the ops part should take 1-2 minutes; the model
part builds Qwen3-8B and autotunes its prefill shapes first, a few minutes more; `--layers` shortens it):
    WORKBENCH_COMMIT=$(git rev-parse HEAD) PYTHONPATH=$PWD python3 benchmarks/host_cost.py --out $OUT --model
On cpu:  PYTHONPATH=$PWD python benchmarks/host_cost.py --stub --out /tmp/host
Writes benchmarks/results/<device>/host/summary.json (keys device, torch, triton, commit, command, ops,
model_aten_only) and host_cost.csv (every round) under --out (default: the repo), and prints the table last.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import pstats
import statistics
import sys
import time
from pathlib import Path

import torch

import workbench
from workbench import backends
from workbench.ops import REGISTRY
from workbench.profiling.no_kernels import no_kernels
from workbench.store.meta import results_dir, run_metadata

CALLS = 2000
OPS = [
    "add",
    "mul",
    "silu",
    "rms_norm",
    "softmax",
    "linear",
    "argmax",
    "embedding",
    "cat",
    "copy",
    "rope",
    "scaled_dot_product_attention",
]
# Targets: µs above native per call, through use_ops and direct.
USE_OPS_MARGIN = {"scaled_dot_product_attention": 10.0, "rope": 10.0}
DEFAULT_USE_OPS_MARGIN, DIRECT_MARGIN = 6.0, 3.0


def _inputs(device, fill: bool):
    """Decode-size bf16 inputs; `fill` False leaves big tensors unwritten (stub mode: values unused)."""
    bf16 = torch.bfloat16

    def t(*shape, dtype=bf16):
        if fill or torch.Size(shape).numel() < 2**20:
            return torch.randn(shape, device=device).to(dtype)
        return torch.empty(shape, device=device, dtype=dtype)

    ids = torch.randint(0, 151936, (8, 1), device=device)
    pos = torch.arange(2048, 2049, device=device, dtype=torch.float32)
    inv_freq = 1.0 / 1e6 ** (torch.arange(0, 128, 2, device=device).float() / 128)
    emb = torch.cat(((pos[:, None] * inv_freq),) * 2, dim=-1)[None]  # [1, 1, 128]
    # q / k as transformers' Qwen3 attention hands them to rope: [batch, heads, 1, head_dim] views
    q = t(1, 1, 32, 128).transpose(1, 2)
    k = t(1, 1, 8, 128).transpose(1, 2)
    return {
        "x": t(1, 4096),
        "y": t(1, 4096),
        "w": t(4096),
        "weight": t(4096, 4096),
        "logits": t(8, 151936),
        "ids": ids,
        "table": t(151936, 4096),
        "cache": t(1, 8, 2047, 128),
        "new_kv": t(1, 8, 1, 128),
        "q": q,
        "k": k,
        "cos": emb.cos().to(bf16),
        "sin": emb.sin().to(bf16),
        "dq": t(8, 32, 1, 128),
        "dk": t(8, 8, 2048, 128),
        "dv": t(8, 8, 2048, 128),
    }


def _rotate_half(x):
    return torch.cat((-x[..., 64:], x[..., :64]), dim=-1)


def op_calls(i: dict) -> dict:
    """op -> (case, native call, direct call, ATen call run inside use_ops or None for a fused op)."""
    F, ops = torch.nn.functional, workbench.ops
    x, y, w = i["x"], i["y"], i["w"]
    cos, sin = i["cos"][:, None], i["sin"][:, None]
    rows = {
        "add": ("1x4096", lambda: torch.add(x, y), lambda: ops.add(x, y)),
        "mul": ("1x4096", lambda: torch.mul(x, y), lambda: ops.mul(x, y)),
        "silu": ("1x4096", lambda: F.silu(x), lambda: ops.silu(x)),
        "rms_norm": ("1x4096", lambda: F.rms_norm(x, (4096,), w, 1e-6), lambda: ops.rms_norm(x, w, 1e-6)),
        "softmax": ("1x4096", lambda: torch.softmax(x, -1), lambda: ops.softmax(x, -1)),
        "linear": (
            "1x4096 . 4096x4096",
            lambda: F.linear(x, i["weight"]),
            lambda: ops.linear(x, i["weight"]),
        ),
        "argmax": ("8x151936", lambda: torch.argmax(i["logits"], -1), lambda: ops.argmax(i["logits"], -1)),
        "embedding": (
            "8 ids . 151936x4096",
            lambda: F.embedding(i["ids"], i["table"]),
            lambda: ops.embedding(i["ids"], i["table"]),
        ),
        "cat": (
            "KV append 1x8x2047x128 + 1",
            lambda: torch.cat((i["cache"], i["new_kv"]), 2),
            lambda: ops.cat((i["cache"], i["new_kv"]), 2),
        ),
        "copy": ("1x4096 bf16 -> fp32", lambda: x.to(torch.float32), lambda: ops.copy(x, torch.float32)),
        "scaled_dot_product_attention": (
            "decode 8x32x1x128 kv 8x8x2048",
            lambda: F.scaled_dot_product_attention(i["dq"], i["dk"], i["dv"], enable_gqa=True),
            lambda: ops.scaled_dot_product_attention(i["dq"], i["dk"], i["dv"], enable_gqa=True),
        ),
    }
    table = {op: (case, native, direct, native) for op, (case, native, direct) in rows.items()}
    # rope replaces transformers' apply_rotary_pos_emb, a chain of ATen ops: no single overload to override
    table["rope"] = (
        "decode q 1x32x1x128 k 1x8x1x128",
        lambda: (i["q"] * cos + _rotate_half(i["q"]) * sin, i["k"] * cos + _rotate_half(i["k"]) * sin),
        lambda: ops.rope(i["q"], i["k"], i["cos"], i["sin"]),
        None,
    )
    return table


def registry_calls(names: list[str]) -> dict:
    """Every other registered op at its smallest `llm` case (bf16): native is its reference, direct its
    implementation, use_ops the reference inside use_ops when the op replaces ATen overloads."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from host_overhead import smallest_llm_case

    table = {}
    for op in names:
        spec = REGISTRY[op]
        case, args, kwargs = smallest_llm_case(spec)
        impl = spec.implementation(backends.active().name)

        def native(spec=spec, args=args, kwargs=kwargs):
            return spec.reference(*args, **kwargs)

        def direct(impl=impl, args=args, kwargs=kwargs):
            return impl(*args, **kwargs)

        table[op] = (case.name, native, direct, native if spec.aten else None)
    return table


def dispatch_calls(device) -> dict:
    """What the override itself costs, apart from any op: small float32 tensors, the same ATen call
    natively and inside use_ops (an adapter that returns its input; float64, which falls back; atan2,
    which no op claims)."""
    x, y = torch.randn(4, 64, device=device), torch.randn(4, 64, device=device)
    x64 = x.double()
    return {
        "native add": (lambda: torch.add(x, y), None),
        "override, no-op adapter": (lambda: torch.add(x, y), "noop"),
        "native add float64": (lambda: torch.add(x64, x64), None),
        "fallback (float64)": (lambda: torch.add(x64, x64), "all"),
        "native atan2": (lambda: torch.atan2(x, y), None),
        "not claimed (atan2)": (lambda: torch.atan2(x, y), "all"),
    }


def measure_dispatch(rounds: int, calls: int, clock) -> dict:
    backend = backends.active()
    spec = REGISTRY["add"]
    saved = spec.aten_impls["aten::add.Tensor"]
    out = {}
    for name, (fn, mode) in dispatch_calls(backend.device()).items():
        if mode == "noop":
            spec.aten_impls["aten::add.Tensor"] = lambda impl, self, other, alpha=1: self
        try:
            with (
                torch.inference_mode(),
                (
                    workbench.use_ops(include=["aten::add.Tensor"])
                    if mode == "noop"
                    else workbench.use_ops()
                    if mode == "all"
                    else contextlib.nullcontext()
                ),
            ):
                fn()
                out[name] = round(
                    statistics.median(per_call_us(fn, backend, calls, clock) for _ in range(rounds)), 2
                )
        finally:
            spec.aten_impls["aten::add.Tensor"] = saved
    return out


def _outputs_agree(got, want) -> bool:
    got, want = (got if isinstance(got, tuple) else (got,)), (want if isinstance(want, tuple) else (want,))
    for g, w in zip(got, want):
        if g.dtype != w.dtype or g.shape != w.shape:
            return False
        if g.is_floating_point():
            if not torch.allclose(g.float(), w.float(), rtol=2e-2, atol=2e-2):
                return False
        elif not torch.equal(g, w):
            return False
    return True


def per_call_us(fn, backend, calls: int, clock=time.perf_counter) -> float:
    backend.synchronize()
    t0 = clock()
    for _ in range(calls):
        fn()
    backend.synchronize()
    return (clock() - t0) / calls * 1e6


def measure_ops(names: list[str], rounds: int, calls: int, stub, clock) -> list[dict]:
    """One row per (op, side, round). `stub`: the no_kernels stub in use (its compiles count the launch
    cache's misses), or None."""
    backend = backends.active()
    calls_by_op = op_calls(_inputs(backend.device(), fill=stub is None))
    calls_by_op.update(registry_calls([op for op in names if op not in calls_by_op]))
    rows = []
    for op in names:
        case, native, direct, aten = calls_by_op[op]
        sides = {"direct": (direct, contextlib.nullcontext)}
        if aten is not None:
            sides["use_ops"] = (aten, workbench.use_ops)
        if stub is None:
            sides = {"native": (native, contextlib.nullcontext), **sides}
        with torch.inference_mode():
            if stub is None:
                want = native()
                for side, (fn, context) in sides.items():
                    with context():
                        if not _outputs_agree(fn(), want):
                            raise SystemExit(f"{op}: {side}'s output differs from native's")
            for r in range(rounds):
                for side, (fn, context) in sides.items():
                    with context():
                        fn()  # the first calls of a context compile, autotune, fill the caches
                        fn()
                        compiles = stub.compiles if stub else 0
                        rows.append(
                            {
                                "op": op,
                                "case": case,
                                "side": side,
                                "round": r,
                                "us": per_call_us(fn, backend, calls, clock),
                                "misses": (stub.compiles - compiles) if stub else None,
                            }
                        )
        medians = {
            s: statistics.median(x["us"] for x in rows if x["op"] == op and x["side"] == s) for s in sides
        }
        print(
            f"{op:30s} " + " ".join(f"{s} {us:7.1f}" for s, us in medians.items()),
            file=sys.stderr,
            flush=True,
        )
    return rows


def summarise_ops(rows: list[dict]) -> dict:
    out = {}
    for op in dict.fromkeys(r["op"] for r in rows):
        med = {}
        for side in ("native", "use_ops", "direct"):
            values = [r["us"] for r in rows if r["op"] == op and r["side"] == side]
            med[f"{side}_us"] = round(statistics.median(values), 2) if values else None
        out[op] = med
    return out


def measure_model(
    preset: str,
    layers: int | None,
    reps: int,
    prefill_len: int,
    decode_batch: int,
    decode_prompt: int,
    decode_tokens: int,
) -> dict:
    """`preset`'s dims (Qwen3-8B by default), use_ops alone vs native eager: throughput ratios (native time
    / ours) of a prefill and of greedy decoding."""
    from workbench.models import build_model
    from workbench.models.measure import generate_eager, time_prefill

    backend = backends.active()
    overrides = {"num_hidden_layers": layers} if layers else {}
    model = build_model(preset, **overrides)
    vocab = model.config.vocab_size
    gen = torch.Generator(device=backend.device()).manual_seed(0)
    prefill_ids = torch.randint(0, vocab, (1, prefill_len), device=backend.device(), generator=gen)
    decode_ids = torch.randint(
        0, vocab, (decode_batch, decode_prompt), device=backend.device(), generator=gen
    )
    times: dict[str, dict[str, list[float]]] = {
        "prefill": {"native": [], "use_ops": []},
        "decode": {"native": [], "use_ops": []},
    }
    with torch.inference_mode():
        for side in ("native", "use_ops"):  # warm-up: compiles and autotunes outside the timed rounds
            with workbench.use_ops() if side == "use_ops" else contextlib.nullcontext():
                time_prefill(model, prefill_ids, backend, warmup=1, reps=1)
                generate_eager(model, decode_ids, 4, backend)
        for _ in range(reps):
            for side in ("native", "use_ops"):
                with workbench.use_ops() if side == "use_ops" else contextlib.nullcontext():
                    times["prefill"][side].append(time_prefill(model, prefill_ids, backend, warmup=0, reps=1))
                    times["decode"][side].append(generate_eager(model, decode_ids, decode_tokens, backend)[1])
    med = {phase: {side: statistics.median(v) for side, v in sides.items()} for phase, sides in times.items()}
    with torch.inference_mode():
        decode_detail = decode_breakdown(model, decode_ids, backend)
    return {
        "prefill_vs_eager": round(med["prefill"]["native"] / med["prefill"]["use_ops"], 3),
        "decode_vs_eager": round(med["decode"]["native"] / med["decode"]["use_ops"], 3),
        "preset": preset,
        "layers": model.config.num_hidden_layers,
        "reps": reps,
        "prefill": [1, prefill_len],
        "decode": [decode_batch, decode_prompt, decode_tokens],
        "ms": {phase: {side: round(v, 2) for side, v in sides.items()} for phase, sides in med.items()},
        "raw_ms": times,
        "decode_wall_ms_per_step": {
            side: round(ms / (decode_tokens - 1), 3) for side, ms in med["decode"].items()
        },
        **decode_detail,
    }


def decode_breakdown(model, ids: torch.Tensor, backend, short: int = 8, long: int = 24) -> dict:
    """Where a decode step's time goes: the device time per step of each side (from the profiler: the
    difference of a `long`- and a `short`-token greedy generate, so the prompt cancels), beside the wall
    time the rounds measured; host-bound where it is far below. And `use_ops`' coverage of one generate of
    `long` tokens (prompt included): calls, handled, fallback and why, per ATen overload."""
    from workbench.models.measure import generate_eager, profile_kernels

    def device_total(new_tokens: int) -> float | None:
        table = profile_kernels(lambda: generate_eager(model, ids, new_tokens, backend), backend, top=0)
        return float(table.ms[table.kernel == "(total)"].iloc[0]) if len(table) else None  # none: interpreter

    device_ms = {}
    for side in ("native", "use_ops"):
        with workbench.use_ops() if side == "use_ops" else contextlib.nullcontext():
            first, last = device_total(short), device_total(long)
        device_ms[side] = None if first is None else round((last - first) / (long - short), 3)
    with workbench.use_ops() as cov:
        generate_eager(model, ids, long, backend)
    return {
        "decode_device_ms_per_step": device_ms,
        "decode_coverage": {"new_tokens": long, "rows": cov.table().to_dict(orient="records")},
    }


def profile(op: str, calls: int, stub: bool) -> None:
    backend = backends.active()
    table = op_calls(_inputs(backend.device(), fill=not stub))
    _, _, direct, aten = table[op] if op in table else registry_calls([op])[op]
    for side, fn, context in (
        ("direct", direct, contextlib.nullcontext),
        ("use_ops", aten, workbench.use_ops),
    ):
        if fn is None:
            continue
        with torch.inference_mode(), context():
            fn()
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(calls):
                fn()
            prof.disable()
        print(f"==== {op} {side}")
        pstats.Stats(prof).sort_stats("tottime").print_stats(18)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parents[1]),
        help="directory that receives benchmarks/results/...",
    )
    parser.add_argument(
        "--ops",
        nargs="*",
        default=None,
        help=f"default: {' '.join(OPS)}; any registered op (at its smallest llm case); 'all'",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=CALLS)
    parser.add_argument("--stub", action="store_true", help="launches go to a fake kernel: Python cost only")
    parser.add_argument("--profile", metavar="OP")
    parser.add_argument(
        "--model", action="store_true", help="also Qwen3-8B dims, use_ops alone vs native eager"
    )
    parser.add_argument("--layers", type=int, help="decoder layers of the model run (default: all 36)")
    parser.add_argument("--model-reps", type=int, default=3)
    parser.add_argument("--preset", default="qwen3-8b", help="model dims (workbench.models presets)")
    parser.add_argument("--prefill-len", type=int, default=2048)
    parser.add_argument("--decode-batch", type=int, default=8)
    parser.add_argument("--decode-prompt", type=int, default=512)
    parser.add_argument("--decode-tokens", type=int, default=128)
    args = parser.parse_args()
    names = args.ops or OPS
    if names == ["all"]:
        names = OPS + sorted(set(REGISTRY) - set(OPS))
    stubbed = no_kernels("cached") if args.stub else contextlib.nullcontext()
    if args.profile:
        with stubbed:
            profile(args.profile, args.calls, args.stub)
        return
    # Stubbed, there is no device to wait for: the process's cpu time, which other processes on a shared
    # host disturb less than the wall clock.
    clock = time.process_time if args.stub else time.perf_counter
    with stubbed as stub:
        rows = measure_ops(names, args.rounds, args.calls, stub, clock)
    dispatch = measure_dispatch(args.rounds, args.calls, clock)
    meta = run_metadata()
    summary = {k: meta[k] for k in ("device", "torch", "triton", "commit")}
    summary["command"] = " ".join(["python3", "benchmarks/host_cost.py", *sys.argv[1:]])
    summary["stubbed_launches"] = args.stub
    summary["calls"], summary["rounds"] = args.calls, args.rounds
    summary["ops"] = summarise_ops(rows)
    if args.stub:
        summary["launch_cache_misses"] = sum(r["misses"] for r in rows)
    summary["dispatch_us"] = dispatch
    summary["model_aten_only"] = (
        measure_model(
            args.preset,
            args.layers,
            max(3, args.model_reps),
            args.prefill_len,
            args.decode_batch,
            args.decode_prompt,
            args.decode_tokens,
        )
        if args.model
        else None
    )
    out = results_dir(args.out, "host", meta)
    import pandas as pd

    pd.DataFrame(rows).assign(device=meta["device"], commit=meta["commit"]).to_csv(
        out / "host_cost.csv", index=False
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(
        f"{meta['device']} · torch {meta['torch']} · triton {meta['triton']} · µs per call, median of "
        f"{args.rounds} rounds of {args.calls} calls{' (launches stubbed)' if args.stub else ''}"
    )
    print(f"{'op':30s} {'native':>8s} {'direct':>8s} {'use_ops':>8s} {'d-nat':>7s} {'u-nat':>7s}  targets")
    for op, m in summary["ops"].items():
        nat, dire, use = m["native_us"], m["direct_us"], m["use_ops_us"]

        def fmt(v):
            return f"{v:8.1f}" if v is not None else f"{'-':>8s}"

        verdict = ""
        if nat is not None:
            ok_d = dire - nat <= DIRECT_MARGIN
            ok_u = use is None or use - nat <= USE_OPS_MARGIN.get(op, DEFAULT_USE_OPS_MARGIN)
            verdict = ("direct ok" if ok_d else "direct MISS") + (
                ", use_ops ok" if ok_u else ", use_ops MISS"
            )
            print(
                f"{op:30s} {fmt(nat)} {fmt(dire)} {fmt(use)} {dire - nat:7.1f} "
                f"{(use - nat) if use is not None else float('nan'):7.1f}  {verdict}"
            )
        else:
            print(f"{op:30s} {fmt(nat)} {fmt(dire)} {fmt(use)}")
    print("the override alone (µs per call): " + ", ".join(f"{k} {v}" for k, v in dispatch.items()))
    if args.stub:
        print(f"launch cache misses in timed calls (should be 0): {summary['launch_cache_misses']}")
    if summary["model_aten_only"]:
        m = summary["model_aten_only"]
        print(
            f"{m['preset']} dims ({m['layers']} layers), use_ops alone vs native eager: prefill "
            f"{m['prefill_vs_eager']}x [>= 0.9], decode {m['decode_vs_eager']}x [>= 0.75]"
        )
        wall, device = m["decode_wall_ms_per_step"], m["decode_device_ms_per_step"]
        print(
            "decode ms per step, wall (device): "
            + ", ".join(f"{side} {wall[side]} ({device[side]})" for side in wall)
        )
        fallbacks = [r for r in m["decode_coverage"]["rows"] if r["fallback"]]
        print(
            "use_ops fallbacks in a decode: "
            + ("; ".join(f"{r['aten_op']} {r['fallback']} ({r['reasons']})" for r in fallbacks) or "none")
        )
    print(f"wrote {out / 'summary.json'}")


if __name__ == "__main__":
    main()
