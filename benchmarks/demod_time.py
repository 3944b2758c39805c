"""Time of the single-carrier burst demodulator (numpy DSP only, no GNU Radio)
per burst: timing search, CFO, pilot channel estimate, LLRs.

    taskset -c 0 .venv/bin/python benchmarks/demod_time.py --mod qpsk --rate 1/2

The burst is built with the package's own framing and RRC (AWGN at --snr,
a CFO and an integer lead); the demodulator must find it (the script fails
otherwise, so a broken receiver cannot look fast).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from gr_semcom.phy.frame import BurstDemodulator, FrameSpec


def make_burst(spec: FrameSpec, snr_db: float, cfo: float, lead: int, rng) -> np.ndarray:
    sym = spec.build_symbols(rng.integers(0, 2, spec.coded_bits).astype(np.uint8))
    up = np.zeros(sym.size * spec.sps, np.complex64)
    up[:: spec.sps] = sym
    tx = np.convolve(up, spec.rrc) * np.exp(2j * np.pi * cfo / spec.sps * np.arange(up.size + spec.rrc.size - 1))
    nv = 10 ** (-snr_db / 10)
    rx = tx + np.sqrt(nv / 2) * (rng.standard_normal(tx.size) + 1j * rng.standard_normal(tx.size))
    mf = np.convolve(rx, spec.rrc)[spec.rrc.size - 1:]  # the matched filter's delay removed
    return np.concatenate([np.zeros(lead, np.complex64), mf.astype(np.complex64), np.zeros(64, np.complex64)])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mod", default="qpsk")
    ap.add_argument("--rate", default="1/2")
    ap.add_argument("--snr", type=float, default=10.0)
    ap.add_argument("--bursts", type=int, default=300)
    args = ap.parse_args(argv)
    spec = FrameSpec(modulation=args.mod, code_rate=args.rate)
    dem = BurstDemodulator(spec, search=40)
    x = make_burst(spec, args.snr, 0.005, 11, np.random.default_rng(0))[: dem.samples_needed + 8]
    res = dem.demodulate(x)
    if not res.ok:
        raise SystemExit(f"the demodulator did not find the burst: {res.reason}")
    for _ in range(20):
        dem.demodulate(x)
    t = time.perf_counter()
    for _ in range(args.bursts):
        dem.demodulate(x)
    ms = (time.perf_counter() - t) / args.bursts * 1e3
    out = {"modulation": args.mod, "code_rate": args.rate, "samples_per_burst": int(x.size),
           "symbols_per_burst": spec.n_symbols, "ms_per_burst": round(ms, 3),
           "msps_demodulator_alone": round(x.size / ms / 1e3, 2), "snr_db_estimate": round(res.snr_db, 2),
           "cfo_estimate": round(res.cfo, 5)}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
