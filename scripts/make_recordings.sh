#!/usr/bin/env bash
# The exact commands that produced hardware/recordings/*.sigmf-{meta,data}
# (the project's own TX, GNU Radio chain; the HackRF-like impairments are
# gr_semcom.link.ota.HACKRF_LIKE, listed in hardware/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
R=hardware/recordings
S=".venv/bin/semcom record"
# two example photos as Seb packets (set packet + 2 image packets) at CBR 1/30, QPSK LDPC 1/2
$S $R/seb_qpsk_tx --scheme seb --input examples --channel clean
$S $R/seb_qpsk_hackrf --scheme seb --input examples --channel hackrf
# a file (examples/README.md) through the same impairments, and at the edge of the CFO acquisition range
$S $R/file_qpsk_hackrf --scheme file --input examples/README.md --channel hackrf --codewords 2
$S $R/file_qpsk_hackrf_cfo002 --scheme file --input examples/README.md --channel hackrf --codewords 2 --cfo 0.02 --seed 12
