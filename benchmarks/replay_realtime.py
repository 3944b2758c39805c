"""A SigMF recording replayed at its real sample rate (10 Msps by default)
into phy_rx for --seconds: does the receiver keep up, and is every frame
decoded?

The recording is the rx_throughput signal (QPSK, LDPC 1/2, AWGN at 10 dB
Es/N0 unless told otherwise) written as a SigMF cf32 recording whose
metadata says --rate; a short recording (--mbytes of payload: 1 MB is
18.5 M samples, 148 MB, 1.85 s at 10 Msps) is looped, because 60 s at 10 Msps
would be a 4.8 GB file. The source is gr_semcom's sigmf_source with
``repeat=True, throttle=True`` (GNU Radio's throttle paces it at the
recording's rate).

"No dropped samples" for a throttled file: a file source never drops;
when the receiver falls behind, back-pressure (its burst backlog, full
buffers) makes the source run slower than the throttle's rate. A live radio
at that point reports overflows. So the test is the achieved rate: samples
consumed over wall time, at least 99.5 % of --rate over the run and in each
10 s window, and every frame of the consumed samples decoded (frame
decoder's CRC-good count against frames per loop x loops consumed).
GNU Radio's throttle catches up after a stall (it paces against its start
time), so a short stall costs no rate; "max_lag_ms" is the most the
receiver fell behind real time, sampled every 0.1 s: the buffering (radio
driver plus the GNU Radio buffer in front of the receiver) that a live
radio needs to ride through the run without an overflow.

    .venv/bin/python benchmarks/replay_realtime.py --rate 10e6 --seconds 60
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=10e6, help="recording sample rate, samples/s")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--mod", default="qpsk")
    ap.add_argument("--code-rate", default="1/2")
    ap.add_argument("--snr", type=float, default=10.0)
    ap.add_argument("--mbytes", type=float, default=1.0, help="payload of the looped recording")
    ap.add_argument("--out", default="", help="write the summary JSON here too")
    a = ap.parse_args(argv)

    from gnuradio import gr

    from gr_semcom.blocks.phy_hier import phy_rx
    from gr_semcom.blocks.sigmf_blocks import sigmf_source
    from gr_semcom.phy.frame import FrameSpec
    from gr_semcom.phy.recording import frame_fields, write_meta

    spec_ = importlib.util.spec_from_file_location("rx_throughput", ROOT / "benchmarks" / "rx_throughput.py")
    rxt = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(rxt)
    cf32, frames_per_loop, loop_samples = rxt.make_signal("sc", a.mod, a.code_rate, a.mbytes, a.snr)
    spec = FrameSpec(modulation=a.mod, code_rate=a.code_rate)
    # the SigMF pair: the cached cf32 file is the data file (a hard link, no copy)
    base = Path(tempfile.gettempdir()) / f"semcom_replay_{Path(cf32).stem}"
    data = base.with_suffix(".sigmf-data")
    if not data.exists():
        os.link(cf32, data)
    write_meta(base, a.rate, description="rx_throughput signal for the real-time replay benchmark",
               extra={"frame": frame_fields(spec)})

    box = rxt.box_speed()
    tb = gr.top_block("replay_realtime")
    src = sigmf_source(str(base), repeat=True, throttle=True)
    rx = phy_rx(spec, threshold=0.3, timeout=1.0)
    # the rate is read from the receiver's capture (stream_position); an
    # unread probe_rate block on the source cost 3 % of a core (2026-12-07)
    tb.connect(src, rx)
    rows = []
    t0 = time.monotonic()
    cpu0 = time.process_time()
    tb.start()
    lag = []  # (t, samples consumed) every 0.1 s: how far the receiver fell behind real time
    try:
        next_row = 1.0
        while time.monotonic() - t0 < a.seconds:
            time.sleep(0.1)
            now = time.monotonic() - t0
            lag.append((now, int(rx.stream_position())))
            if now < next_row:
                continue
            next_row += 1.0
            rows.append({"t_s": round(now, 2), "consumed": lag[-1][1],
                         "judged": rx.deframer.judged, "frames_ok": rx.deframer.frames_ok,
                         "frames_bad": rx.deframer.frames_bad, "backlog": rx.backlog.pending,
                         "in_flight": rx.in_flight(), "captures": int(rx.burst.published),
                         "capture_overflows": int(rx.burst.overflows), "bursts_dropped": rx.demod.dropped})
    finally:
        wall = time.monotonic() - t0
        cpu = time.process_time() - cpu0
        last = rows[-1]
        tb.stop()
        tb.wait()
    t = np.array([r["t_s"] for r in rows])
    c = np.array([r["consumed"] for r in rows], np.float64)
    # achieved rate in 10 s windows (after the first second: start-up)
    win = []
    for i in range(len(rows)):
        j = np.searchsorted(t, t[i] + 10.0)
        if j < len(rows) and t[i] >= 1.0:
            win.append((c[j] - c[i]) / (t[j] - t[i]))
    # lag behind real time: samples a radio would have produced by then and the
    # receiver had not yet consumed, taking the least of it in the first second
    # (flowgraph start, throttle's clock) as zero. A live radio keeps up without
    # an overflow only if its driver and the GNU Radio buffer in front of the
    # receiver hold the largest lag (the throttle catches up after a stall, as
    # a radio's buffer drains)
    lt = np.array([x[0] for x in lag])
    behind = a.rate * lt - np.array([x[1] for x in lag], np.float64)
    first = behind[lt <= 1.0]
    max_lag = float(np.max(behind - (first.min() if first.size else behind[0])))
    # frames whose burst lies inside the consumed samples, judged by the frame decoder
    loops = last["consumed"] / loop_samples
    expected = int(np.floor(loops)) * frames_per_loop + int((loops % 1) * frames_per_loop)
    rate = float(c[-1] / t[-1])
    summ = {"recording_rate_sps": a.rate, "seconds": round(float(t[-1]), 1), "modulation": a.mod,
            "code_rate": a.code_rate, "snr_db": a.snr, "loop_samples": loop_samples,
            "frames_per_loop": frames_per_loop, "loops_consumed": round(loops, 2),
            "achieved_rate_sps": round(rate), "achieved_fraction": round(rate / a.rate, 4),
            "worst_10s_window_fraction": round(min(win) / a.rate, 4) if win else None,
            "frames_expected_approx": expected, "frames_judged": last["judged"],
            "frames_ok": last["frames_ok"], "frames_crc_fail": last["frames_bad"],
            "captures": last["captures"], "capture_overflows": last["capture_overflows"],
            "bursts_dropped": last["bursts_dropped"], "rx_workers": rx.demod.workers,
            "native_blocks": type(rx.burst).__name__ == "burst_capture_c",
            "max_backlog": max(r["backlog"] for r in rows), "cpu_s": round(cpu, 1), "wall_s": round(wall, 1),
            "cpus_allowed": len(os.sched_getaffinity(0)), "loadavg_1min_after": os.getloadavg()[0],
            "max_lag_samples": int(max_lag), "max_lag_ms": round(1e3 * max_lag / a.rate, 1),
            "kept_up": bool(rate >= 0.995 * a.rate and (not win or min(win) >= 0.995 * a.rate)),
            "kernels": os.environ.get("GR_SEMCOM_KERNELS", "numba"), **box}
    print(json.dumps(summ))
    if a.out:
        Path(a.out).write_text(json.dumps({"summary": summ, "per_second": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
