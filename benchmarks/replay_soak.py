"""Long-run stability of the receiver: a SigMF recording replayed in a loop
(sigmf_source repeat=True, as fast as the receiver runs) into phy_rx (DC
blocker on) -> seb_decoder, for --minutes. Every --every seconds it samples
the process's resident memory (psutil), the samples consumed, frames
(CRC ok / failed), bursts dropped and images decoded. Writes
replay_soak.csv and replay_soak.png (RSS and throughput against time) and
prints a summary: memory growth over the last three quarters of the run
(after warm-up), mean throughput in samples/s, frame error count.

    .venv/bin/python benchmarks/replay_soak.py --minutes 60 --out benchmarks/results
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recording", default=str(ROOT / "hardware/recordings/seb_qpsk_hackrf.sigmf-meta"))
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results"))
    ap.add_argument("--no-decode", action="store_true", help="PHY only (no seb_decoder)")
    a = ap.parse_args(argv)

    import numpy as np
    import pmt
    import psutil
    from gnuradio import blocks, gr
    from tqdm import tqdm

    from gr_semcom.blocks.phy_hier import phy_rx
    from gr_semcom.blocks.sigmf_blocks import sigmf_source

    class counter(gr.basic_block):
        """Counts messages and keeps none (a collector would grow by design)."""

        def __init__(self):
            gr.basic_block.__init__(self, "count", None, None)
            self.n = self.ok = self.bad = self.drops = self.busy = 0
            self.message_port_register_in(pmt.intern("in"))
            self.set_msg_handler(pmt.intern("in"), self.handle)

        def handle(self, msg):
            self.n += 1
            s = pmt.to_python(msg)
            if isinstance(s, dict):
                if s.get("event") == "frame":
                    self.ok += bool(s.get("crc_ok"))
                    self.bad += not s.get("crc_ok")
                elif s.get("event") == "burst_drop":
                    self.drops += 1
                elif s.get("event") == "busy":
                    self.busy += 1

    src = sigmf_source(a.recording, repeat=True)
    from gr_semcom.phy.recording import frame_spec

    spec = frame_spec(src.meta)
    tb = gr.top_block("soak")
    rx = phy_rx(spec, threshold=0.3, timeout=1.0, dc_block=256)
    probe = blocks.probe_rate(gr.sizeof_gr_complex, 1000.0, 0.15)
    status, pdus, images, dec_status = counter(), counter(), counter(), counter()
    tb.connect(src, rx)
    tb.connect(src, probe)
    tb.msg_connect(rx, "status", status, "in")
    tb.msg_connect(rx, "out", pdus, "in")
    if not a.no_decode:
        from gr_semcom.blocks.seb_blocks import seb_decoder

        dec = seb_decoder("", src.meta.get("semcom:scheme", "seb"))
        tb.msg_connect(rx, "out", dec, "in")
        tb.msg_connect(dec, "out", images, "in")
        tb.msg_connect(dec, "status", dec_status, "in")
    proc = psutil.Process()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    t0 = time.monotonic()
    tb.start()
    total = a.minutes * 60
    try:
        with tqdm(total=int(total), unit="s", desc="soak") as bar:
            while time.monotonic() - t0 < total:
                time.sleep(a.every)
                rows.append({"t_s": round(time.monotonic() - t0, 1), "rss_mb": round(proc.memory_info().rss / 2**20, 2),
                             "rate_sps": round(probe.rate(), 0), "frames_ok": status.ok, "frames_crc_fail": status.bad,
                             "bursts_dropped": status.drops, "pdus": pdus.n, "images": images.n,
                             "decoder_busy_drops": dec_status.busy})
                bar.update(int(time.monotonic() - t0) - bar.n)
                with open(out / "replay_soak.csv", "w", newline="") as f:
                    w = csv.DictWriter(f, fieldnames=list(rows[0]))
                    w.writeheader()
                    w.writerows(rows)
    finally:
        tb.stop()
        tb.wait()
    rss = np.array([r["rss_mb"] for r in rows])
    t = np.array([r["t_s"] for r in rows])
    warm = t >= t[-1] / 4
    slope = float(np.polyfit(t[warm] / 3600, rss[warm], 1)[0]) if warm.sum() >= 3 else float("nan")
    summ = {"recording": Path(a.recording).name, "minutes": round(t[-1] / 60, 1), "decode": not a.no_decode,
            "rss_mb_start_after_warmup": float(rss[warm][0]), "rss_mb_end": float(rss[-1]),
            "rss_mb_max": float(rss.max()), "rss_growth_mb_per_hour_after_warmup": round(slope, 2),
            "mean_rate_sps": round(float(np.mean([r["rate_sps"] for r in rows])), 0),
            "frames_ok": rows[-1]["frames_ok"], "frames_crc_fail": rows[-1]["frames_crc_fail"],
            "bursts_dropped": rows[-1]["bursts_dropped"], "pdus": rows[-1]["pdus"], "images": rows[-1]["images"],
            "decoder_busy_drops": rows[-1]["decoder_busy_drops"],
            "cpu": f"{psutil.cpu_count()} cores"}
    (out / "replay_soak.json").write_text(json.dumps(summ, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    ax[0].plot(t / 60, rss)
    ax[0].set(xlabel="minutes", ylabel="RSS (MiB)", title="receiver process memory")
    ax[0].set_ylim(0, rss.max() * 1.2)
    ax[1].plot(t / 60, np.array([r["rate_sps"] for r in rows]) / 1e6)
    ax[1].set(xlabel="minutes", ylabel="Msamples/s", title="replay throughput (RX + Seb decoder)")
    for x in ax:
        x.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "replay_soak.png", dpi=120)
    print(json.dumps(summ))
    return 0


if __name__ == "__main__":
    sys.exit(main())
