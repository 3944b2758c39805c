"""Receiver throughput of the GNU Radio PHY in complex samples per second, and memory.

Builds bursts with phy_tx once, adds AWGN in numpy, then times phy_rx (or the
OFDM receiver) from the first sample in to the last frame's status out.
Run it pinned to one core to get the one-core figure:

    taskset -c 0 .venv/bin/python benchmarks/rx_throughput.py --mod qpsk --rate 1/2 --mbytes 1
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import pmt
from gnuradio import blocks, gr

from gr_semcom.blocks.pdu_util import make_pdu
from gr_semcom.sim import _collector


def _rss_mib() -> float:
    """Resident set size now (not the peak: the TX phase's peak would hide the receiver's)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mod", default="qpsk")
    ap.add_argument("--rate", default="1/2")
    ap.add_argument("--waveform", default="sc", choices=("sc", "ofdm"))
    ap.add_argument("--mbytes", type=float, default=1.0, help="payload megabytes to receive")
    ap.add_argument("--snr", type=float, default=10.0)
    ap.add_argument("--ldpc-iterations", type=int, default=50, help="LDPC decoder max iterations")
    ap.add_argument("--ldpc-decoder", default="spa", choices=("spa", "minsum", "gr-fec"),
                    help="batched numpy sum-product / min-sum, or gr-fec's ldpc_decoder")
    args = ap.parse_args(argv)
    if args.waveform == "ofdm":
        from gr_semcom.blocks.ofdm_hier import ofdm_phy_rx as RX, ofdm_phy_tx as TX
        from gr_semcom.phy.ofdm import OfdmSpec as Spec
    else:
        from gr_semcom.blocks.phy_hier import phy_rx as RX, phy_tx as TX
        from gr_semcom.phy.frame import FrameSpec as Spec
    spec = Spec(modulation=args.mod, code_rate=args.rate)
    data = np.random.default_rng(0).integers(0, 256, int(args.mbytes * 1e6), dtype=np.uint8).tobytes()
    # -- transmit once
    tb = gr.top_block()
    tx, snk, st_tx = TX(spec), blocks.vector_sink_c(), _collector()
    tb.connect(tx, snk)
    tb.msg_connect(tx, "status", st_tx, "in")
    tb.start()
    tx.framer._post(pmt.intern("in"), make_pdu({}, data))
    n_frames = None
    last, stable = -1, 0
    while stable < 20:
        time.sleep(0.05)
        n = len(snk.data())
        stable = stable + 1 if n == last else 0
        last = n
    tb.stop()
    tb.wait()
    n_frames = pmt.to_python(st_tx.items[0])["frames"]
    x = np.array(snk.data(), np.complex64)
    rng = np.random.default_rng(1)
    sigma = 10 ** (-args.snr / 20) / np.sqrt(2)
    x = x + (sigma * (rng.standard_normal(x.size) + 1j * rng.standard_normal(x.size))).astype(np.complex64)
    x = np.concatenate([x, np.zeros(20000, np.complex64)])
    # -- receive, timed. The samples come from a file (GNU Radio's C++
    # file_source, as when replaying a recording; the file is in the page
    # cache). An earlier version posted them as one PDU to pdu_to_stream_c,
    # which re-copies the rest of its buffer on every work call: that source
    # alone took a fifth of the core (perf, per-thread samples).
    import tempfile

    tmp = tempfile.NamedTemporaryFile(suffix=".cf32", delete=False)
    x.tofile(tmp.name)
    tb = gr.top_block()
    # repeat: a source that ends marks the stream blocks done, and GNU Radio
    # then stops the message blocks before they drain their queues (the last
    # few bursts); the clock stops at the n_frames-th frame status, one pass
    src = blocks.file_source(gr.sizeof_gr_complex, tmp.name, True)
    rx = RX(spec, ldpc_iterations=args.ldpc_iterations, ldpc_decoder=args.ldpc_decoder)
    st = _collector()
    tb.connect(src, rx)
    tb.msg_connect(rx, "status", st, "in")
    del snk, tx
    rss0 = _rss_mib()  # the test signal (and its file) is already in memory
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    tb.start()

    # count incrementally: converting every status message on each poll would
    # compete for the GIL with the receiver's Python blocks
    seen, done, rss_peak = 0, 0, _rss_mib()
    while done < n_frames and time.perf_counter() - t0 < 600:
        time.sleep(0.01)
        rss_peak = max(rss_peak, _rss_mib())
        items = st.items[seen:]
        seen += len(items)
        done += sum(1 for m in items if pmt.to_python(m).get("event") == "frame")
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    tb.stop()
    tb.wait()
    os.unlink(tmp.name)
    frames = [d for d in map(pmt.to_python, st.items) if isinstance(d, dict) and d.get("event") == "frame"]
    ok = sum(1 for d in frames[:n_frames] if d.get("crc_ok"))
    res = {"waveform": args.waveform, "modulation": args.mod, "code_rate": args.rate, "snr_db": args.snr,
           "ldpc_decoder": args.ldpc_decoder,
           "samples": int(x.size), "frames": n_frames, "frames_ok": ok, "wall_s": round(wall, 3),
           "cpu_s": round(cpu, 3), "msps_wall": round(x.size / wall / 1e6, 3),
           "msps_per_cpu_second": round(x.size / cpu / 1e6, 3),
           "payload_mbit_s": round(8 * len(data) / wall / 1e6, 3),
           "rss_before_rx_mib": round(rss0, 1), "rss_peak_during_rx_mib": round(rss_peak, 1),
           "receiver_rss_growth_mib": round(rss_peak - rss0, 1)}
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
