#!/usr/bin/env bash
# Issue 27's GPU checks (DDP/FSDP2 in the native engine), one device call per part:
#   part 1 (one GPU):  FSDP2 in one process vs the plain path on the 1B benchmark (done-when: within 3% tokens/s)
#   part 2 (2 GPUs):   tests/integration/test_distributed.py on NCCL (2-process DDP/FSDP2 losses = 1 process),
#                      then tokens/s scaling of the 1B benchmark: 1 process vs DDP x2 vs FSDP2 x2
# Run from the repository root on the GPU machine, carrying .whl (pydantic, typer, rich for the hub).
set -uo pipefail
part=${1:?usage: gpu_dist.sh 1|2}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl*/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD/backend:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
if [ "$part" = 1 ]; then
  python3 research/bench_native_full_ft.py --steps ${STEPS:-20} --warmup ${WARMUP:-10} \
    --variants "${VARIANTS:-native+compile,native+compile+fsdp2,native,native+fsdp2}" \
    --out "$OUT/dist_one_gpu.json" 2>&1 | tee "$OUT/bench_one_gpu.log" | tail -10
else
  python3 -m pytest -q -x tests/integration/test_distributed.py 2>&1 | tee "$OUT/dist_tests.log" | tail -25
  python3 research/bench_native_full_ft.py --steps ${STEPS:-20} --warmup ${WARMUP:-10} \
    --variants "${VARIANTS:-native+compile,native+compile+ddpx2,native+compile+fsdp2x2}" \
    --out "$OUT/dist_scaling.json" 2>&1 | tee "$OUT/bench_scaling.log" | tail -10
fi
