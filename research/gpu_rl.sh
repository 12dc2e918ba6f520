#!/usr/bin/env bash
# Issue 26's GPU checks (native GRPO family), one device call each:
#   part 1: tests/gpu/test_rl_cuda.py (greedy == generate on CUDA, compiled == eager sampling, GRPO in bf16 with
#           and without backend.compile), then the CPU-side RL tests as a smoke on that machine
#   part 2: research/bench_rl_rollout.py at the real sizes: 8 prompts x 8 generations x 256 tokens on a
#           Qwen2.5-0.5B shape, native sampler eager and compiled vs transformers' generate (TRL without vLLM)
#   part 3: research/bench_grpo.py: whole dapo steps, train --backend native (compiled, eager) vs --backend trl,
#           same job (needs trl in the GPU environment)
# Run from the repository root on the GPU machine, carrying .whl (pydantic, typer, rich for the hub).
set -uo pipefail
part=${1:?usage: gpu_rl.sh 1|2|3}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD/backend:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
if [ "$part" = 1 ]; then
  python3 -m pytest -q -x tests/gpu/test_rl_cuda.py tests/unit/test_rl_rollout.py tests/unit/test_rl_loss.py \
    2>&1 | tee "$OUT/gpu_rl_tests.log" | tail -25
elif [ "$part" = 2 ]; then
  python3 research/bench_rl_rollout.py --repeats ${REPEATS:-5} --warmup ${WARMUP:-2} \
    --variants "${VARIANTS:-native,native-compiled,hf-generate}" --out "$OUT/rl_rollout.json" \
    2>&1 | tee "$OUT/bench_rl_rollout.log" | tail -8
else
  python3 research/bench_grpo.py --steps ${STEPS:-5} --warmup ${WARMUP:-2} --sides "${SIDES:-native-compiled,native,trl}" \
    2>&1 | tee "$OUT/bench_grpo.log" | tail -8
fi
