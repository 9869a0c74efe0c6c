#!/usr/bin/env bash
# Every GPU measurement of the project in one call on a 2-GPU machine, the two GPUs working in parallel,
# then the collectives benchmark on both; `final` runs the release set on a 4-GPU machine. Each step has its own time limit; results are packed into
# $OUT/results.tgz after every phase, so a cut-short run still returns what it measured. Usage:
#   WORKBENCH_COMMIT=$(git rev-parse HEAD) OUT=out bash benchmarks/gpu_all.sh [phase1] [comm] [phase2] [tune] [final]
#     [release] [bench] [check] [host] [ops] [verify] [host_cost] [train] [rows] [pt2] [repeat_kv] [repro]
# Compiled kernels and tuning choices outlive the machine: a carried .gpu-cache/cache.tgz (Triton's binaries and
# metadata, and the tuning store, at the same absolute paths) is unpacked first, and both are packed back into
# $OUT/cache.tgz with the results (pt2 records how warm they were when it began).
set -uo pipefail
R=/tmp/wb-results; rm -rf "$R"; mkdir -p "$R" "$OUT"  # a reused machine may keep an earlier run's files
C=/tmp/wb-cache; mkdir -p "$C/triton"; [ -f .gpu-cache/cache.tgz ] && tar xzf .gpu-cache/cache.tgz -C "$C"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} WORKBENCH_BACKEND=cuda NCCL_NVLS_ENABLE=0 WORKBENCH_CACHE=$R/cache \
  TRITON_CACHE_DIR=$C/triton WORKBENCH_STORE=$C/workbench.db
pack() {
  tar czf "$OUT/results.tgz" -C "$R" --exclude cache .
  (cd "$C" && { ls workbench.db 2>/dev/null; find triton \( -name '*.cubin' -o -name '*.json' \) -print; } |
    tar czf "$OUT/cache.tgz" -T -)
}
step() {  # step GPU LIMIT_S NAME CMD...: one script on one GPU, its log under $R
  local gpu=$1 limit=$2 name=$3; shift 3
  # SIGINT first: a Python step cut off by its limit prints where it was (a KeyboardInterrupt traceback)
  CUDA_VISIBLE_DEVICES=$gpu timeout -s INT -k 30 "$limit" "$@" > "$R/$name.log" 2>&1
  echo "$name rc=$? ($(date +%T))"
}
nvidia-smi --query-gpu=index,name,driver_version --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
phases=${*:-phase1 comm phase2}
for phase in $phases; do
  case $phase in
    phase1)
      ( step 0 200 bench python3 benchmarks/run_bench.py --out "$R/bench"
        step 0 90 qwen3_ops python3 benchmarks/qwen3_ops_check.py --out "$R/qwen3_ops" ) &
      ( step 1 230 model python3 benchmarks/qwen3_model.py --out "$R/model" ) &
      wait ;;
    comm)
      OUT=$R/comm bash benchmarks/comm_bench.sh > "$R/comm.log" 2>&1; echo "comm rc=$?" ;;
    tune)  # host overhead per launch path (GPU 0), the launch-config sweep and a quick check (GPU 1)
      step 0 200 host_overhead env WORKBENCH_AUTOTUNE=0 python3 benchmarks/host_overhead.py --out "$R/host" &
      ( step 1 200 tune python3 benchmarks/tune_sweep.py --out "$R/tune"
        step 1 150 check python3 -m workbench.cli check --cases quick --no-progress --csv "$R/check_cuda_quick.csv" ) &
      wait ;;
    final)  # 4 GPUs: the op bench + attention timing; the full model + host overhead; the MLU variants
            # (correctness of mlu and generic kernels under the MLU rules, and their speed) split over two GPUs
      ops=$(python3 -c "from workbench.ops import REGISTRY; print(' '.join(REGISTRY))" 2>/dev/null)
      half_a=$(echo $ops | tr ' ' '\n' | awk 'NR % 2 == 1' | tr '\n' ' ')
      half_b=$(echo $ops | tr ' ' '\n' | awk 'NR % 2 == 0' | tr '\n' ' ')
      ( step 0 330 bench python3 benchmarks/run_bench.py --out "$R/bench"
        step 0 120 attention python3 benchmarks/attention_check.py --out "$R/attention" --skip-check ) &
      ( step 1 330 model python3 benchmarks/qwen3_model.py --out "$R/model" --budget-s 250
        step 1 120 host_overhead env WORKBENCH_AUTOTUNE=0 python3 benchmarks/host_overhead.py --out "$R/host" ) &
      step 2 450 mlu_a env WORKBENCH_AUTOTUNE=0 python3 benchmarks/mlu_variants_cuda.py --out "$R/mlu_a" --budget-s 420 --ops $half_a &
      step 3 450 mlu_b env WORKBENCH_AUTOTUNE=0 python3 benchmarks/mlu_variants_cuda.py --out "$R/mlu_b" --budget-s 420 --ops $half_b &
      wait ;;
    release)  # 2 GPUs: the op bench (GPU 0); the full model, host overhead and the topk paths (GPU 1)
      step 0 500 bench python3 benchmarks/run_bench.py --out "$R/bench" &
      ( step 1 330 model python3 benchmarks/qwen3_model.py --out "$R/model" --budget-s 250
        step 1 120 host_overhead env WORKBENCH_AUTOTUNE=0 python3 benchmarks/host_overhead.py --out "$R/host"
        step 1 60 topk python3 benchmarks/topk_variants.py --out "$R/topk" ) &
      wait ;;
    check)  # correctness on cuda ($CHECK_CASES, default quick,edge,llm) of $CHECK_OPS (default: every op) over every
            # GPU: `check --devices` with $CHECK_JOBS (2) workers per GPU (compiling is the slow part; more workers run
            # out of memory on the big cases), ops balanced by their seconds in earlier runs; $CHECK_LIMIT_S for all
      gpus=$(nvidia-smi -L | wc -l)
      devices=$(for ((j = 0; j < ${CHECK_JOBS:-2}; j++)); do seq 0 $((gpus - 1)); done | paste -sd,)
      step "$(seq -s, 0 $((gpus - 1)))" "${CHECK_LIMIT_S:-400}" check env WORKBENCH_AUTOTUNE=0 python3 -m workbench.cli \
        check ${CHECK_OPS:-} --cases "${CHECK_CASES:-quick,edge,llm}" --devices "$devices" \
        --worker-timeout $((${CHECK_LIMIT_S:-400} - 30)) --store "$R/workbench.db" --no-progress --csv "$R/check.csv"
      grep "^backend" "$R/check.log" ;;
    host)  # host overhead per op, alone on GPU 0
      step 0 150 host_overhead env WORKBENCH_AUTOTUNE=0 python3 benchmarks/host_overhead.py --out "$R/host" ;;
    host_cost)  # one GPU, about 3.5 min: host cost per call and of the model through use_ops alone
      step 0 200 host_cost python3 benchmarks/host_cost.py --out "$R/host" --rounds 3 --model --layers 18 ;;
    ops)  # the op bench of $BENCH_OPS alone on GPU 0
      step 0 300 bench python3 benchmarks/run_bench.py --out "$R/bench" --ops $BENCH_OPS ;;
    bench)  # the op bench alone (GPU 0); the attention llm cases checked with native's error beside (GPU 1)
      step 0 330 bench python3 benchmarks/run_bench.py --out "$R/bench" &
      step 1 200 sdpa_check python3 -m workbench.cli check scaled_dot_product_attention --cases llm --dtype bf16 --no-progress --csv "$R/sdpa_check_llm.csv" &
      wait ;;
    verify)  # one GPU, about 9 min: the kernels that order their programs with a counter, argmax's NaN pass,
             # the kernel profile of a CUDA graph replay, a compiled decode step replayed as a CUDA graph and
             # attention with its mask spans (tests on cuda), then attention beside the peers, then every
             # case beside them as the budget allows; packed after each
      step 0 90 verify_tests python3 -m pytest -q -p no:cacheprovider tests/test_matmul_split_k.py \
        tests/test_index_checks.py tests/test_reduce_split.py tests/test_scratch.py \
        tests/test_models.py::test_kernel_profile_sees_the_kernels_of_a_graph_replay \
        tests/test_compile.py::test_a_compiled_decode_step_replays_as_a_cuda_graph
      step 0 90 attention_tests python3 -m pytest -q -p no:cacheprovider tests/test_attention_ops.py
      pack
      step 0 130 peers_sdpa python3 benchmarks/peers.py --out "$R/peers_sdpa" --only scaled_dot_product_attention \
        --budget-s 110 --case-s 40; pack
      step 0 220 peers python3 benchmarks/peers.py --out "$R/peers" --budget-s 190 --case-s 45 ;;
    train)  # one GPU, up to $TRAIN_LIMIT_S (9.5 min): the training step, most of it the first step's compiling
            # and tuning (about 5 min cold on an H100, 3-4 with a carried .gpu-cache; TRAIN_AUTOTUNE=0 takes the
            # first fitting config of every tuned kernel, untimed). $TRAIN_ARGS: the options (default: the run
            # the targets are read from, compiled with CUDA graphs beside native eager and compiled)
      step 0 "${TRAIN_LIMIT_S:-570}" train env WORKBENCH_AUTOTUNE="${TRAIN_AUTOTUNE:-1}" python3 benchmarks/train_step.py \
        --commit "${WORKBENCH_COMMIT:-}" --out "$R/train" \
        ${TRAIN_ARGS:---execution compile --cudagraphs --native-compiled --profile} ;;
    rows)  # one GPU, about 6.5 min: the row-winner launch (argmax, max), the row gather, prefill attention's and its backward's configs swept,
           # then max, argmax and the lookups beside the peers
      step 0 260 tune python3 benchmarks/tune_sweep.py --out "$R/tune" --only argmax embedding attention attention_backward
      step 0 130 peers python3 benchmarks/peers.py --out "$R/peers" --only max,argmax,embedding,index_select --budget-s 110 --case-s 40 ;;
    pt2)  # one GPU, 3-4 min a model without a profile: $PT2_MODELS (default both; each model's results are
          # written as soon as they are measured, so a run cut off by the limit keeps the first) through
          # torch.compile, 18 decoder layers. $PT2_ARGS: e.g. --profile (where each side's device time goes;
          # with it, both models in one call outran the 560 s limit on an H200: one model a call then)
      step 0 "${PT2_LIMIT_S:-560}" pt2 python3 benchmarks/pt2_model.py --out "$R/pt2" \
        --models ${PT2_MODELS:-qwen3-8b llama-3-8b} --layers 18 ${PT2_ARGS:-} ;;
    repeat_kv)  # one GPU, under a minute: the repeat_kv fold at one decode layer of Qwen3-8B dims
      step 0 90 repeat_kv python3 benchmarks/repeat_kv.py --out "$R/repeat_kv" ;;
    repro)  # one GPU, about 8.5 min: three fresh processes of the Qwen3-8B-dims comparison, one tuning cache
      step 0 560 repro python3 benchmarks/repro.py --out "$R/repro" --layers 18 ;;
    phase2)
      step 0 150 attention python3 benchmarks/attention_check.py --out "$R/attention" &
      step 1 110 mlu python3 benchmarks/mlu_variants_cuda.py --out "$R/mlu" &
      wait ;;
  esac
  pack
done
for f in "$R"/*.log; do [ -e "$f" ] || continue; echo "===== $(basename "$f")"; tail -n 14 "$f"; done
