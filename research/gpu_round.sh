#!/usr/bin/env bash
# The pending GPU checks (research/gpu_pending.md) batched into three device calls of under 10 minutes each, in
# the order of what they unblock. Each step runs under its own time limit and the call's deadline, so a step
# that hangs costs its slot, not the call; every log and JSON goes into one archive, $OUT/round-PART.tgz, and a
# summary (step, exit status, seconds, the log's last result line) is printed last.
#   bash research/gpu_round.sh a   # issue 23 kernels on CUDA + 1B full FT kernels none vs triton; issue 24 Muon
#   bash research/gpu_round.sh b   # issue 25 fp8 tests + 1B recipes; issue 26 RL tests + rollout speed
#   bash research/gpu_round.sh c   # issue 23 per-op benches + LoRA fused vs peft; issue 27 FSDP2 in one process
# Run from the repository root on the GPU machine, carrying .whl, .whl-optim and .whl-fp8 (DEVELOPERS.md).
set -uo pipefail
part=${1:?usage: gpu_round.sh a|b|c}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
RES=/tmp/round-$part; rm -rf "$RES"; mkdir -p "$RES"
DEADLINE=$(( $(date +%s) + ${BUDGET_S:-560} ))
[ -d /tmp/site ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl*/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD/backend:$PWD:$PWD/research PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
{ nvidia-smi --query-gpu=name,memory.total,compute_cap --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
  python3 -c "import torchao; print('torchao', torchao.__version__)" 2>&1 | tail -1; } | tee "$RES/env.txt"
SUMMARY=$RES/summary.txt; : > "$SUMMARY"

step() {  # step NAME SECONDS CMD...: run CMD under min(SECONDS, time left), log to $RES/NAME.log
  local name=$1 limit=$2; shift 2
  local left=$(( DEADLINE - $(date +%s) ))
  if [ "$left" -lt 20 ]; then echo "| $name | skipped (deadline) | | |" >> "$SUMMARY"; return; fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0; t0=$(date +%s)
  echo "=== $name (limit ${limit}s)"
  timeout -k 5 "$limit" "$@" > "$RES/$name.log" 2>&1
  local rc=$? last
  last=$(grep -E "passed|failed|error|^\| native|^\| muon|^\| [a-z_]+ \| (bf16|float32|bfloat16)" "$RES/$name.log" \
         | tail -1 | cut -c1-110)
  echo "| $name | $rc | $(( $(date +%s) - t0 )) | ${last//|/\/} |" | tee -a "$SUMMARY"
}
BENCH_FT="python3 research/bench_native_full_ft.py --steps 15 --warmup 10"

case "$part" in
  a)
    step kernel_tests 170 python3 -m pytest -q -p no:cacheprovider tests/kernels
    step optim_test 70 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_optim_cuda.py
    step full_ft_kernels 200 $BENCH_FT --variants native+compile,native+compile+kernels --out "$RES/full_ft_kernels.json"
    step optimizers 110 env OUT="$RES" python3 research/bench_optimizers.py ;;
  b)
    step fp8_tests 80 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_fp8_cuda.py
    step fp8_1b 230 $BENCH_FT --variants native+compile,native+compile+fp8-tensorwise,native+compile+fp8-rowwise \
      --out "$RES/fp8_1b.json"
    step rl_tests 80 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_rl_cuda.py
    step rl_rollout 150 python3 research/bench_rl_rollout.py --repeats 3 --warmup 1 --out "$RES/rl_rollout.json" ;;
  c)
    step bench_ce 60 python3 research/bench_cross_entropy.py --out "$RES/bench_cross_entropy.json"
    step bench_lora 50 python3 research/bench_lora.py --out "$RES/bench_lora.json"
    step bench_rms 40 python3 research/bench_rms_norm.py --out "$RES/bench_rms_norm.json"
    step bench_swiglu 40 python3 research/bench_swiglu.py --out "$RES/bench_swiglu.json"
    step bench_rope 40 python3 research/bench_rope.py --out "$RES/bench_rope.json"
    step lora_kernels 160 $BENCH_FT --variants lora --out "$RES/lora_kernels.json"
    step fsdp2_one 160 $BENCH_FT --variants native+compile+fsdp2 --out "$RES/fsdp2_one.json" ;;
  *) echo "unknown part $part" >&2; exit 2 ;;
esac
tar -czf "$OUT/round-$part.tgz" -C /tmp "round-$part"
echo; echo "| step | rc | s | last result line |"; echo "|---|---|---|---|"; cat "$SUMMARY"
for f in "$RES"/*.log; do grep -hE "^\| " "$f" | tail -8; done 2>/dev/null | tail -40
