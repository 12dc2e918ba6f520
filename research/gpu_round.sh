#!/usr/bin/env bash
# The pending GPU checks (research/gpu_pending.md) batched into device calls of under 10 minutes each, in the
# order of what they unblock. Each step runs under its own time limit and the call's deadline, so a step
# that hangs costs its slot, not the call; every log and JSON goes into one archive, $OUT/round-PART.tgz, and a
# summary (step, exit status, seconds, the log's last result line) is printed last. Chain the calls (the
# machine stays warm ~30 s) and keep BUDGET_S under the call's timeout.
#   bash research/gpu_round.sh a   # GPU tests not yet passed there (Muon, masked GQA, fp8 whole); RMSNorm/RoPE/SwiGLU benches
#   bash research/gpu_round.sh b   # issue 27: FSDP2 one process, default / +keep / +keep+bf16gather vs plain
#   bash research/gpu_round.sh c   # issue 23: seq 8192 x 1, QLoRA with checkpointing (+offload); issue 25: the 8B slice
#   bash research/gpu_round.sh d|e # issue 24 (b): ~125M quality, Muon/Lion/CAME | the rest, each against AdamW
#   bash research/gpu_round.sh f   # issue 23: the 200-step curve with every kernel on against the eager path
#   bash research/gpu_round.sh m   # issue 24: fused Muon's tests and step time, then ~125M quality for $OPTS
#   OPTS=adamw,prodigy bash research/gpu_round.sh q   # issue 24 (b): ~125M quality for the optimizers named
#   bash research/gpu_round.sh r   # issue 26: whole GRPO step, native vs trl (carry .whl-trl), then quality for $OPTS
#   bash research/gpu_round.sh s   # issue 26 then 25: whole GRPO step vs trl; fp8 on the 8B slice (carry .whl-trl, .whl-fp8)
#   bash research/gpu_round.sh t   # issues 24, 26: Muon tests and step time, masked GQA test, GRPO step vs trl
#   bash research/gpu_round.sh u   # issues 27, 25: FSDP2 one process vs plain; fp8 on the 8B slice (carry .whl-fp8)
#   bash research/gpu_round.sh v   # issue 26: GRPO step vs trl, what is alive at native's memory peak (carry .whl-trl)
#   bash research/gpu_round.sh w   # issues 25, 27: traced steps (top ops): 8B bf16 vs fp8; FSDP2 +keep vs plain (carry .whl-fp8)
#   bash research/gpu_round.sh x   # issues 26, 27: GRPO with the update's kernels vs trl (peak); FSDP2 bf16 gather + reduce
#   bash research/gpu_round.sh y   # issue 23: native LoRA with kernels, plain and selective checkpointing; QLoRA
#   bash research/gpu_round.sh z   # issue 23: the roofline (matmuls + attention + optimizer alone) at 1B and 8B; 1B kernels step, traced
#   bash research/gpu_round.sh p   # issue 25: the whole fp8 test file; bf16 vs fp8 drift at ~125M (carry research/data)
#   bash research/gpu_round.sh k   # issue 23: the stacked LoRA forward: tests, roofline rows, LoRA/QLoRA speed, QLoRA checkpointed
#   bash research/gpu_round.sh h   # issue 23: 1B full FT vs HF+Liger (memory bar), compiled and not; seq 8192 x 1 (carry .whl-liger)
#   bash research/gpu_round.sh g   # issue 25: the 8B slice bf16 vs fp8 with the fused loss on both; the traced pair
# (2026-12-07's parts, run: kernel tests, 1B kernels none vs triton, LoRA fused, optimizers, fp8 1B, RL tests and
# rollout; research/results/{kernels,optimizers,fp8,distributed,grpo_native}.md.)
# Run from the repository root on the GPU machine, carrying .whl, .whl-optim and .whl-fp8 (DEVELOPERS.md).
set -uo pipefail
part=${1:?usage: gpu_round.sh a|b|c}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
RES=/tmp/round-$part; rm -rf "$RES"; mkdir -p "$RES"
DEADLINE=$(( $(date +%s) + ${BUDGET_S:-560} ))
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl*/*.whl 2>/dev/null  # every call: a warm machine keeps /tmp/site, and this call may carry other wheels
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
  last=$(grep -E "passed|failed|error|^\| native|^native-compiled|^\| muon|^\| bound|^\| [a-z_]+ \| (bf16|float32|bfloat16)" "$RES/$name.log" \
         | tail -1 | cut -c1-110)
  echo "| $name | $rc | $(( $(date +%s) - t0 )) | ${last//|/\/} |" | tee -a "$SUMMARY"
}
BENCH_FT="python3 research/bench_native_full_ft.py --steps 15 --warmup 10"

case "$part" in
  a)
    step gpu_tests 90 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_optim_cuda.py tests/kernels/test_muon.py tests/gpu/test_models_cuda.py
    step fp8_tests 240 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_fp8_cuda.py
    step bench_rms 50 python3 research/bench_rms_norm.py --out "$RES/bench_rms_norm.json"
    step bench_swiglu 50 python3 research/bench_swiglu.py --out "$RES/bench_swiglu.json"
    step bench_rope 50 python3 research/bench_rope.py --out "$RES/bench_rope.json" ;;
  b)
    step fsdp2_one 540 $BENCH_FT --variants native+compile,native+compile+fsdp2,native+compile+fsdp2+keep,native+compile+fsdp2+keep+bf16gather \
      --out "$RES/fsdp2_one.json" ;;
  c)  # issue 23: long rows; QLoRA with checkpointing, as Unsloth's QLoRA row ran (41.4k tok/s, 2.47 GB); 8B fp8
    step lora_tests 120 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_lora.py  # fused QLoRA bf16+compile
    step long_rows 200 $BENCH_FT --seq 8192 --micro-batch 1 --variants native+compile+kernels,native+compile+kernels+selective \
      --out "$RES/long_rows.json"
    step qlora_ckpt 200 $BENCH_FT --variants native+compile+kernels+qlora+full,native+compile+kernels+qlora+full+offload \
      --out "$RES/qlora_ckpt.json"
    step fp8_8b 200 python3 research/bench_native_full_ft.py --shape 8b-slice --layers 8 --steps 10 --warmup 5 \
      --variants native+compile,native+compile+fp8-tensorwise --out "$RES/fp8_8b.json" ;;
  d|e)  # issue 24 (b): the ~125M optimizer quality run; carry research/data (research/get_corpus.py builds it)
    opts=$([ "$part" = d ] && echo adamw,muon,lion,came || echo adamw,prodigy,schedule-free-adamw,adamw8bit,sophia)
    step optim_quality 550 python3 research/bench_optim_quality.py --optimizers "$opts" --out "$RES/optim_quality.json" ;;
  m)
    step muon_tests 120 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_muon.py tests/gpu/test_optim_cuda.py
    step muon_bench 150 python3 research/bench_optimizers.py \
      --only "torch AdamW fused,torch.optim.Muon,muon_matrices,muon_matrices per-matrix,muon_matrices eager,muon_matrices ns0,muon_matrices eager ns0,muon"
    step optim_quality 560 python3 research/bench_optim_quality.py --optimizers "${OPTS:-adamw,muon,lion,came}" \
      --out "$RES/optim_quality.json" ;;
  q)
    step optim_quality 560 python3 research/bench_optim_quality.py --optimizers "${OPTS:?name OPTS}" \
      --out "$RES/optim_quality.json" ;;
  r)
    step grpo_step 330 python3 research/bench_grpo.py --steps 5 --warmup 2 --sides native-compiled,trl,native
    [ -n "${OPTS:-}" ] && step optim_quality 560 python3 research/bench_optim_quality.py --optimizers "$OPTS" \
      --out "$RES/optim_quality.json" ;;
  s)
    step grpo_step 330 python3 research/bench_grpo.py --steps 5 --warmup 2 --sides native-compiled,trl,native
    step fp8_8b 240 python3 research/bench_native_full_ft.py --shape 8b-slice --layers 8 --steps 10 --warmup 5 \
      --variants native+compile,native+compile+fp8-tensorwise,native+compile+fp8-rowwise --out "$RES/fp8_8b.json" ;;
  p)
    step fp8_tests 240 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_fp8_cuda.py
    step fp8_drift 560 python3 research/bench_fp8_drift.py --steps 200 --out "$RES/fp8_drift.json" ;;
  f)  # issue 23: 200 steps, kernels on against eager and a measured noise floor (carry research/data)
    step kernels_curve 540 python3 research/bench_kernels_curve.py --out "$RES/kernels_curve.json" ;;
  t)  # issues 24 and 26: Muon's GPU tests and step time (one launch per shape), masked GQA's test, the GRPO step's peak
    step gpu_tests 100 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_optim_cuda.py tests/kernels/test_muon.py tests/gpu/test_models_cuda.py
    step muon_bench 130 python3 research/bench_optimizers.py \
      --only "torch AdamW fused,torch.optim.Muon,muon_matrices,muon_matrices per-matrix,muon_matrices eager,muon_matrices ns0,muon"
    step grpo_step 330 python3 research/bench_grpo.py --steps 5 --warmup 2 --sides native-compiled,trl ;;
  u)  # issues 27 and 25: FSDP2 in one process against the plain path; fp8 on the 8B slice (carry .whl-fp8)
    step fsdp2_one 200 $BENCH_FT --variants native+compile,native+compile+fsdp2+keep --out "$RES/fsdp2_one.json"
    step fp8_8b 300 python3 research/bench_native_full_ft.py --shape 8b-slice --layers 8 --steps 10 --warmup 5 \
      --variants native+compile,native+compile+fp8-tensorwise --out "$RES/fp8_8b.json" ;;
  v)  # issue 26: the packed (varlen) update's GPU test and the profile test; the whole step against TRL with what
      # is alive at native's peak (train.profile.memory; carry .whl-trl for the trl side)
    step gpu_tests 120 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_profile_cuda.py tests/gpu/test_rl_cuda.py
    step grpo_memory 300 python3 research/bench_grpo.py --steps 5 --warmup 2 --sides native-compiled,trl --memory ;;
  w)  # issues 25 and 27: where the time goes, traced (train.profile's top ops): 8B slice bf16 vs fp8; FSDP2 +keep vs plain
    step fp8_8b_trace 280 python3 research/bench_native_full_ft.py --shape 8b-slice --layers 8 --steps 5 --warmup 5 \
      --variants native+compile+profile,native+compile+fp8-tensorwise+profile --out "$RES/fp8_8b_trace.json"
    step fsdp2_trace 220 $BENCH_FT --variants native+compile+profile,native+compile+fsdp2+keep+profile \
      --out "$RES/fsdp2_trace.json" ;;
  x)  # issue 26: native GRPO with the update's fused kernels (the predicted ~2 GB below TRL's peak) and its GPU
      # tests; issue 27: FSDP2 +keep with bf16 gather and bf16 reduce against plain (the last 4%). Carry .whl, .whl-trl
    step gpu_tests 120 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_rl_cuda.py
    step grpo_memory 240 python3 research/bench_grpo.py --steps 5 --warmup 2 --sides native-compiled,trl --memory
    step fsdp2_bf16 200 $BENCH_FT --variants native+compile,native+compile+fsdp2+keep+bf16gather+bf16reduce \
      --out "$RES/fsdp2_bf16.json" ;;
  y)  # issue 23: native LoRA r=16 with kernels, plain and with selective checkpointing (recomputes the element-wise
      # outputs, SwiGLU's product among them, which down_proj would otherwise keep), against Unsloth's 72.6k, 11.7 GB
    step lora_selective 300 $BENCH_FT --variants native+compile+kernels+lora,native+compile+kernels+lora+selective \
      --out "$RES/lora_selective.json"
    step qlora 200 $BENCH_FT --variants native+compile+kernels+qlora --out "$RES/qlora.json" ;;
  z)  # issue 23: how far 60% MFU is from the hardware's reach at the 1B shape (the step's matmuls, attention and
      # optimizer each timed alone: an upper bound), then the 1B step with kernels (the clip folded into AdamW since
      # the seventeenth session; was 55,019 tok/s) and its traced busy share
    step roofline_1b 90 python3 research/bench_roofline.py --out "$RES/roofline_1b.json"
    step roofline_lora 60 python3 research/bench_roofline.py --frozen --out "$RES/roofline_lora.json"
    step roofline_8b 120 python3 research/bench_roofline.py --shape 8b-slice --out "$RES/roofline_8b.json"
    step roofline_8b_fp8 120 python3 research/bench_roofline.py --shape 8b-slice --fp8 --out "$RES/roofline_8b_fp8.json"
    step sdpa_test 90 python3 -m pytest -q -s -p no:cacheprovider tests/gpu/test_models_cuda.py -k sdpa
    step kernels_1b 300 $BENCH_FT --variants native+compile+kernels,native+compile+kernels+cudnn,native+compile+kernels+profile \
      --out "$RES/kernels_1b.json" ;;
  k)  # issue 23: the stacked LoRA GEMMs and the SwiGLU-fed down_proj (eighteenth session): every kernel test on the GPU,
      # the roofline's LoRA rows, both paths per shape, LoRA and QLoRA with kernels; QLoRA checkpointed against Unsloth's
    step kernel_tests 150 python3 -m pytest -q -p no:cacheprovider tests/kernels  # the new SwiGLU-fed layers too
    step roofline_lora 45 python3 research/bench_roofline.py --frozen --out "$RES/roofline_lora.json"
    step lora_stacked 220 $BENCH_FT --variants native+compile+kernels+lora,native+compile+kernels+qlora \
      --out "$RES/lora_stacked.json"
    step qlora_ckpt 200 $BENCH_FT --variants native+compile+kernels+qlora+full --out "$RES/qlora_ckpt.json" ;;
  h)  # issue 23: the 1B full fine-tune against HF + Liger-Kernel (the memory bar: native's peak <= HF+Liger's),
      # compiled and not, beside native with kernels; then seq 8192 x 1 (carry .whl, .whl-liger)
    step hf_liger 330 $BENCH_FT --variants native+compile+kernels,hf-liger,hf-liger-compile --out "$RES/hf_liger.json"
    step long_rows 220 $BENCH_FT --seq 8192 --micro-batch 1 --variants native+compile+kernels,native+compile+kernels+selective \
      --out "$RES/long_rows.json" ;;
  g)  # issue 25: the 8B slice with the fused loss on both sides (the chunked loss was a fixed cost in both), then
      # the traced pair: where fp8's ~18 ms of casts go (carry .whl-fp8)
    step fp8_8b_kernels 300 python3 research/bench_native_full_ft.py --shape 8b-slice --layers 8 --steps 10 --warmup 5 \
      --variants native+compile+kernels,native+compile+kernels+fp8-tensorwise --out "$RES/fp8_8b_kernels.json"
    step fp8_8b_trace 250 python3 research/bench_native_full_ft.py --shape 8b-slice --layers 8 --steps 3 --warmup 5 \
      --variants native+compile+kernels+profile,native+compile+kernels+fp8-tensorwise+profile \
      --out "$RES/fp8_8b_trace.json" ;;
  *) echo "unknown part $part" >&2; exit 2 ;;
esac
tar -czf "$OUT/round-$part.tgz" -C /tmp "round-$part"
echo; echo "| step | rc | s | last result line |"; echo "|---|---|---|---|"; cat "$SUMMARY"
for f in "$RES"/*.log; do grep -hE "^\| " "$f" | tail -8; done 2>/dev/null | tail -40
true  # the call's status is the summary's, not the last grep's (pipefail: a log without a table gave 1)
