#!/usr/bin/env bash
# The device side of a GPU call (prepared here by scripts/gpu_prepare.sh, which prints the call): installs the
# carried wheels, then trains STAGES (default: decoder) warm-started from the carried parts of the bundled model
# and ships the packed weights and logs to $OUT. BATCH_SIZE=auto (the default here) times the stage at its
# config's batch and larger ones first and trains at the one that uses the GPU best (RUN/STAGE/batch.json).
# Judge what comes back here (scripts/gpu_prepare.sh's last lines).
#   bash scripts/gpu_run.sh                      # in the device call; STAGES="inpaint" for the other decoder
set -uo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/site:$PWD/src
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
INIT_FROM=${INIT_FROM:-models/unclip-emoji} STAGES=${STAGES:-decoder} CACHE=${CACHE:-.devdata} \
  DATA_LOCALES=${DATA_LOCALES:-en} DATA=${DATA:-/tmp/data} RUN=${RUN:-/tmp/run} SHIP=${SHIP:-$OUT} \
  SKIP_EVAL=${SKIP_EVAL:-1} BATCH_SIZE=${BATCH_SIZE:-auto} BUDGET_SECONDS=${BUDGET_SECONDS:-520} PYTHON=python3 \
  bash scripts/train_gpu.sh
