#!/usr/bin/env bash
# The wheel folders a device call carries to the GPU machine (DEVELOPERS.md, "On the GPU machine"), all built
# in one go on a fresh checkout (they are git-ignored, so a new checkout has none). Each is CPython 3.12
# x86-64 wheels from PyPI via ../shared/gpu/bundle.sh; versions are those the results were measured with.
#   scripts/gpu_wheels.sh              # .whl .whl-fp8 .whl-trl .whl-liger .whl-optim
#   scripts/gpu_wheels.sh .whl .whl-fp8  # only these
set -euo pipefail
BUNDLE=${BUNDLE:-$(cd "$(dirname "$0")/.." && pwd)/../shared/gpu/bundle.sh}
declare -A SETS=(
  [.whl]="pydantic==2.14.4 pydantic_core==2.50.5 typing_inspection==0.4.5 annotated_types==0.8.0 typing_extensions==4.16.0 typer==0.29.3 rich==15.0.0 click==8.5.1 shellingham==1.5.4 markdown-it-py==4.3.0 mdurl==0.1.2 pygments==2.21.0"
  [.whl-fp8]="torchao==0.18.0"
  [.whl-trl]="trl==1.15.0 datasets==4.3.0 dill==0.4.0 multiprocess==0.70.18"
  [.whl-liger]="liger-kernel==0.8.5"
  [.whl-optim]="pytorch_optimizer==4.1.0 prodigyopt==1.1.2 schedulefree==1.4.1 bitsandbytes==0.50.2"
)
for dir in "${@:-.whl .whl-fp8 .whl-trl .whl-liger .whl-optim}"; do
  for d in $dir; do
    [ -n "${SETS[$d]:-}" ] || { echo "unknown folder $d; one of ${!SETS[*]}" >&2; exit 2; }
    # shellcheck disable=SC2086
    "$BUNDLE" "$d" ${SETS[$d]}
    echo "$d: $(ls "$d"/*.whl | wc -l) wheels, $(du -sh "$d" | cut -f1)"
  done
done
