#!/usr/bin/env bash
# Issue 23, memory part, on one GPU: the 1B full fine-tune (research/bench_native_full_ft.py, Llama-3.2-1B shape,
# native engine compiled block by block) at seq 8192 x micro-batch 1 under train.grad_checkpointing none / full /
# selective and selective + activation_offload; then native LoRA against native QLoRA (r=16, all linear layers,
# bf16 base) at seq 2048 x micro-batch 4, the setting of the Unsloth numbers in research/results/unsloth.md.
# Also research/bench_checkpointing.py at the same shape (one forward + backward per mode: peak and time).
# Prints one table last. Run from the repository root on the GPU machine, carrying .whl (pydantic, typer, rich
# for the hub; and torchao for QLoRA: `pip download torchao==0.18.0 --no-deps -d .whl` where pip has a network).
#   bash research/gpu_memory.sh ckpt     # 4 runs of `train` at 1 x 8192 (~1.5-2 min each on an H100)
#   bash research/gpu_memory.sh lora     # 4 runs at 4 x 2048: LoRA, QLoRA, eager and compiled
#   bash research/gpu_memory.sh micro    # bench_checkpointing.py, 6 modes (one step each, compiled blocks)
#   bash research/gpu_memory.sh all      # the three in one call: over the 10-minute limit of one device call
# The table at the end covers the JSON files in $OUT and in $TABLE_FROM (a folder of earlier parts' files).
set -uo pipefail
part=${1:?usage: gpu_memory.sh ckpt|lora|micro|all}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl*/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD/backend:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
STEPS=${STEPS:-10} WARMUP=${WARMUP:-5}
if [ "$part" = all ] || [ "$part" = ckpt ]; then
  python3 research/bench_native_full_ft.py --seq 8192 --micro-batch 1 --steps "$STEPS" --warmup "$WARMUP" \
    --variants "native+compile,native+compile+full,native+compile+selective,native+compile+selective+offload" \
    --out "$OUT/memory_ckpt.json" 2>&1 | tee "$OUT/memory_ckpt.log" | tail -9
fi
if [ "$part" = all ] || [ "$part" = lora ]; then
  python3 -c "import torchao" 2>/dev/null || echo "torchao is not importable: the qlora row will show the check's refusal"
  python3 research/bench_native_full_ft.py --steps "$STEPS" --warmup "$WARMUP" \
    --variants "native+lora,native+qlora,native+compile+lora,native+compile+qlora" \
    --out "$OUT/memory_lora.json" 2>&1 | tee "$OUT/memory_lora.log" | tail -8
fi
if [ "$part" = all ] || [ "$part" = micro ]; then
  python3 research/bench_checkpointing.py --device cuda --dtype bfloat16 --hidden 2048 --intermediate 8192 \
    --layers 16 --heads 32 --kv-heads 8 --vocab 128256 --seq 8192 --batch 1 --compile \
    --out "$OUT/checkpointing.cuda.json" 2>&1 | tee "$OUT/bench_checkpointing.log" | tail -10
fi
python3 - "$OUT" "${TABLE_FROM:-$OUT}" <<'PY'
import json, sys
from pathlib import Path
def find(name):
    return next((Path(d) / name for d in sys.argv[1:] if (Path(d) / name).is_file()), Path("/nonexistent"))
print("\n| run | variant | tokens/s | MFU (trainhub's count) | peak GB | final loss |")
print("|---|---|---:|---:|---:|---:|")
for name, label in (("memory_ckpt.json", "1B full FT, 1 x 8192"), ("memory_lora.json", "1B LoRA/QLoRA r=16, 4 x 2048")):
    path = find(name)
    if not path.is_file():
        continue
    for variant, r in json.loads(path.read_text())["variants"].items():
        if "error" in r:
            print(f"| {label} | {variant} | error: {r['error'].strip().splitlines()[-1][:80]} | | | |")
        else:
            print(f"| {label} | {variant} | {r['tokens_per_s']:,.0f} | {r['mfu_logged']:.1%} | "
                  f"{r['peak_mem_gb']:.1f} | {r['final_loss']:.3f} |")
micro = find("checkpointing.cuda.json")
if micro.is_file():
    for r in json.loads(micro.read_text())["rows"]:
        print(f"| 1B one step, 1 x 8192, compiled blocks | {r['mode']} | {8192 / r['seconds']:,.0f} | | "
              f"{r['peak_gb']:.1f} (activations+grads) | {r['loss']:.3f} |")
PY
