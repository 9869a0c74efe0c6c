#!/usr/bin/env bash
# On a GPU machine, from the repo root: the test suite and `workbench check` over every case set on cuda.
# Writes check_cuda.csv / check_cuda.txt / pytest_cuda.txt under ${OUT:-out}. Usage:
#   WORKBENCH_COMMIT=$(git rev-parse HEAD) bash benchmarks/check_gpu.sh
set -uo pipefail
out=${OUT:-out}; mkdir -p "$out"
export PYTHONPATH=$PWD WORKBENCH_BACKEND=cuda
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
python3 -m pytest -q -p no:cacheprovider tests > "$out/pytest_cuda.txt" 2>&1; echo "pytest rc=$?"; tail -5 "$out/pytest_cuda.txt"
python3 -m workbench.cli check --cases quick,edge,llm --no-progress --csv "$out/check_cuda.csv" > "$out/check_cuda.txt" 2>&1
echo "check rc=$?"; grep -E "passed|False|Error" "$out/check_cuda.txt" | tail -40
