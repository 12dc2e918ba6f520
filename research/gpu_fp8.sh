#!/usr/bin/env bash
# Issue 25 (FP8 training) on one GPU of compute capability 8.9+ (H100/H200), one device call per part
# (each fits the 10-minute limit; results land in $OUT, the table is printed last):
#   filter  research/bench_fp8_filter.py: bf16 vs each float8 recipe per (M=8192, K, N), compiled; prints the
#           SLOW boxes to paste into engine/fp8.py and the per-layer choice for Llama-3.2-1B / Llama-3-8B shapes
#   tests   tests/gpu/test_fp8_cuda.py: float8 layers vs bf16 (compiled), tiny native runs fp8 vs bf16, LoRA+fp8
#   1b      research/bench_native_full_ft.py on Llama-3.2-1B: native+compile vs each fp8 recipe+compile
#   8b      the same on the Llama-3-8B-shaped slice (seq 4096; the issue's >= 1.3x target): tensorwise, rowwise
#   lora    the 1B shape with LoRA rank 16 on every Linear: bf16 base vs float8 (tensorwise) base, compiled
#   drift   research/bench_fp8_drift.py: ~125M Llama, 200 steps, bf16 vs each recipe (filter all), loss drift
# Run from the repository root on the GPU machine, carrying .whl with the hub's wheels (pydantic, typer, rich)
# and torchao's (pip download torchao==0.18.0 --no-deps -d .whl; it needs torch >= 2.11, tested with 2.13).
set -uo pipefail
part=${1:?usage: gpu_fp8.sh filter|tests|1b|8b|lora|drift}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl*/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD/backend:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,compute_cap --format=csv,noheader
python3 -c "import torch, torchao; print('torch', torch.__version__, 'torchao', torchao.__version__)" 2>&1 | tail -1
case "$part" in
  filter)
    python3 research/bench_fp8_filter.py --m "${M:-8192}" --decide-m "${DECIDE_M:-8192}" \
      --recipes "${RECIPES:-tensorwise,rowwise,rowwise_with_gw_hp}" --budget-s "${BUDGET:-480}" \
      --out "$OUT/fp8_filter.json" 2>&1 \
      | grep -v "Failed to load" | tee "$OUT/fp8_filter.log" | tail -45 ;;
  tests)
    python3 -m pytest -q -x tests/gpu/test_fp8_cuda.py 2>&1 | tee "$OUT/fp8_tests.log" | tail -25 ;;
  1b)
    python3 research/bench_native_full_ft.py --shape 1b --steps "${STEPS:-20}" --warmup "${WARMUP:-10}" \
      --variants "${VARIANTS:-native+compile,native+compile+fp8-tensorwise,native+compile+fp8-rowwise,native+compile+fp8-rowwise_with_gw_hp}" \
      --out "$OUT/fp8_full_ft_1b.json" 2>&1 | tee "$OUT/fp8_full_ft_1b.log" | tail -40 ;;
  8b)
    python3 research/bench_native_full_ft.py --shape 8b-slice --layers "${LAYERS:-8}" --steps "${STEPS:-10}" \
      --warmup "${WARMUP:-5}" \
      --variants "${VARIANTS:-native+compile,native+compile+fp8-tensorwise,native+compile+fp8-rowwise}" \
      --out "$OUT/fp8_full_ft_8b.json" 2>&1 | tee "$OUT/fp8_full_ft_8b.log" | tail -40 ;;
  lora)
    python3 research/bench_native_full_ft.py --shape 1b --steps "${STEPS:-20}" --warmup "${WARMUP:-10}" \
      --variants "${VARIANTS:-native+compile+lora,native+compile+lora+fp8-tensorwise}" \
      --out "$OUT/fp8_lora_1b.json" 2>&1 | tee "$OUT/fp8_lora_1b.log" | tail -30 ;;
  drift)
    python3 research/bench_fp8_drift.py --steps "${STEPS:-200}" --seed "${SEED:-0}" --out "$OUT/fp8_drift.json" 2>&1 \
      | tee "$OUT/fp8_drift.log" | tail -12 ;;
  *) echo "unknown part $part; one of filter tests 1b 8b lora drift" >&2; exit 2 ;;
esac
