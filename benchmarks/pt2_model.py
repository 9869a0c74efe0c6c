"""Whole models through torch.compile: the workbench backend against native eager, inductor and CUDA graphs.

Run from the repo root (the device copy has no .git, so pass the commit):
    WORKBENCH_COMMIT=$(git rev-parse HEAD) PYTHONPATH=$PWD python3 benchmarks/pt2_model.py --out $OUT
    ... --models qwen3-8b  /  --models llama-3-8b   (one model per call, ~6-7 min each on an H200;
                                                   the second call adds its model to summary.json)
    ... --smoke               (tiny models on the cpu: checks that the script runs)

Per model (transformers Qwen3-8B / Llama-3-8B dims, seeded random bf16 weights, normal std 0.02):
- prefill, 1 x 2048 tokens, last-position logits: native eager, native `torch.compile` (inductor
  default) and ours (`torch.compile(backend="workbench")`: our kernels and fusion patterns, inductor for
  the rest); rounds alternate native eager, native compiled, ours; medians of --rounds;
- decode, batch 8, 128 greedy tokens after a 512-token prompt on a static KV cache: native eager,
  native compiled with CUDA graphs (`mode="reduce-overhead"`), ours with CUDA graphs (inductor's CUDA
  graph trees); the prompt runs eagerly first and is not timed (the 127 decode steps are); rounds
  alternate as above;
- accuracy against native eager, with native compiled's own error beside ours as the baseline (bf16
  rounding that differs from eager's, as inductor's fused code does too, is not a bad kernel):
  last-position prefill logits relative error (`logits_rel_err`, `logits_rel_err_native_compiled`), and
  each side's (native eager's too) against the same weights in float32 (`logits_rel_err_vs_fp32`: the
  bf16 sides' distance from the exact result, which says whether ours is further from it than native);
  greedy decode token agreement over the decoded positions, teacher-forced: every step is fed native
  eager's token, and its greedy token is compared with native eager's next one (`token_agreement`,
  `token_agreement_native_compiled`: the share of steps whose next-token choice matches, given the same
  history). The free-running agreement (each side fed its own tokens; one early difference changes every
  later position, which random weights make likely even for native compiled) is kept as
  `token_agreement_free_running` (and `..._native_compiled`). The timed decode rounds are the
  teacher-forced runs (the same work as free-running ones); the warm-up round runs free;
- compile time: the first prefill call of ours and of native inductor (and of the decode step). It
  depends on what the kernel caches already hold (Triton's compiled kernels, our tuning choices: a cold
  process autotunes every matmul shape it meets); `kernel_caches_at_start` in the summary says;
- with --profile, one more prefill and decode (its steps, not the eager prompt) per side under the
  profiler: each side's device time per phase (`device_ms`; beside `prefill_ms` / `decode_ms` it shows
  how long the device waited on the host) and the time per kernel (raw.json `kernels`), which a compiled
  graph needs since its kernels have no ATen op above them.

Ours takes the ops in --include (default: workbench.compile.OVER_INDUCTOR, the matmul, attention,
embedding and fused ops; inductor fuses the small elementwise ops better than separate kernels could)
with --exclude taken out, through the backend's `fastest` option (each node our kernel takes is timed
against its ATen op on the node's inputs and kept native unless ours is faster; --all-nodes: every node our
kernels accept). Writes benchmarks/results/<device>/pt2/summary.json (keys: device, torch,
triton, commit, command, models: {<model>: {prefill_vs_compiled, prefill_vs_eager, decode_vs_compiled,
decode_vs_eager, logits_rel_err, token_agreement (teacher-forced), compile_s, compile_s_native, the
native-compiled baselines and the free-running agreement, ...}}) plus raw.json with
every timing, under --out (default: the repo), and prints a short table last. Both files are written
once a model's prefill is measured too (`complete`: false until its decode is), so that a run cut off
by a time limit keeps what it measured.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
LLAMA3_8B = {
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 128256,
    "max_position_embeddings": 8192,
    "rope_theta": 500000.0,
    "rms_norm_eps": 1e-5,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "attention_bias": False,
    "mlp_bias": False,
    "initializer_range": 0.02,
}
TINY_LLAMA = dict(
    LLAMA3_8B,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=1,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    vocab_size=512,
    max_position_embeddings=256,
)


def build(name: str, layers: int | None, smoke: bool) -> torch.nn.Module:
    from workbench.models.build import ATTN_IMPLEMENTATION, _default_dtype, build_model, seeded_init

    if name == "qwen3-8b":
        overrides = {"num_hidden_layers": layers} if layers else {}
        if smoke:
            overrides["num_hidden_layers"] = 1
        return build_model("tiny" if smoke else "qwen3-8b", init_std=0.02, **overrides)
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        **{
            **(TINY_LLAMA if smoke else LLAMA3_8B),
            **({"num_hidden_layers": layers} if layers and not smoke else {}),
        }
    )
    config._attn_implementation = ATTN_IMPLEMENTATION
    from workbench import backends

    with torch.device(backends.active().device()), _default_dtype(torch.bfloat16):
        model = LlamaForCausalLM(config)
    seeded_init(model, seed=0, std=0.02)
    return model.eval()


class Clock:
    """Device time of one call (CUDA events), or wall time on the cpu."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def __call__(self, fn) -> float:
        if self.cuda:
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            fn()
            stop.record()
            stop.synchronize()
            return start.elapsed_time(stop)
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3


def alternate(variants: dict, rounds: int) -> dict[str, list[float]]:
    """`rounds` rounds, each running every variant (a function returning its ms) once in turn."""
    times = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            times[name].append(fn())
    return times


def timed_first_call(fn) -> float:
    """Seconds of a first call (the compilation), synchronised."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float(), b.float()
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def float32_logits(model, ids: torch.Tensor) -> torch.Tensor:
    """Last-position prefill logits of `model`'s weights in float32 (a copy, freed before returning)."""
    import copy

    exact = copy.deepcopy(model).float()
    logits = exact(input_ids=ids, use_cache=False, logits_to_keep=1).logits[:, -1]
    del exact
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return logits


class Decoder:
    """Greedy decoding on a static cache: the prompt eagerly, then `new_tokens` - 1 steps of `step_fn`
    (a forward: eager, compiled, or compiled with CUDA graphs)."""

    def __init__(self, model, batch: int, prompt_len: int, new_tokens: int):
        from workbench.models.measure import _static_cache, cache_kwarg

        self.model, self.new_tokens, self.prompt_len = model, new_tokens, prompt_len
        self.cache = _static_cache(model, batch, prompt_len + new_tokens)
        self.kw = cache_kwarg(model)
        self.keys = torch.arange(prompt_len + new_tokens, device=model.device)

    def run(
        self, forward, ids: torch.Tensor, clock: Clock | None = None, teacher: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, float]:
        """(tokens [batch, new_tokens], ms of the decode steps; the prompt is not timed). `teacher`
        ([batch, new_tokens], e.g. native eager's tokens): each step is fed the teacher's token at its
        position instead of its own last one; the tokens returned are still the forward's own choices."""
        self.cache.reset()
        model, batch = self.model, ids.shape[0]
        logits = model(
            input_ids=ids,
            **{self.kw: self.cache},
            use_cache=True,
            logits_to_keep=1,
            cache_position=torch.arange(self.prompt_len, device=ids.device),
        ).logits
        tokens = [logits[:, -1].argmax(-1, keepdim=True)]
        # contiguous like an argmax's own output: the compiled steps' guards see the same strides
        feeds = (
            None
            if teacher is None
            else [teacher[:, i : i + 1].contiguous() for i in range(self.new_tokens - 1)]
        )
        ms = (clock or Clock(ids.device))(lambda: self._steps(forward, tokens, batch, ids.device, feeds))
        return torch.cat(tokens, 1), ms

    def _steps(self, forward, tokens: list, batch: int, device: torch.device, feeds: list | None) -> None:
        tok = tokens[0]
        for i in range(self.new_tokens - 1):
            if feeds is not None:
                tok = feeds[i]
            pos = self.prompt_len + i
            position = torch.full((batch, 1), pos, dtype=torch.long, device=device)
            mask = (self.keys[None, :] <= pos)[:, None, None, :].expand(batch, 1, 1, -1)
            logits = forward(
                input_ids=tok,
                position_ids=position,
                attention_mask=mask,
                cache_position=position[0],
                **{self.kw: self.cache},
                use_cache=True,
                logits_to_keep=1,
            ).logits
            tok = logits[:, -1].argmax(-1, keepdim=True)
            tokens.append(tok)


def kernel_caches(device: str) -> dict:
    """How warm the caches that compile times depend on were: Triton's compiled kernels (every device's)
    and the tuning store's choices for this device (`docs/measurement.md`)."""
    import os

    from workbench.store import ResultStore, default_store_path

    triton_dir = Path(os.environ.get("TRITON_CACHE_DIR") or Path.home() / ".triton" / "cache")
    store = default_store_path()
    tuned = ResultStore(store).tuning_rows() if Path(store).exists() else None
    return {
        "triton_kernels": sum(1 for _ in triton_dir.rglob("*.cubin")) if triton_dir.is_dir() else 0,
        "tuning_choices": 0 if tuned is None else int((tuned["device"] == device).sum()),
    }


def progress(model: str, stage: str, seconds: float | None = None) -> None:
    """A line per stage, so that a run cut short by its time limit shows where the time went."""
    took = "" if seconds is None else f" in {seconds:.1f} s"
    print(f"[pt2] {time.strftime('%H:%M:%S')} {model}: {stage}{took}", flush=True)


def kernel_profiles(phases: dict[str, dict]) -> tuple[dict, list[dict]]:
    """Every side's kernel table in every phase ({phase: {side: function returning `profile_kernels`'
    table}}): ({phase: {side: device ms}}, the kernel rows with their phase and side). Device ms beside
    the timed ms says how much of a phase the host leaves the device idle."""
    totals: dict = {}
    rows: list[dict] = []
    for phase, sides in phases.items():
        for side, table_of in sides.items():
            table = table_of()
            totals.setdefault(phase, {})[side] = float(table.ms.iloc[0]) if len(table) else None
            rows += table.assign(phase=phase, side=side).to_dict("records")
    return totals, rows


def measure(name: str, args, clock: Clock, checkpoint) -> dict:
    """Every phase of one model; `checkpoint(out)` gets the results so far once prefill is measured (a
    run cut off during decode keeps them)."""
    import workbench.compile

    model = build(name, args.layers, args.smoke)
    device = model.device
    gen = torch.Generator(device=device).manual_seed(0)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (1, args.prefill_len), generator=gen, device=device)
    options = {"include": args.include, "exclude": args.exclude, "fastest": not args.all_nodes}
    forward = type(model).forward.__get__(model)
    native_compiled = torch.compile(forward)
    ours = torch.compile(forward, backend="workbench", options=options)
    out: dict = {"layers": model.config.num_hidden_layers, **options}
    workbench.compile.reset_coverage()
    with torch.inference_mode():

        def prefill(fn):
            return lambda: fn(input_ids=ids, use_cache=False, logits_to_keep=1).logits

        out["compile_s_native"] = timed_first_call(prefill(native_compiled))
        progress(name, "prefill compiled natively", out["compile_s_native"])
        out["compile_s"] = timed_first_call(prefill(ours))
        progress(name, "prefill compiled with ours", out["compile_s"])
        # the last position's logits (what generate keeps): no other graph to compile for all of them
        variants = {"eager": prefill(forward), "compiled": prefill(native_compiled), "ours": prefill(ours)}
        last = {side: fn()[:, -1] for side, fn in variants.items()}
        out["logits_rel_err"] = rel_err(last["ours"], last["eager"])
        out["logits_rel_err_native_compiled"] = rel_err(last["compiled"], last["eager"])
        # every side against the same weights computed in float32: how far each is from the exact result
        exact = float32_logits(model, ids)
        out["logits_rel_err_vs_fp32"] = {side: rel_err(logits, exact) for side, logits in last.items()}
        times = alternate({k: (lambda fn=fn: clock(fn)) for k, fn in variants.items()}, args.rounds)
        out["prefill_ms"] = {k: statistics.median(v) for k, v in times.items()}
        out["prefill_raw_ms"] = times
        out["prefill_vs_compiled"] = out["prefill_ms"]["compiled"] / out["prefill_ms"]["ours"]
        out["prefill_vs_eager"] = out["prefill_ms"]["eager"] / out["prefill_ms"]["ours"]
        progress(name, f"prefill timed: {out['prefill_vs_compiled']:.3f}x native compiled")
        checkpoint(out)

        prompt = torch.randint(0, vocab, (args.batch, args.prompt_len), generator=gen, device=device)
        decoder = Decoder(model, args.batch, args.prompt_len, args.new_tokens)
        graphs = device.type == "cuda"
        native_graphs = torch.compile(forward, mode="reduce-overhead" if graphs else None, dynamic=False)
        ours_graphs = torch.compile(
            forward, backend="workbench", dynamic=False, options={**options, "cudagraphs": graphs}
        )
        out["decode_compile_s_native"] = timed_first_call(lambda: decoder.run(native_graphs, prompt))
        progress(name, "decode compiled natively", out["decode_compile_s_native"])
        out["decode_compile_s"] = timed_first_call(lambda: decoder.run(ours_graphs, prompt))
        progress(name, "decode compiled with ours", out["decode_compile_s"])
        steps = {"eager": forward, "compiled": native_graphs, "ours": ours_graphs}
        # warm-up, free-running (CUDA graph trees record on their first calls): native eager's tokens are
        # the reference, fed to every side in the timed rounds (teacher forcing)
        free = {k: decoder.run(f, prompt)[0] for k, f in steps.items()}
        forced = {}

        def decode(key, fn):
            forced[key], ms = decoder.run(fn, prompt, clock, teacher=free["eager"])
            return ms

        decode_variants = {k: functools.partial(decode, k, f) for k, f in steps.items()}
        times = alternate(decode_variants, args.rounds)
        out["decode_ms"] = {k: statistics.median(v) for k, v in times.items()}
        out["decode_raw_ms"] = times
        out["decode_vs_compiled"] = out["decode_ms"]["compiled"] / out["decode_ms"]["ours"]
        out["decode_vs_eager"] = out["decode_ms"]["eager"] / out["decode_ms"]["ours"]
        out["decode_tok_s"] = {
            k: args.batch * args.new_tokens / (ms / 1e3) for k, ms in out["decode_ms"].items()
        }

        # over the decoded positions (the first token is the eager prompt's, the same for every side)
        def agreement(tokens):
            return float((tokens[:, 1:] == free["eager"][:, 1:]).float().mean())

        out["token_agreement"] = agreement(forced["ours"])
        out["token_agreement_native_compiled"] = agreement(forced["compiled"])
        out["token_agreement_native_eager_rerun"] = agreement(forced["eager"])  # 1.0 unless eager varies
        out["token_agreement_free_running"] = agreement(free["ours"])
        out["token_agreement_free_running_native_compiled"] = agreement(free["compiled"])
        if args.profile:  # one more run of each side per phase, its kernels timed by the profiler
            from workbench import backends
            from workbench.models.measure import profile_kernels

            backend = backends.active()

            def decode_table(fn):
                """The kernel table of the decode steps alone, as timed (the eager prompt left out)."""
                tables = []

                def profiled(steps):  # decoder.run's clock: profiles the steps instead of timing them
                    tables.append(profile_kernels(steps, backend))
                    return 0.0

                decoder.run(fn, prompt, profiled, free["eager"])
                return tables[0]

            phases = {
                "prefill": {k: functools.partial(profile_kernels, fn, backend) for k, fn in variants.items()},
                "decode": {k: functools.partial(decode_table, f) for k, f in steps.items()},
            }
            try:
                out["device_ms"], out["kernels"] = kernel_profiles(phases)
            except Exception as e:  # noqa: BLE001 (the profile must not cost the measurements above)
                out["profile_error"] = f"{type(e).__name__}: {e}"
            progress(name, "profiled")
    cov = workbench.compile.compile_coverage()
    out["coverage"] = cov.to_dict("records")
    out["aten_ops_served"] = int(((cov["handled"] > 0) & cov["aten_op"].str.startswith("aten::")).sum())
    out["patterns_fired"] = {
        r["op"]: int(r["handled"]) for r in out["coverage"] if r["aten_op"].startswith("(pattern)")
    }
    torch._dynamo.reset()  # frees the compiled graphs (and their CUDA graph pools) before the next model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--models", nargs="+", default=["qwen3-8b", "llama-3-8b"], choices=["qwen3-8b", "llama-3-8b"]
    )
    p.add_argument(
        "--layers", type=int, help="decoder layers (default: the model's); fewer to fit a time limit"
    )
    p.add_argument("--smoke", action="store_true", help="tiny models and shapes on the cpu (does it run?)")
    p.add_argument("--rounds", type=int, default=5, help="alternated rounds per phase (median; >= 3)")
    p.add_argument("--prefill-len", type=int, default=2048)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--prompt-len", type=int, default=512)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument(
        "--include",
        nargs="+",
        help="ops ours takes ('all': every op; default: workbench.compile.OVER_INDUCTOR)",
    )
    p.add_argument("--exclude", nargs="+", help="ops taken out of --include")
    p.add_argument(
        "--all-nodes",
        action="store_true",
        help="ours takes every node its kernels accept (default: the backend's `fastest` option, each node "
        "timed against its ATen op at compile time and kept native unless ours is faster)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="one more prefill and decode per side under the profiler: device ms per phase and side in the "
        "summary, time per kernel in raw.json",
    )
    p.add_argument("--out", default=str(ROOT), help="directory that receives benchmarks/results/...")
    args = p.parse_args()
    if args.rounds < 3:
        p.error("--rounds: at least 3 (a median of alternated rounds)")
    if args.smoke:
        import os

        os.environ.setdefault("WORKBENCH_BACKEND", "cpu")
        args.prefill_len, args.batch, args.prompt_len, args.new_tokens = 16, 2, 8, 4
    from workbench import backends

    backend = backends.active()  # before triton: it fixes the interpreter mode on the cpu
    import triton

    from workbench.compile import OVER_INDUCTOR

    args.include = None if args.include == ["all"] else args.include or list(OVER_INDUCTOR)

    from workbench.store.meta import results_dir, run_metadata

    meta = run_metadata()
    device_name = meta["device"]
    out_dir = results_dir(args.out, "pt2", meta)
    clock = Clock(torch.device(backend.device_type))
    summary = {
        "device": device_name,
        "torch": torch.__version__,
        "triton": triton.__version__,
        "commit": meta.get("commit"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "smoke": args.smoke,
        "shapes": {
            "prefill": [1, args.prefill_len],
            "decode": [args.batch, args.prompt_len, args.new_tokens],
        },
        "rounds": args.rounds,
        # compile_s and decode_compile_s count what these caches did not already hold
        "kernel_caches_at_start": kernel_caches(backend.properties().name),
        "models": {},
    }
    raw = {"device": device_name}
    previous = out_dir / "summary.json"
    if previous.exists():  # a run split over calls (--models): keep the other models' results
        kept = json.loads(previous.read_text()).get("models", {})
        summary["models"] = {k: v for k, v in kept.items() if k not in args.models}
        summary["models_from_earlier_calls"] = sorted(summary["models"])
    keys = (
        "prefill_vs_compiled",
        "prefill_vs_eager",
        "decode_vs_compiled",
        "decode_vs_eager",
        "logits_rel_err",
        "logits_rel_err_native_compiled",
        "logits_rel_err_vs_fp32",
        "token_agreement",
        "token_agreement_native_compiled",
        "token_agreement_native_eager_rerun",
        "token_agreement_free_running",
        "token_agreement_free_running_native_compiled",
        "compile_s",
        "compile_s_native",
        "decode_compile_s",
        "decode_compile_s_native",
        "aten_ops_served",
        "patterns_fired",
        "layers",
        "prefill_ms",
        "decode_ms",
        "decode_tok_s",
        "wall_s",
        "device_ms",  # with --profile (the kernel rows go to raw.json)
        "profile_error",
    )

    def save(name: str, result: dict, complete: bool) -> None:
        """summary.json and raw.json as they stand: after a model's prefill (complete False) and after
        the whole model."""
        raw[name] = result
        summary["models"][name] = {k: result[k] for k in keys if k in result} | {"complete": complete}
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
        (out_dir / "raw.json").write_text(json.dumps(raw, indent=1, default=str))

    for name in args.models:
        t0 = time.perf_counter()
        print(f"[pt2] {name}: building and compiling", flush=True)
        result = measure(name, args, clock, functools.partial(save, name, complete=False))
        result["wall_s"] = time.perf_counter() - t0
        save(name, result, complete=True)
    print(
        f"\n{'model':<12}{'prefill/compiled':>17}{'prefill/eager':>14}{'decode/compiled':>16}"
        f"{'decode/eager':>13}{'logits err':>11}{'(native)':>9}{'tokens':>8}{'(native)':>9}"
        f"{'compile s':>10}{'native s':>9}"
    )
    for name, r in summary["models"].items():
        r = collections.defaultdict(lambda: float("nan"), r)  # one kept from an earlier call may lack keys
        print(
            f"{name:<12}{r['prefill_vs_compiled']:>17.3f}{r['prefill_vs_eager']:>14.3f}"
            f"{r['decode_vs_compiled']:>16.3f}{r['decode_vs_eager']:>13.3f}{r['logits_rel_err']:>11.2e}"
            f"{r['logits_rel_err_native_compiled']:>9.2e}{r['token_agreement']:>8.3f}"
            f"{r['token_agreement_native_compiled']:>9.3f}"
            f"{r['compile_s']:>10.1f}{r['compile_s_native']:>9.1f}"
        )
    print("(native): native compiled against native eager; tokens: teacher-forced greedy agreement")
    for name, r in summary["models"].items():
        if "logits_rel_err_vs_fp32" in r:
            print(
                f"{name}: logits err against float32, "
                + ", ".join(f"{side} {err:.2e}" for side, err in r["logits_rel_err_vs_fp32"].items())
            )
    print(f"\nwritten: {out_dir / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
