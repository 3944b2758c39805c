"""Time of the single-carrier burst demodulator (numpy DSP only, no GNU Radio)
per burst: timing search, CFO, pilot channel estimate, LLRs.

    taskset -c 0 .venv/bin/python benchmarks/demod_time.py --mod qpsk --rate 1/2 [--kernels numba|numpy]

Also times the LDPC decoder on the burst's LLRs (sum-product and min-sum)
with the same kernels, so one line gives the per-burst Python-side cost.

The burst is the PHY tests' numpy reference channel
(``phy.frame.simulated_burst``: AWGN at --snr, CFO 0.005 cycles/symbol,
0.3-sample timing offset); the demodulator must find it (the script fails
otherwise, so a broken receiver cannot look fast).
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from gr_semcom.phy.frame import BurstDemodulator, FrameSpec, simulated_burst


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mod", default="qpsk")
    ap.add_argument("--rate", default="1/2")
    ap.add_argument("--snr", type=float, default=10.0)
    ap.add_argument("--bursts", type=int, default=300)
    ap.add_argument("--kernels", default=None, choices=("numba", "numpy"),
                    help="compiled kernels or the numpy reference (default: GR_SEMCOM_KERNELS, else numba)")
    args = ap.parse_args(argv)
    spec = FrameSpec(modulation=args.mod, code_rate=args.rate)
    dem = BurstDemodulator(spec, search=40, kernels=args.kernels)
    rng = np.random.default_rng(0)
    x = simulated_burst(spec, rng.integers(0, 2, spec.coded_bits).astype(np.uint8), args.snr, 0.005, 0.3, rng)
    x = np.concatenate([x.astype(np.complex64), np.zeros(dem.samples_needed + 8, np.complex64)])
    x = x[: dem.samples_needed + 8]
    res = dem.demodulate(x)
    if not res.ok:
        raise SystemExit(f"the demodulator did not find the burst: {res.reason}")
    for _ in range(20):
        dem.demodulate(x)
    t = time.perf_counter()
    for _ in range(args.bursts):
        dem.demodulate(x)
    ms = (time.perf_counter() - t) / args.bursts * 1e3
    from gr_semcom.phy.ldpc import MinSumDecoder

    ldpc = {}
    if spec.code.alist is not None:
        # the decoder needs codewords: the all-zero one (belief propagation is
        # symmetric in the codeword) through the same channel and demodulator
        x0 = simulated_burst(spec, np.zeros(spec.coded_bits, np.uint8), args.snr, 0.005, 0.3, rng)
        x0 = np.concatenate([x0.astype(np.complex64), np.zeros(dem.samples_needed + 8, np.complex64)])
        res = dem.demodulate(x0[: dem.samples_needed + 8])
        for method in ("spa", "minsum"):
            dec = MinSumDecoder.for_code(spec.code, 50, 0.8 if method == "minsum" else 1.0, method, dem.kernels)
            _, ok, iters = dec.decode(res.llr)
            t = time.perf_counter()
            for _ in range(args.bursts):
                dec.decode(res.llr)
            ldpc[f"ldpc_{method}_ms_per_burst"] = round((time.perf_counter() - t) / args.bursts * 1e3, 3)
            ldpc[f"ldpc_{method}_iterations"] = iters.tolist()
    out = {"kernels": dem.kernels, "modulation": args.mod, "code_rate": args.rate, "samples_per_burst": int(x.size),
           "symbols_per_burst": spec.n_symbols, "ms_per_burst": round(ms, 3),
           "msps_demodulator_alone": round(x.size / ms / 1e3, 2), "snr_db_estimate": round(res.snr_db, 2),
           "cfo_estimate": round(res.cfo, 5), **ldpc,
           "loadavg_1min": os.getloadavg()[0]}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
