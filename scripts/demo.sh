#!/usr/bin/env bash
# The README's main job: sets up, then sends an image through ULBSC (caption +
# saliency codebook index) over the GNU Radio PHY (CRC32 + LDPC + QPSK with
# pilots, AWGN at 6 dB Es/N0 with CFO and timing offset) and writes the
# received caption, saliency map and metrics.json to out/demo.
# `bash scripts/demo.sh FILE` sends any file through the PHY instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ $# -gt 0 ]; then
  exec .venv/bin/semcom transmit "$1" --mod qpsk --rate 1/2 --channel awgn --snr 8 \
    --cfo 0.01 --timing-offset 0.4 --out out/demo
fi
exec .venv/bin/semcom transmit examples/chelsea.jpg --scheme ulbsc --channel awgn --snr 6 \
  --cfo 0.01 --timing-offset 0.4 --out out/demo
