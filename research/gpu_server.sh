#!/usr/bin/env bash
# trainhub server on GPUs: one job per GPU slot, the rest queued, each job on its own GPU.
#
#   bash research/gpu_server.sh            # every visible GPU is a slot
#
# Starts `trainhub server --gpus 0,..,N-1` on a scratch home and folder, submits N+1 tiny bf16 pretraining
# jobs (the tests' tiny Llama, 300 steps), and prints a line per second: each job's status and slot.
# It should show: N jobs running at once, each on a different slot, job N+1 queued until a slot frees,
# every job completed, and each run's start row naming a CUDA device (hardware.device = cuda).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
N=$(nvidia-smi -L | wc -l)
GPUS=$(seq -s, 0 $((N - 1)))
WORK=$(mktemp -d)
PORT=${PORT:-8093}
export TRAINHUB_HOME=$WORK/home PYTHONPATH=$PWD/backend${PYTHONPATH:+:$PYTHONPATH}
cp config/data/stories_eval.jsonl "$WORK/eval.jsonl"
head -n 400 config/data/stories.jsonl > "$WORK/train.jsonl"
(cd "$WORK" && exec $PY -m trainhub server --port "$PORT" --gpus "$GPUS" --allow "$WORK") &
SERVER=$!
trap 'kill -INT $SERVER; wait $SERVER; rm -rf "$WORK"' EXIT
$PY - "$WORK" "$PORT" "$N" <<'EOF'
import json, sys, time
from pathlib import Path

import httpx

work, port, n = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
url = f"http://127.0.0.1:{port}"
for _ in range(120):
    try:
        httpx.get(url + "/jobs")
        break
    except httpx.HTTPError:
        time.sleep(0.5)
ids = []
for i in range(n + 1):
    job = {"name": f"gpu{i}", "output_dir": str(work / "runs" / f"gpu{i}"), "backend": "native",
           "model": {"init": {"family": "llama", "hidden_size": 64, "intermediate_size": 128, "num_layers": 2,
                              "num_heads": 4, "num_kv_heads": 2, "max_position_embeddings": 128,
                              "tokenizer": {"type": "train", "vocab_size": 400}}},
           "method": "pretrain",
           "data": {"train": str(work / "train.jsonl"), "eval": str(work / "eval.jsonl"), "format": "text",
                    "max_length": 64},
           "train": {"micro_batch_size": 8, "max_steps": 300, "precision": "bf16"}}
    r = httpx.post(url + "/jobs", content=json.dumps(job))
    r.raise_for_status()
    ids.append(r.json()["id"])
most = 0
while True:
    jobs = httpx.get(url + "/jobs").json()["jobs"]
    running = [j for j in jobs if j["status"] == "running"]
    most = max(most, len(running))
    print("  ".join(f"{j['name']}:{j['status']}@{j['slot']}" for j in jobs), flush=True)
    if all(j["status"] in ("completed", "failed", "interrupted") for j in jobs):
        break
    time.sleep(1)
for j in jobs:
    start = [json.loads(line) for line in (Path(j["run_dir"]) / "metrics.jsonl").read_text().splitlines()
             if '"event":"start"' in line][0]
    print(j["name"], j["status"], "slot", j["slot"], "device", start["hardware"]["device"],
          start["hardware"]["device_name"])
print(f"at most {most} running at once with {n} GPU slot(s)")
assert most == n and all(j["status"] == "completed" for j in jobs)
EOF
