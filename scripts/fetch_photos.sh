#!/usr/bin/env bash
# Fetch the natural photographs the learned codecs train and are tested on
# (issue 19) into data/photos (git-ignored), with every photo's source,
# version and licence in data/photos/manifest.json and the packages'
# copyright files in data/photos/LICENSES/. Debian sources through
# `apt-get download` + `dpkg -x` (no root needed), PyPI ones from the venv
# (scikit-image, scikit-learn, matplotlib). Held out (validation / test, never
# trained on): plasma-workspace-wallpapers. Idempotent.
#
#   bash scripts/fetch_photos.sh [OUT_DIR]
#   bash scripts/fetch_photos.sh --test-dir out/heldout512   # + the held-out photos as 512x512 PNGs
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=data/photos
TEST_DIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --test-dir) TEST_DIR="$2"; shift 2 ;;
    *) OUT="$1"; shift ;;
  esac
done
"$PY" -m gr_semcom.semantic.photoset fetch --out "$OUT"
if [ -n "$TEST_DIR" ]; then
  "$PY" -m gr_semcom.semantic.photoset test-dir "$TEST_DIR" --size 512 --photos "$OUT" >/dev/null
  echo "held-out photos as 512x512 PNGs in $TEST_DIR"
fi
