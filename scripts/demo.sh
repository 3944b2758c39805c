#!/usr/bin/env bash
# The README's main job: sets up, then sends a file through the GNU Radio PHY
# (LDPC + QPSK + pilots over AWGN with CFO and timing offset) and writes the
# received copy plus metrics.json to out/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/semcom transmit "${1:-README.md}" --mod qpsk --rate 1/2 --channel awgn --snr 8 \
  --cfo 0.01 --timing-offset 0.4 --out out/demo
