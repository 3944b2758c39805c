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
if [ ! -x .venv/bin/python ]; then
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
PY=.venv/bin/python
if ! $PY -c "import gr_semcom, commpy, pytest, torch, diffusers, transformers, zmq, PIL" 2>/dev/null; then
  $PY -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  $PY -m pip install -q "torch==2.13.0" "numpy<2"
  $PY -m pip install -q -e ".[test,ml]" "torch==2.13.0" "numpy<2"
fi
