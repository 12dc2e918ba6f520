#!/usr/bin/env bash
# Issue 23 part 1 on a GPU: the Triton kernels (engine/kernels) tested and measured, in one device call per part.
#   part 1: tests/kernels on CUDA (every op vs eager, fp32 and bf16, forward and backward; the own model with
#           kernels on equals eager, also bf16 autocast and compiled), then every research/bench_<op>.py
#           (eager, torch.compile, triton, liger when importable; lora: eager, compile, fused; swiglu_down: the
#           product then the down projection, with the product not kept); one short table
#   part 2: bench_native_full_ft.py on the Llama-3.2-1B shape: native+compile with backend.kernels none vs
#           triton (and without compile, and liger when importable); its table at the end
#   part 3: the same shape with LoRA r=16 (bf16 base): native+compile, kernels none vs triton (fused LoRA)
# Run from the repository root on the GPU machine, carrying .whl (pydantic, typer, rich for the hub; a
# liger_kernel wheel there too, `pip download liger-kernel --no-deps -d .whl`, adds Liger's column).
set -uo pipefail
part=${1:?usage: gpu_kernels.sh 1|2|3}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl*/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD/backend:$PWD:$PWD/research PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
python3 -c "import liger_kernel" 2>/dev/null && echo "liger-kernel importable" || echo "liger-kernel not importable: no liger column"
if [ "$part" = 1 ]; then
  python3 -m pytest -q tests/kernels 2>&1 | tee "$OUT/kernel_tests.log" | tail -15
  for op in cross_entropy rms_norm swiglu rope lora; do
    python3 research/bench_$op.py --out "$OUT/bench_$op.json" 2>&1 | tee "$OUT/bench_$op.log" | tail -9
  done
  for c in 1024 4096; do  # the default chunk is 2048 rows at V = 128k (kernels/cross_entropy.py says why)
    python3 research/bench_cross_entropy.py --chunk $c --impls chunked,triton --out "$OUT/bench_ce_chunk$c.json" > "$OUT/bench_ce_chunk$c.log" 2>&1
  done
  python3 research/bench_rms_norm.py --dtype float32 --out "$OUT/bench_rms_norm_fp32.json" > "$OUT/bench_rms_norm_fp32.log" 2>&1
  python3 research/bench_swiglu.py --op swiglu_down --out "$OUT/bench_swiglu_down.json" > "$OUT/bench_swiglu_down.log" 2>&1
  for shape in q kv down; do  # the fused LoRA layer's other paths (stacked or addmm_, kernels/lora.py)
    python3 research/bench_lora.py --shape $shape --out "$OUT/bench_lora_$shape.json" > "$OUT/bench_lora_$shape.log" 2>&1
  done
  python3 research/bench_lora.py --op swiglu_down --out "$OUT/bench_lora_swiglu_down.json" > "$OUT/bench_lora_swiglu_down.log" 2>&1
  echo; grep -E "passed|failed" "$OUT/kernel_tests.log" | tail -1
  python3 - "$OUT" <<'PY'
import json, sys
from pathlib import Path
print("| op | shape | dtype | impl | fwd+bwd ms | vs eager | peak MB | max abs diff |")
print("|---|---|---|---|---:|---:|---:|---:|")
for f in sorted(Path(sys.argv[1]).glob("bench_*.json")):
    r = json.loads(f.read_text())
    base = r["results"].get("eager", {}).get("fwd_bwd_ms")
    for impl, x in r["results"].items():
        if "error" in x:
            print(f"| {r['op']} | {r['shape']} | {r['dtype']} | {impl} | error | | | |")
        else:
            print(f"| {r['op']} | {r['shape']} | {r['dtype']} | {impl} | {x['fwd_bwd_ms']:.3f} | "
                  f"{base / x['fwd_bwd_ms']:.2f}x | "
                  f"{x['peak_mb'] or 0:,.0f} | {x['max_diff']:.1e} |")
PY
elif [ "$part" = 2 ]; then
  python3 research/bench_native_full_ft.py --steps ${STEPS:-20} --warmup ${WARMUP:-10} --variants "${VARIANTS:-kernels}" \
    --out "$OUT/native_full_ft_kernels.json" 2>&1 | tee "$OUT/bench_full_ft.log" | tail -10
else  # part 3: LoRA r=16 on the same shape, kernels (fused LoRA layers included) off vs on
  python3 research/bench_native_full_ft.py --steps ${STEPS:-20} --warmup ${WARMUP:-10} --variants lora \
    --out "$OUT/native_lora_kernels.json" 2>&1 | tee "$OUT/bench_lora_ft.log" | tail -6
fi
