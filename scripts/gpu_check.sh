#!/usr/bin/env bash
# The one-shot device check (README: GPU): on a CUDA machine, offline, in about 8 minutes, writes
# results/gpu-<device>.json and prints a table. `scripts/gpu_check.sh --dry-run` runs the same steps on the CPU
# with the tiny model. Dependencies: already installed, or wheels carried along in ./wheels, installed beside
# the machine's own torch. What the first run (an H200 with torch 2.11 and no diffusers) needed, ~29 MB:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 -d wheels \
#     diffusers==0.42.1 transformers==5.23.0 tokenizers==0.23.3 huggingface_hub==2.4.0 peft==0.21.2 \
#     httpx2==2.16.2 httpcore2==2.16.2 truststore==0.10.5 click==8.5.1 regex==2026.5.9 hf-xet==1.8.0
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
python=$(command -v python3 || command -v python)
if ! "$python" -c "import torch, diffusers, transformers, peft, cv2, scipy" 2>/dev/null; then
  if [ -d wheels ]; then
    "$python" -m pip install -q --no-index --no-deps --target /tmp/dragdiff-site wheels/*.whl
    export PYTHONPATH="/tmp/dragdiff-site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "error: dependencies are missing and there is no ./wheels folder to install them from" >&2
    exit 2
  fi
fi
exec "$python" scripts/gpu_check.py "$@"
