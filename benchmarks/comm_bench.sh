#!/usr/bin/env bash
# On a machine with 2 GPUs, from the repo root: workbench.comm against raw NCCL, then a heterogeneous job.
#   1. flat NCCL, 2 ranks: selfcheck of every operation, then all_reduce / all_gather / reduce_scatter /
#      broadcast / all_to_all from 1 KB to 1 GB: raw torch.distributed, Communicator, Communicator with
#      validation on. Targets: Communicator time <= 1.02x raw for messages >= 1 MB; all_reduce busbw at
#      1 GB >= 90% of raw's in the same run.
#   2. heterogeneous, 3 ranks: a cuda cluster (ranks 0, 1 on the two GPUs, NCCL inside) and a cpu cluster
#      (rank 2, gloo), leaders exchanging through host memory: selfcheck, then 1 KB to 64 MB.
# Writes comm_{nccl,hetero}.{csv,png,txt} and comm.db (ResultStore, kind "comm") under ${OUT:-out}, and
# prints the summaries last. About 2-3 minutes. Usage:
#   WORKBENCH_COMMIT=$(git rev-parse HEAD) bash benchmarks/comm_bench.sh
set -uo pipefail
out=${OUT:-out}; mkdir -p "$out"
export PYTHONPATH=$PWD NCCL_NVLS_ENABLE=0 WORKBENCH_BACKEND=cuda
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'nccl', '.'.join(map(str, torch.cuda.nccl.version())), 'gpus', torch.cuda.device_count())"
bench() {  # bench LIMIT_S NPROC NAME ARGS...
  local limit=$1 nproc=$2 name=$3; shift 3
  timeout "$limit" python3 -m torch.distributed.run --standalone --nproc_per_node="$nproc" \
    -m workbench.cli comm-bench --selfcheck --no-progress --timeout 60 --store "$out/comm.db" \
    --csv "$out/comm_$name.csv" --png "$out/comm_$name.png" "$@" > "$out/comm_$name.txt" 2>&1
  echo "$name rc=$?"
}
bench 150 2 nccl --min-bytes 1K --max-bytes 1G --checked
bench 80 3 hetero --devices cuda cuda cpu --min-bytes 1K --max-bytes 64M --factor 4 --reps 3 --checked
for name in nccl hetero; do
  echo "== $name"
  grep -E "^selfcheck" "$out/comm_$name.txt"
  sed -n '/^[0-9]x /,$p' "$out/comm_$name.txt" | tail -20  # clusters line + summary table
  grep -E "Error|error" "$out/comm_$name.txt" | head -5
done
