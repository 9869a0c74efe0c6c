r"""Launch-configuration sweep behind the bandwidth-bound kernels' defaults.

For the generic elementwise kernels (ops/_elementwise.py: BLOCK, num_warps), the packed-rows rms_norm
kernel (ops/rms_norm.py: rows per program BLOCK_R, num_warps) and the kernels over rows of a vocabulary
(argmax, softmax: BLOCK, num_warps, num_stages; softmax's chunks per row), the row gather of embedding
(ops/embedding.py: rows and columns per program, num_warps), and the causal prefill
attention kernel and the three kernels of attention's backward (BLOCK_M, BLOCK_N, num_warps, num_stages:
compute-bound, timed beside torch's SDPA and its backward), time
every configuration on the llm shapes with the bench's kernel timer (L2 flushed, CUDA events), next to a
device copy moving the same number of bytes: the bandwidth a kernel of that size can reach, which at
16-50 MB is well below the large-copy ceiling of the roofline. From the repo root on a GPU machine:
    WORKBENCH_COMMIT=$(git rev-parse HEAD) PYTHONPATH=$PWD \
        python3 benchmarks/tune_sweep.py --out $OUT [--only argmax softmax]
Writes benchmarks/results/<device>/tune/tune_sweep.csv under --out (default: the repo) and prints, per
kernel and shape, the default and the best configuration.
"""

from __future__ import annotations

import argparse
import importlib
import math
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from workbench import backends  # before triton: it picks the interpreter or compiled mode
from workbench.ops import _attention_backward, _elementwise, _index_check, _rows, _split_rows
from workbench.ops._launch import launch
from workbench.profiling import roofline
from workbench.profiling.timing import kernel_time
from workbench.store.meta import results_dir, run_metadata

# isort: split
import triton  # noqa: E402

DT = torch.bfloat16
DEVICE = backends.active().device()
add_op, argmax_op, embedding_op, exp_op, gelu_op, rms_norm_op, softmax_op, sdpa_op = (
    importlib.import_module(f"workbench.ops.{name}")
    for name in (
        "add",
        "argmax",
        "embedding",
        "exp",
        "gelu",
        "rms_norm",
        "softmax",
        "scaled_dot_product_attention",
    )
)


def ms(fn) -> float:
    return kernel_time(fn, rep_ms=30.0).ms


def copy_ms(nbytes: int) -> float:
    """A device copy reading and writing nbytes / 2 each: the same traffic as the kernel."""
    return nbytes / roofline.copy_gbps(nbytes, rep_ms=30.0) / 1e6


def elementwise_rows(shape) -> list[dict]:
    x = torch.randn(shape, device=DEVICE, dtype=DT)
    y = torch.randn(shape, device=DEVICE, dtype=DT)
    out = torch.empty_like(x)
    n = x.numel()
    kernels = {"exp": (exp_op._exp, 2), "gelu_erf": (gelu_op._gelu_erf, 2), "add": (add_op._add, 3)}
    rows = []
    for name, (fn, tensors) in kernels.items():
        nbytes = tensors * n * x.element_size()
        rows.append(
            dict(
                kernel=name,
                shape=str(shape),
                config="device copy, same bytes",
                ms=copy_ms(nbytes),
                nbytes=nbytes,
            )
        )
        for block in (1024, 2048, 4096, 8192):
            for warps in (4, 8, 16):
                grid = (triton.cdiv(n, block),)
                if tensors == 3:
                    call = lambda: launch(  # noqa: E731
                        _elementwise._binary_flat_kernel,
                        grid,
                        x,
                        y,
                        out,
                        n,
                        0.0,
                        1.0,
                        FN=fn,
                        B_SCALAR=False,
                        SCALE_B=False,
                        BLOCK=block,
                        INT=False,
                        num_warps=warps,
                    )
                else:
                    call = lambda: launch(  # noqa: E731
                        _elementwise._unary_flat_kernel,
                        grid,
                        x,
                        out,
                        n,
                        FN=fn,
                        BLOCK=block,
                        INT=False,
                        num_warps=warps,
                    )
                default = block == _elementwise.BLOCK and warps == 4
                rows.append(
                    dict(
                        kernel=name,
                        shape=str(shape),
                        config=f"BLOCK={block} warps={warps}",
                        default=default,
                        ms=ms(call),
                        nbytes=nbytes,
                    )
                )
    return rows


def rms_norm_rows(shape) -> list[dict]:
    n_rows, n = shape
    x = torch.randn(shape, device=DEVICE, dtype=DT)
    w = torch.randn(n, device=DEVICE, dtype=DT)
    out = torch.empty_like(x)
    nbytes = 2 * x.numel() * x.element_size() + w.numel() * w.element_size()
    block, one_tile = _rows.tile(n)
    rows = [
        dict(
            kernel="rms_norm",
            shape=str(shape),
            config="device copy, same bytes",
            ms=copy_ms(nbytes),
            nbytes=nbytes,
        ),
        dict(
            kernel="rms_norm",
            shape=str(shape),
            config="native torch rms_norm",
            nbytes=nbytes,
            ms=ms(lambda: torch.nn.functional.rms_norm(x, (n,), w, 1e-6)),
        ),
    ]
    default_r = _rows.rows_per_program(n_rows, block)
    for block_r in (1, 2, 4, 8, 16, 32, 64):
        if block_r * block > 32768 or block_r > n_rows:
            continue
        for warps in (1, 2, 4, 8, 16):
            grid = (triton.cdiv(n_rows, block_r),)
            call = lambda: launch(  # noqa: E731
                rms_norm_op._rms_norm_kernel,
                grid,
                x,
                w,
                out,
                n_rows,
                n,
                n,
                1e-6,
                HAS_WEIGHT=True,
                BLOCK_R=block_r,
                BLOCK=block,
                ONE_TILE=one_tile,
                num_warps=warps,
            )
            default = block_r == default_r and warps == _rows.row_warps(block_r * block)
            rows.append(
                dict(
                    kernel="rms_norm",
                    shape=str(shape),
                    config=f"BLOCK_R={block_r} warps={warps}",
                    default=default,
                    ms=ms(call),
                    nbytes=nbytes,
                )
            )
    return rows


def argmax_rows(shape) -> list[dict]:
    """argmax over rows of a vocabulary, one program per row (prefill): tile width, warps, pipeline stages."""
    n_rows, n = shape
    x = torch.randn(shape, device=DEVICE, dtype=DT)
    out = torch.empty(n_rows, dtype=torch.int64, device=DEVICE)
    nbytes = x.numel() * x.element_size()
    rows = [
        dict(
            kernel="argmax",
            shape=str(shape),
            config="device copy, same bytes",
            ms=copy_ms(2 * nbytes) / 2,
            nbytes=nbytes,
        ),
        dict(
            kernel="argmax",
            shape=str(shape),
            config="native torch.argmax",
            nbytes=nbytes,
            ms=ms(lambda: torch.argmax(x, -1)),
        ),
    ]
    chosen = argmax_op._Sizing(x).site.meta  # what the op launches with (Triton's default stages: 3)
    for block in (512, 1024, 2048, 4096, 8192):
        for warps in (4, 8, 16):
            for stages in (1, 3):
                call = lambda: launch(  # noqa: E731
                    argmax_op._argmax_kernel,
                    (n_rows, 1),
                    x,
                    out,
                    out,
                    out,
                    out,
                    n,
                    n,
                    n,
                    BLOCK=block,
                    SPLIT=False,
                    INDEX32=True,
                    VALUES=False,
                    EVEN=n % block == 0,
                    num_warps=warps,
                    num_stages=stages,
                )
                default = (block, warps, stages) == (chosen["BLOCK"], chosen["num_warps"], 3)
                rows.append(
                    dict(
                        kernel="argmax",
                        shape=str(shape),
                        config=f"BLOCK={block} warps={warps} stages={stages}",
                        default=default,
                        ms=ms(call),
                        nbytes=nbytes,
                    )
                )
    return rows


def embedding_rows(shape) -> list[dict]:
    """Row gather (embedding, index_select along dim 0) of n random ids from a vocab x hidden table: rows
    per program, columns per program (a whole row per program reads the table in one pass over the ids),
    warps; beside torch's embedding and `workbench.ops.embedding` as called (its default, host cost
    hidden by the timer)."""
    n, vocab, hidden = shape
    table = torch.randn((vocab, hidden), device=DEVICE, dtype=DT)
    ids = torch.randint(0, vocab, (n,), device=DEVICE)
    out = torch.empty((n, hidden), device=DEVICE, dtype=DT)
    nbytes = 2 * out.numel() * out.element_size() + ids.numel() * ids.element_size()
    flag = _index_check.flag(ids.device)
    base = dict(kernel="embedding", shape=str(shape), nbytes=nbytes)
    rows = [
        dict(base, config="device copy, same bytes", ms=copy_ms(nbytes)),
        dict(base, config="native torch embedding", ms=ms(lambda: F.embedding(ids, table))),
        dict(base, config="workbench.ops.embedding", ms=ms(lambda: embedding_op.embedding(ids, table))),
    ]
    _, ints, site = embedding_op._gather_launch(table, ids, math.nan, True)  # the op's own launch
    chosen = site.meta
    for block_h in (1024, 2048, 4096):
        for block_r in (1, 2, 4, 8):
            for warps in (4, 8):
                grid = (triton.cdiv(n, block_r), triton.cdiv(hidden, block_h))
                call = lambda: launch(  # noqa: E731
                    embedding_op._embedding_kernel,
                    grid,
                    ids,
                    table,
                    out,
                    flag,
                    *ints,
                    OUT_OF_RANGE=math.nan,
                    CHECK=True,
                    BLOCK_R=block_r,
                    BLOCK_H=block_h,
                    num_warps=warps,
                )
                default = (block_r, block_h, warps) == (
                    chosen["BLOCK_R"],
                    chosen["BLOCK_H"],
                    chosen["num_warps"],
                )
                config = f"BLOCK_R={block_r} BLOCK_H={block_h} warps={warps}"
                rows.append(dict(base, config=config, default=default, ms=ms(call)))
    return rows


def softmax_rows(shape) -> list[dict]:
    """softmax over few rows of a vocabulary, each split into chunks (two passes): tile width, warps,
    pipeline stages, chunks per row."""
    n_rows, n = shape
    x = torch.randn(shape, device=DEVICE, dtype=DT)
    y = torch.empty_like(x)
    nbytes = 2 * x.numel() * x.element_size()
    rows = [
        dict(
            kernel="softmax",
            shape=str(shape),
            config="device copy, same bytes",
            ms=copy_ms(nbytes),
            nbytes=nbytes,
        ),
        dict(
            kernel="softmax",
            shape=str(shape),
            config="native torch.softmax",
            nbytes=nbytes,
            ms=ms(lambda: torch.softmax(x, -1)),
        ),
    ]
    default_chunks, _ = _split_rows.chunking(n_rows, n, 8192)
    for block in (4096, 8192):
        for warps in (4, 8, 16):
            for stages in (1, 2):
                for wanted in (default_chunks, 2 * default_chunks, 4 * default_chunks):
                    chunk = triton.cdiv(triton.cdiv(n, wanted), block) * block
                    chunks = triton.cdiv(n, chunk)
                    stats = torch.empty((n_rows, chunks, 2), dtype=torch.float32, device=DEVICE)

                    def call():
                        launch(
                            softmax_op._chunk_stats_kernel,
                            (n_rows, chunks),
                            x,
                            stats,
                            n,
                            n,
                            chunk,
                            BLOCK=block,
                            num_warps=warps,
                            num_stages=stages,
                        )
                        launch(
                            softmax_op._chunk_write_kernel,
                            (n_rows, chunks),
                            x,
                            stats,
                            y,
                            n,
                            n,
                            n,
                            chunk,
                            LOG=False,
                            BLOCK=block,
                            BLOCK_S=triton.next_power_of_2(chunks),
                            num_warps=warps,
                            num_stages=stages,
                        )

                    default = block == 4096 and warps == 16 and stages == 1 and wanted == default_chunks
                    rows.append(
                        dict(
                            kernel="softmax",
                            shape=str(shape),
                            config=f"BLOCK={block} warps={warps} stages={stages} chunks={chunks}",
                            default=default,
                            ms=ms(call),
                            nbytes=nbytes,
                        )
                    )
    return rows


def attention_rows(shape) -> list[dict]:
    """Causal GQA prefill attention (batch, query heads, KV heads, length, head dim): the prefill kernel's
    tile shape, warps and pipeline stages, each alone as the tuner's one candidate, next to torch's SDPA.
    `nbytes` holds the causal matmul FLOPs here (gbps reads as GFLOP/s)."""
    b, hq, hk, n, d = shape
    q = torch.randn((b, hq, n, d), device=DEVICE, dtype=DT)
    k, v = (torch.randn((b, hk, n, d), device=DEVICE, dtype=DT) for _ in range(2))
    flops = 2 * 2 * b * hq * n * n * d // 2
    rows = [
        dict(
            kernel="attention",
            shape=str(shape),
            config="native F.scaled_dot_product_attention",
            nbytes=flops,
            ms=ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)),
        )
    ]
    offered = sdpa_op._prefill.configs
    defaults = {(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps, c.num_stages) for c in offered}
    sweep = [(128, 64, 8, s) for s in (2, 3, 4)] + [(128, 128, 8, s) for s in (2, 3)]
    sweep += [
        (128, 64, 4, 3),
        (128, 32, 4, 3),
        (64, 64, 4, 3),
        (64, 64, 4, 4),
        (64, 128, 4, 3),
        (64, 32, 4, 4),
    ]
    try:
        for m, n_, w, stages in sweep:
            sdpa_op._prefill.configs = [
                triton.Config({"BLOCK_M": m, "BLOCK_N": n_}, num_warps=w, num_stages=stages)
            ]
            sdpa_op._prefill._chosen.clear()
            sdpa_op._tuned.clear()
            call = lambda: sdpa_op.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)  # noqa: E731
            try:
                t = ms(call)
            except Exception as err:  # a tile that does not fit the device's shared memory
                print(f"attention {shape} BLOCK_M={m} BLOCK_N={n_}: {type(err).__name__}")
                continue
            rows.append(
                dict(
                    kernel="attention",
                    shape=str(shape),
                    config=f"BLOCK_M={m} BLOCK_N={n_} warps={w} stages={stages}",
                    default=(m, n_, w, stages) in defaults,
                    ms=t,
                    nbytes=flops,
                )
            )
    finally:
        sdpa_op._prefill.configs = offered
        sdpa_op._prefill._chosen.clear()
        sdpa_op._tuned.clear()
    return rows


def attention_backward_rows(shape) -> list[dict]:
    """Causal GQA attention's backward (batch, query heads, KV heads, length, head dim): every offered
    config applied to all three kernels, then the tuner's choice per kernel, next to torch's SDPA forward and
    forward + backward (its backward alone is their difference). `nbytes` holds the backward's causal
    matmul FLOPs (five products of the forward's size)."""
    b, hq, hk, n, d = shape
    q = torch.randn((b, hq, n, d), device=DEVICE, dtype=DT, requires_grad=True)
    k, v = (torch.randn((b, hk, n, d), device=DEVICE, dtype=DT, requires_grad=True) for _ in range(2))
    dout = torch.randn_like(q)
    with torch.no_grad():
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    flops = 5 * 2 * b * hq * n * n * d // 2

    def native_fwd_bwd():
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        torch.autograd.grad(out, (q, k, v), dout)

    def ours():
        _attention_backward.flash_backward(dout, q.detach(), k.detach(), v.detach(), out, True, None)

    def native_fwd():
        with torch.no_grad():
            F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

    rows = [
        dict(kernel="attention_bwd", shape=str(shape), config=name, nbytes=flops, ms=ms(fn))
        for name, fn in (
            ("native SDPA forward", native_fwd),
            ("native SDPA forward+backward", native_fwd_bwd),
        )
    ]
    tuners = _attention_backward._TUNERS.values()
    offered = next(iter(tuners)).configs

    def reset(configs):
        for tuner in tuners:
            tuner.configs = configs
            tuner._chosen.clear()
        _attention_backward._tuned.clear()

    try:
        for c in [[c] for c in offered] + ([offered] if len(offered) > 1 else []):
            reset(c)
            try:
                t = ms(ours)
            except Exception as err:  # a tile that does not fit the device's shared memory
                print(f"attention_bwd {shape} {[_config_text(x) for x in c]}: {type(err).__name__}")
                continue
            chosen = {t_.name.rsplit(".", 1)[-1]: _config_text(t_.best_config) for t_ in tuners}
            rows.append(
                dict(
                    kernel="attention_bwd",
                    shape=str(shape),
                    config=f"tuned per kernel {chosen}" if len(c) > 1 else _config_text(c[0]),
                    default=c == [offered[0]],
                    ms=t,
                    nbytes=flops,
                )
            )
    finally:
        reset(offered)
    return rows


def _config_text(c) -> str:
    """A tile config as the `config` column spells it."""
    m, n = c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"]
    return f"BLOCK_M={m} BLOCK_N={n} warps={c.num_warps} stages={c.num_stages}"


# The sweeps by section name (`--only`) and the shapes each one times.
SECTIONS = {
    "elementwise": (elementwise_rows, ((2048, 4096), (2048, 12288))),
    "rms_norm": (rms_norm_rows, ((2048, 4096), (65536, 128), (64, 4096))),
    "argmax": (argmax_rows, ((2048, 151936), (8192, 8192))),
    "embedding": (embedding_rows, ((2048, 151936, 4096), (8192, 151936, 4096))),
    "softmax": (softmax_rows, ((64, 151936),)),
    "attention": (attention_rows, ((4, 32, 8, 4096, 128), (1, 32, 8, 2048, 128))),
    "attention_backward": (attention_backward_rows, ((4, 32, 8, 2048, 128), (4, 16, 8, 512, 128))),
}


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
        "--only",
        choices=list(SECTIONS),
        nargs="+",
        help="these sections only (default: all)",
    )
    args = parser.parse_args()
    meta = run_metadata()
    rows = []
    for name, (sweep, shapes) in SECTIONS.items():
        if not args.only or name in args.only:
            rows += [row for shape in shapes for row in sweep(shape)]
    df = pd.DataFrame(rows)
    df["default"] = df["default"].fillna(False).astype(bool)
    df["gbps"] = df["nbytes"] / df["ms"] / 1e6
    df = df.assign(**{k: meta[k] for k in ("device", "torch", "triton", "commit")})
    path = results_dir(args.out, "tune", meta) / "tune_sweep.csv"
    df.to_csv(path, index=False)
    print(f"{meta['device']} · torch {meta['torch']} · triton {meta['triton']}")
    for (kernel, shape), g in df.groupby(["kernel", "shape"], sort=False):
        tuned = g[g["config"].str.contains("=")]
        best = tuned.loc[tuned["ms"].idxmin()]
        default = tuned[tuned["default"]]
        ref = g[~g["config"].str.contains("=")]
        refs = "; ".join(f"{r.config} {r.ms * 1e3:.1f} us ({r.gbps:.0f} GB/s)" for r in ref.itertuples())
        d = (
            f"default {default.iloc[0].config} {default.iloc[0].ms * 1e3:.1f} us"
            if len(default)
            else "default not swept"
        )
        print(
            f"{kernel:9s} {shape:14s} {d} | best {best.config} {best.ms * 1e3:.1f} us "
            f"({best.gbps:.0f} GB/s) | {refs}"
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
