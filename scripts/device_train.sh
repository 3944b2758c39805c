#!/usr/bin/env bash
# The whole training of the learned image codecs on one GPU machine in at most
# 9 minutes (issue 19), written for the project's device machine (one H200,
# python3 = torch with CUDA, no network): continues the hyperprior rate points
# from their committed checkpoints, builds the conditional Seb nets from them
# afresh, continues DeepJSCC, and puts each model directory as a tarball in
# $OUT (at most 8 files of <= 16 MiB come back; about 40 MB in all).
#
# Here, once (downloads the compressai wheel for the device's Python 3.12):
#   bash scripts/device_train.sh --prepare
# Then one device run (carry the photos and the wheel; the models travel as tracked files):
#   run(command="bash scripts/device_train.sh", carry=["data/photos", ".whl"], timeout_s=600)
# Back here: for f in <files_at>/*.tar; do tar -xf "$f" -C models; done, check the cards, commit.
#
# Budget (seconds of training, each run also checkpoints at its end):
#   hyperprior 32, 128: 120 each; Seb 32, 128: 100 each; DeepJSCC: 40  -> 480 s + start-up.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --prepare ]; then
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  V=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('compressai'))")
  .venv/bin/python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    -d .whl "compressai==$V"
  ls -la .whl
  exit 0
fi
OUT=${OUT:-out/device_train}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/compressai-*.whl >/dev/null 2>&1 && ! python3 -c "import compressai" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
test -f data/photos/manifest.json || { echo "data/photos missing: carry it (bash scripts/fetch_photos.sh here)"; exit 2; }
python3 -c "import torch; assert torch.cuda.is_available(); print(torch.__version__, torch.cuda.get_device_name())"
T="python3 -m gr_semcom.semantic.seb.train"
GPU="--device cuda --amp --batch 16 --pool 64 --eval-every 1000 --quiet"
LOG="$OUT/device_train.log"
: > "$LOG"
for L in 32 128; do
  $T hyperprior --lam $L --steps 20000 --lr 1e-4 --warmup 300 $GPU --time-limit 120 \
    --out models/hyperprior_lam$L 2>&1 | tee -a "$LOG"
done
for L in 32 128; do
  # afresh from the hyperprior just trained (its residual codec is copied and frozen)
  $T seb --lam $L --steps 20000 --lr 1e-4 --warmup 100 $GPU --time-limit 100 --no-resume \
    --init models/hyperprior_lam$L/model.safetensors --out models/seb_lam$L 2>&1 | tee -a "$LOG"
done
python3 -c "
from gr_semcom.semantic.image_jscc import train_image_jscc
c = train_image_jscc('models/image_deepjscc', steps=20000, batch=32, lr=1e-4, warmup=200, device='cuda', amp=True,
                     time_limit=40, eval_every=1000, progress=False)
print('deepjscc step', c['steps'], c['test_awgn'])" 2>&1 | tee -a "$LOG"
for d in hyperprior_lam32 hyperprior_lam128 seb_lam32 seb_lam128 image_deepjscc; do
  tar -cf "$OUT/$d.tar" -C models --exclude=train.safetensors --exclude=STOP "$d"
done
ls -la "$OUT"
