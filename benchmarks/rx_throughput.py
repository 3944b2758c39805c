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
from gr_semcom.link.sim import _collector


def _rss_mib() -> float:
    """Resident set size now (not the peak: the TX phase's peak would hide the receiver's)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def box_speed() -> dict:
    """How fast the shared box is right now, recorded beside every figure:
    the same code measured 1.6 and 8.4 Msps on one day (docs/receiver_speed.md),
    so figures of different days compare only through these. The best of 3
    of a pure-Python loop of 10^6 additions (interpreter speed) and of 200
    complex 4096-point numpy FFTs (vectorised code), seconds."""
    def best(fn):
        out = []
        for _ in range(3):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
        return round(min(out), 4)

    def loop():
        s = 0
        for i in range(10 ** 6):
            s += i

    x = np.exp(1j * np.arange(4096)).astype(np.complex64)

    def ffts():
        for _ in range(200):
            np.fft.fft(x)

    return {"box_python_loop_1e6_s": best(loop), "box_fft_4096_x200_s": best(ffts)}


def _thread_cpu() -> dict:
    """CPU seconds (user + system) per thread of this process, by thread id
    (GNU Radio names each block's thread after the block, cut to 15 chars)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for t in os.listdir("/proc/self/task"):
        try:
            s = open(f"/proc/self/task/{t}/stat").read()
        except OSError:
            continue
        f = s[s.rindex(")") + 2:].split()
        out[t] = (s[s.index("(") + 1:s.rindex(")")], (int(f[11]) + int(f[12])) / tick)
    return out


def receiver_classes(waveform: str):
    """(RX hier block, TX hier block, spec class) of a waveform."""
    if waveform == "ofdm":
        from gr_semcom.blocks.ofdm_hier import ofdm_phy_rx as RX, ofdm_phy_tx as TX
        from gr_semcom.phy.ofdm import OfdmSpec as Spec
    else:
        from gr_semcom.blocks.phy_hier import phy_rx as RX, phy_tx as TX
        from gr_semcom.phy.frame import FrameSpec as Spec
    return RX, TX, Spec


def make_signal(waveform: str, mod: str, rate: str, mbytes: float, snr: float):
    """The received signal of ``mbytes`` random payload through phy_tx (or
    the OFDM TX) and AWGN at ``snr`` dB Es/N0, in a cf32 file (cached in the
    temp directory: the same arguments give the same file). A vector sink
    polled with data() copied the whole growing vector on every poll, which
    made the set-up quadratic in the size. Returns (path, frames, samples)."""
    import hashlib
    import tempfile

    _, TX, Spec = receiver_classes(waveform)
    spec = Spec(modulation=mod, code_rate=rate)
    key = hashlib.sha1(repr((waveform, mod, rate, mbytes, snr, 2)).encode()).hexdigest()[:12]
    cache = os.path.join(tempfile.gettempdir(), f"semcom_rx_throughput_{key}.cf32")
    nfile = cache + ".frames"
    if not (os.path.exists(cache) and os.path.exists(nfile)):
        data = np.random.default_rng(0).integers(0, 256, int(mbytes * 1e6), dtype=np.uint8).tobytes()
        txfile = cache + ".tx"
        tb = gr.top_block()
        tx, snk, st_tx = TX(spec), blocks.file_sink(gr.sizeof_gr_complex, txfile, False), _collector()
        snk.set_unbuffered(False)
        tb.connect(tx, snk)
        tb.msg_connect(tx, "status", st_tx, "in")
        tb.start()
        tx.framer._post(pmt.intern("in"), make_pdu({}, data))
        last, stable = -1, 0
        while stable < 20:
            time.sleep(0.05)
            n = os.path.getsize(txfile) if os.path.exists(txfile) else 0
            stable = stable + 1 if (n == last and n > 0) else 0
            last = n
        tb.stop()
        tb.wait()
        del tx, snk
        n_frames = pmt.to_python(st_tx.items[0])["frames"]
        x = np.fromfile(txfile, np.complex64)
        os.unlink(txfile)
        rng = np.random.default_rng(1)
        sigma = 10 ** (-snr / 20) / np.sqrt(2)
        x = x + (sigma * (rng.standard_normal(x.size) + 1j * rng.standard_normal(x.size))).astype(np.complex64)
        x = np.concatenate([x, np.zeros(20000, np.complex64)]).astype(np.complex64)
        x.tofile(cache + ".part")
        os.replace(cache + ".part", cache)
        with open(nfile, "w") as f:
            f.write(str(n_frames))
    return cache, int(open(nfile).read()), os.path.getsize(cache) // 8


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
    ap.add_argument("--status-consumer", action="store_true",
                    help="connect a Python collector to the status port (costs GIL time per message)")
    ap.add_argument("--threads", action="store_true", help="also report CPU seconds per thread during RX")
    args = ap.parse_args(argv)
    RX, _, Spec = receiver_classes(args.waveform)
    spec = Spec(modulation=args.mod, code_rate=args.rate)
    data_bytes = int(args.mbytes * 1e6)
    cache, n_frames, n_samples = make_signal(args.waveform, args.mod, args.rate, args.mbytes, args.snr)
    # -- receive, timed. The samples come from a file (GNU Radio's C++
    # file_source, as when replaying a recording; the file is in the page
    # cache). An earlier version posted them as one PDU to pdu_to_stream_c,
    # which re-copies the rest of its buffer on every work call: that source
    # alone took a fifth of the core (perf, per-thread samples).
    tb = gr.top_block()
    # repeat: a source that ends marks the stream blocks done, and GNU Radio
    # then stops the message blocks before they drain their queues (the last
    # few bursts); the clock stops at the n_frames-th frame status, one pass
    src = blocks.file_source(gr.sizeof_gr_complex, cache, True)
    rx = RX(spec, ldpc_iterations=args.ldpc_iterations, ldpc_decoder=args.ldpc_decoder)
    # the frame outcomes are read from the frame decoder's own counters
    # (judged, frames_ok): a status collector converted in Python holds the
    # GIL for every message and took a third of the GIL time (py-spy --gil);
    # --status-consumer connects one anyway (what an application costs)
    st = _collector()
    tb.connect(src, rx)
    if args.status_consumer:
        tb.msg_connect(rx, "status", st, "in")
    box = box_speed()
    rss0 = _rss_mib()  # the test signal (and its file) is already in memory
    thr0 = _thread_cpu()
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    tb.start()

    rss_peak = _rss_mib()
    while rx.deframer.judged < n_frames and time.perf_counter() - t0 < 600:
        time.sleep(0.01)
        rss_peak = max(rss_peak, _rss_mib())
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    thr1 = _thread_cpu()
    tb.stop()
    tb.wait()
    # frames_ok can pass n_frames by the few frames of the next pass of the looped file
    ok = min(rx.deframer.frames_ok, n_frames)
    res = {"waveform": args.waveform, "modulation": args.mod, "code_rate": args.rate, "snr_db": args.snr,
           "ldpc_decoder": args.ldpc_decoder,
           "samples": n_samples, "frames": n_frames, "frames_ok": ok, "wall_s": round(wall, 3),
           "cpu_s": round(cpu, 3), "msps_wall": round(n_samples / wall / 1e6, 3),
           "msps_per_cpu_second": round(n_samples / cpu / 1e6, 3),
           "payload_mbit_s": round(8 * data_bytes / wall / 1e6, 3),
           "rss_before_rx_mib": round(rss0, 1), "rss_peak_during_rx_mib": round(rss_peak, 1),
           "receiver_rss_growth_mib": round(rss_peak - rss0, 1),
           "cpus_allowed": len(os.sched_getaffinity(0)), "loadavg_1min_after": os.getloadavg()[0],
           "kernels": os.environ.get("GR_SEMCOM_KERNELS", "numba"),
           "sanitize_work_calls": rx.sanitize.calls, **box}
    if args.threads:
        per = {}
        for t, (name, c) in thr1.items():
            d = c - thr0.get(t, (name, 0.0))[1]
            if d > 0.005:
                per[f"{name}/{t}"] = round(d, 3)
        res["thread_cpu_s"] = dict(sorted(per.items(), key=lambda kv: -kv[1]))
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
