#!/usr/bin/env bash
# The training chain of the learned image codecs (issue 19), resumable: each
# command continues from its model directory's checkpoint/ (state.json +
# model.safetensors are committed; checkpoint/train.safetensors, the Adam
# moments, is kept locally), so re-running this script after an interruption,
# or in a later session, goes on where the last run stopped. --steps is the
# total of the cosine schedule; --time-limit SECONDS / a STOP file in the
# model directory end a run with a checkpoint.
#
#   bash scripts/fetch_photos.sh                # the photos first (data/photos)
#   bash scripts/train_seb.sh [hyperprior|seb|deepjscc|all] [extra args, e.g. --time-limit 3600]
#
# Order matters: a conditional Seb net copies its hyperprior's residual codec
# and freezes it (Seb >= its hyperprior by construction), so the Seb stage
# runs after the hyperprior stage it builds on. Training the hyperprior further
# afterwards means re-initialising Seb from it (--no-resume), or the shipped
# hyperprior and Seb's frozen copy differ (docs/learned_codecs.md).
# GPU: the same commands with --device cuda --amp --batch 16 --pool 64
# (scripts/device_train.sh does this in one <= 9 min run).
#
# History: models before issue 19 came from 81 opencv-doc photos as 128x128
# crops, ~80 CPU minutes (git log of this file); the hyperprior_lam32/128 runs
# below were initialised from those weights (the --init of their first run).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
T="nice -n 19 $PY -m gr_semcom.semantic.seb.train"
WHAT=${1:-all}
shift || true
CPU="--threads 1 --batch 4"
if [ "$WHAT" = hyperprior ] || [ "$WHAT" = all ]; then
  for L in 32 128; do
    $T hyperprior --lam $L --steps 20000 --lr 1e-4 --warmup 300 $CPU \
      --init models/hyperprior_lam$L/model.safetensors --out models/hyperprior_lam$L "$@"
  done
fi
if [ "$WHAT" = seb ] || [ "$WHAT" = all ]; then
  # first build (no checkpoint yet) of the shipped conditional nets also took
  #   --init-seb FIRST_SEB   (the first Seb models: git show 8cf76e6:models/seb_lam$L/model.safetensors > FIRST_SEB)
  # and for lambda 32 --lr 5e-4 --warmup 50 --ref-weight 1 --ref-steps 300 (each card lists its exact command);
  # lambda 128 and 512 are the starting point only (--run-steps 0).
  for L in 32 128 512; do
    $T seb --lam $L --steps 20000 --lr 1e-4 --warmup 100 $CPU \
      --init models/hyperprior_lam$L/model.safetensors --out models/seb_lam$L "$@"
  done
fi
if [ "$WHAT" = deepjscc ] || [ "$WHAT" = all ]; then
  nice -n 19 $PY -c "import sys, torch; torch.set_num_threads(1)
from gr_semcom.semantic.image_jscc import train_image_jscc
train_image_jscc('models/image_deepjscc', steps=20000, batch=8, lr=1e-4, warmup=200,
                 init='models/image_deepjscc/model.safetensors', progress=True)"
fi
