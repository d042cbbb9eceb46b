#!/usr/bin/env bash
# The one-shot device check (README: GPU): on a CUDA machine, offline, in about 8 minutes, writes
# results/gpu-<device>.json and prints a table. `scripts/gpu_check.sh --dry-run` runs the same steps on the CPU
# with the tiny model. Dependencies: already installed, or from wheels carried along in ./wheels
# (`pip download -r requirements.txt -d wheels` on a connected machine of the same platform).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
if ! python -c "import torch, diffusers, transformers, peft, cv2, scipy" 2>/dev/null; then
  if [ -d wheels ]; then
    pip install --no-index --find-links wheels -r requirements.txt
  else
    echo "error: dependencies are missing and there is no ./wheels folder to install them from" >&2
    exit 2
  fi
fi
exec python scripts/gpu_check.py "$@"
