"""Throughput of the receiver's stream side alone: file source -> NaN guard ->
FFT matched filter -> preamble detector -> burst capture (no demodulator),
on the rx_throughput.py signal, with the Python or the compiled (C++) NaN
guard and capture, so the cost of each is seen by itself.

    .venv/bin/python benchmarks/rx_frontend.py --guard native --capture native
    .venv/bin/python benchmarks/rx_frontend.py --guard python --capture python
    .venv/bin/python benchmarks/rx_frontend.py --guard none --capture none   # C++ filter + detector only
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--guard", choices=("python", "native", "none"), default="native")
    ap.add_argument("--capture", choices=("python", "native", "none"), default="native")
    ap.add_argument("--mbytes", type=float, default=1.0)
    a = ap.parse_args(argv)
    from gnuradio import blocks, filter, gr

    import rx_throughput
    from gr_semcom.blocks import phy_blocks as B
    from gr_semcom.blocks.phy_hier import preamble_detector, sync_waveform
    from gr_semcom.phy.frame import FrameSpec

    spec = FrameSpec()
    path, _, n = rx_throughput.make_signal("sc", "qpsk", "1/2", a.mbytes, 10.0)
    tb = gr.top_block()
    chain = [blocks.file_source(gr.sizeof_gr_complex, path, False)]
    if a.guard != "none":
        chain.append(B.sanitize_cc() if a.guard == "python" else B._native.nan_guard_cc())
    chain += [filter.fft_filter_ccf(1, spec.rrc.tolist(), 1), preamble_detector(sync_waveform(spec), spec.sps, 0.3)]
    cap = None
    if a.capture == "python":
        cap = B.burst_capture(8000, lead=16, min_gap=16)
        cap.local = B.LocalPdus()
    elif a.capture == "native":
        cap = B._native.burst_capture_c(8000, 16, "corr_start", 64, 16, 1 << 30)
    chain.append(cap if cap is not None else blocks.null_sink(gr.sizeof_gr_complex))
    tb.connect(*chain)
    t, c = time.perf_counter(), time.process_time()
    tb.run()
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    res = {"guard": a.guard, "capture": a.capture, "samples": n, "msps_wall": round(n / wall / 1e6, 2),
           "msps_per_cpu_second": round(n / cpu / 1e6, 2),
           "bursts_captured": int(cap.published) if cap is not None else None}
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
