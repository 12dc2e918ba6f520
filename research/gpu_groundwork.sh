#!/usr/bin/env bash
# The groundwork issue's GPU checks, in one device call each (see research/results/native_full_ft.md):
#   part 1: tests/gpu (own model on CUDA: flash/varlen, bf16 chunked loss, native engine) + bench_loss at vocab 128256
#   part 2: bench_native_full_ft.py: own model vs transformers' path, eager and compiled, vs the HF hand loops
# Run from the repository root on the GPU machine, carrying .whl (pydantic, typer, rich for the hub).
set -uo pipefail
part=${1:?usage: gpu_groundwork.sh 1|2}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl*/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD/backend:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
if [ "$part" = 1 ]; then
  python3 -m pytest -q -x tests/gpu/test_models_cuda.py tests/gpu/test_native_cuda.py 2>&1 | tee "$OUT/gpu_tests.log" | tail -25
  python3 research/bench_loss.py --device cuda --dtype bfloat16 --out "$OUT/loss_memory.cuda.json" 2>&1 | tee "$OUT/bench_loss.log" | tail -8
else
  python3 research/bench_native_full_ft.py --steps ${STEPS:-20} --warmup ${WARMUP:-10} \
    --variants "${VARIANTS:-native,native+compile,native-hf,native-hf+compile,hf-eager,hf-compile}" \
    --out "$OUT/native_full_ft.json" 2>&1 | tee "$OUT/bench.log" | tail -14
fi
