"""Detector false alarms on pure noise: unit-power complex white Gaussian
noise (no signal) into phy_rx for each threshold; counts corr_est
detections (``corr_start`` tags), bursts that pass the demodulator's
preamble and pilot checks, frames that pass CRC and PDUs (the last two must
be zero). Writes false_alarms.csv.

    .venv/bin/python benchmarks/false_alarms.py --msamples 20 --out benchmarks/results
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--msamples", type=float, default=20.0, help="million noise samples per threshold")
    ap.add_argument("--thresholds", default="0.15,0.2,0.25,0.3")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results"))
    a = ap.parse_args(argv)
    from tqdm import tqdm

    from gr_semcom.link.ota import false_alarms
    from gr_semcom.phy.frame import FrameSpec

    spec = FrameSpec(modulation="qpsk", code_rate="1/2", codewords=2)
    rows = []
    for i, t in enumerate(tqdm([float(x) for x in a.thresholds.split(",")], desc="thresholds")):
        r = false_alarms(spec, seconds_of_samples=a.msamples, sample_rate=1e6, threshold=t, seed=100 + i)
        rows.append(r)
        print(json.dumps(r), flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "false_alarms.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
