#!/usr/bin/env bash
# The Unsloth environment for the GPU machine as one archive (about 16 MB), built on a machine that
# reaches PyPI: the wheels of backend/trainhub/envlocks/unsloth-gpu.txt that the GPU machine's image
# lacks (it has torch, triton, transformers, peft, accelerate), and the hub's own packages (pydantic,
# typer, rich and theirs: the image's python has none of them), installed for CPython 3.12 x86-64.
#   scripts/unsloth_gpu_bundle.sh [.whl/unsloth-site.tar.xz]
# There:  mkdir -p /tmp/site && tar xJf .whl/unsloth-site.tar.xz -C /tmp/site
#         export PYTHONPATH=/tmp/site:$PWD/backend HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
# Only libbitsandbytes_cuda130.so of bitsandbytes' libraries is kept (the machine has CUDA 13.0), and
# unsloth's studio/ folder (a web UI, 82 MB) is left out: together they would be 10x the size.
set -euo pipefail
out=${1:-.whl/unsloth-site.tar.xz}
lock=backend/trainhub/envlocks/unsloth-gpu.txt
have='^(torch|triton|transformers|peft|accelerate)=='
hub="pydantic==2.14.4 pydantic_core==2.50.5 typing_inspection==0.4.5 annotated_types==0.8.0 typing_extensions==4.16.0
typer==0.29.2 rich==15.0.0 click==8.5.1 shellingham==1.5.4 markdown-it-py==4.3.0 mdurl==0.1.2 pygments==2.21.0"
site=$(mktemp -d)
trap 'rm -rf "$site"' EXIT
mkdir -p "$(dirname "$out")"
grep -qx "/.whl/" .gitignore || echo "/.whl/" >> .gitignore
python3 -m pip install -q --no-deps --no-compile --only-binary=:all: --target "$site" --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
  $(grep -v '^#' "$lock" | grep -Ev "$have") $hub
find "$site/bitsandbytes" -name 'libbitsandbytes_*' ! -name 'libbitsandbytes_cuda130.so' -delete
rm -rf "$site/studio" "$site/unsloth/studio" "$site/test" "$site/bin"
tar cJf "$out" -C "$site" .
du -h "$out"
