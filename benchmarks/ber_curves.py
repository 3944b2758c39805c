"""BER / BLER curves of the GNU Radio PHY chain against closed-form theory.

Every point is a real flowgraph run (phy_tx -> gr-channels -> phy_rx) through
:func:`gr_semcom.link.sim.run_link`. Writes ``ber_curves.csv``, ``ber_curves.png``,
``bler_curves.csv``, ``bler_curves.png`` and prints, per curve, the Eb/N0 at
BER 1e-3 measured vs theory.

    .venv/bin/python benchmarks/ber_curves.py --out benchmarks/results [--quick]
"""
from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import numpy as np
from scipy.special import erfc
from tqdm import tqdm

from gr_semcom.phy.channel import ChannelSpec, ebn0_to_esn0
from gr_semcom.phy.frame import FrameSpec
from gr_semcom.link.sim import run_link


def q(x):
    return 0.5 * erfc(np.asarray(x) / math.sqrt(2))


def theory_ber(mod: str, channel: str, ebn0_db: np.ndarray) -> np.ndarray:
    g = 10 ** (np.asarray(ebn0_db) / 10)
    if channel == "rayleigh":
        if mod != "bpsk":
            raise ValueError("Rayleigh theory only for BPSK here")
        return 0.5 * (1 - np.sqrt(g / (1 + g)))
    if mod in ("bpsk", "qpsk"):
        return q(np.sqrt(2 * g))
    if mod == "16qam":  # Gray square 16QAM, exact (Cho & Yoon 2002)
        a = np.sqrt(4 * g / 5)
        return 0.75 * q(a) + 0.5 * q(3 * a) - 0.25 * q(5 * a)
    if mod == "64qam":
        a = np.sqrt(2 * g / 7)
        return (7 / 12) * q(a) + 0.5 * q(3 * a) - (1 / 12) * q(5 * a)
    raise ValueError(mod)


def ebn0_at(ber_target: float, ebn0: np.ndarray, ber: np.ndarray) -> float:
    """Eb/N0 where the curve crosses ber_target (log-linear interpolation)."""
    ok = (ber > 0) & np.isfinite(ber)
    e, b = np.asarray(ebn0)[ok], np.log10(np.asarray(ber)[ok])
    for i in range(len(e) - 1):
        if (b[i] - math.log10(ber_target)) * (b[i + 1] - math.log10(ber_target)) <= 0 and b[i] != b[i + 1]:
            t = (math.log10(ber_target) - b[i]) / (b[i + 1] - b[i])
            return float(e[i] + t * (e[i + 1] - e[i]))
    return float("nan")


def measure_ber(mod, channel, ebn0, min_errors=200, max_bits=2_000_000, genie=False, seed=0, doppler=1e-3):
    """Uncoded BER over detected bursts; ``lost`` counts bursts never detected
    (their bits are not in the BER, and are reported next to it).
    ``doppler`` is fD*T per symbol (1e-3: a pilot group every 52 symbols
    samples the fading 19 times per coherence time 1/fD)."""
    spec = FrameSpec(modulation=mod, code_rate="none", codewords=8)
    bps = spec.constellation.bits_per_symbol
    esn0 = ebn0_to_esn0(ebn0, bps, 1.0)
    errs = bits = 0
    lost = 0
    k = 0
    while errs < min_errors and bits < max_bits:
        nbytes = 40_000 if channel == "awgn" else 120_000
        data = np.random.default_rng(seed + k).integers(0, 256, nbytes, dtype=np.uint8).tobytes()
        chan = ChannelSpec(model=channel, esn0_db=esn0, seed=seed + 17 * k, doppler=doppler)
        r = run_link(data, spec, chan, timeout=15, genie_csi=genie)
        if r.coded_bits:
            errs += int(round(r.coded_ber * r.coded_bits))
            bits += r.coded_bits
        lost += r.frames_sent - r.bursts_detected
        k += 1
    return errs / bits if bits else float("nan"), bits, lost


def measure_bler(rate, mod, esn0, n_bytes=40_000, seed=0, channel="awgn"):
    """BLER = 1 - good frames / frames sent over one drained run (every frame
    accounted for: good, CRC failure, undetected). Returns (bler, frames sent,
    the run's LinkResult). ``channel`` rayleigh: flat fading of the channel
    module's default Doppler (fD*T 1e-3 per symbol), Es/N0 = the mean."""
    spec = FrameSpec(modulation=mod, code_rate=rate)
    data = np.random.default_rng(seed).integers(0, 256, n_bytes, dtype=np.uint8).tobytes()
    r = run_link(data, spec, ChannelSpec(model=channel, esn0_db=esn0, seed=seed))
    if not r.drained:
        raise RuntimeError(f"BLER run {rate} {mod} {esn0} dB did not drain: {r.stop_reason}")
    return 1 - r.frames_ok / r.frames_sent, r.frames_sent, r


def bler_waterfalls(out: Path, channel: str = "awgn") -> None:
    """The coded BLER waterfalls of the three codes and the 16QAM / 64QAM rate
    1/2 points the MCS table is read from; CSV with each frame's fate.
    ``channel`` rayleigh: the MCS table's entries over flat Rayleigh fading
    (``bler_curves_rayleigh.csv/png``): where each entry's fading waterfall
    lies against the AWGN threshold the table uses."""
    import matplotlib.pyplot as plt

    brow = []
    grids = (("1/4", "bpsk", np.arange(-6, 1.1, 1.0), 40_000), ("2/5", "qpsk", np.arange(-2, 4.1, 1.0), 40_000),
             ("1/2", "qpsk", np.arange(-1, 5.1, 1.0), 40_000), ("1/2", "16qam", np.arange(5, 11.1, 1.0), 40_000),
             ("1/2", "64qam", np.arange(10, 18.1, 1.0), 40_000))
    if channel == "rayleigh":
        grids = (("1/4", "bpsk", np.arange(0, 9.1, 3.0), 20_000), ("1/2", "qpsk", np.arange(3, 15.1, 3.0), 20_000),
                 ("1/2", "16qam", np.arange(6, 21.1, 3.0), 20_000))
    suffix = "" if channel == "awgn" else f"_{channel}"
    for rate, mod, grid, nb in grids:
        for e in tqdm(grid, desc=f"BLER {rate} {mod} {channel}"):
            bler, n, r = measure_bler(rate, mod, float(e), n_bytes=nb, channel=channel)
            brow.append(dict(channel=channel, rate=rate, modulation=mod, esn0_db=float(e), bler=bler, frames=n,
                             ok=r.frames_ok,
                             crc_fail=r.frames_crc_fail, undetected=r.frames_undetected,
                             false_alarms=r.false_alarms, seconds=round(r.seconds, 2)))
    with open(out / f"bler_curves{suffix}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(brow[0]))
        w.writeheader()
        w.writerows(brow)
    fig, ax = plt.subplots(figsize=(7, 5))
    for rate, mod, *_ in grids:
        rr = [r for r in brow if r["rate"] == rate and r["modulation"] == mod]
        ax.semilogy([r["esn0_db"] for r in rr], [max(r["bler"], 1e-3) for r in rr], "o-", label=f"LDPC {rate} {mod}")
    ax.set_xlabel("Es/N0 (dB)" + ("" if channel == "awgn" else f", mean over {channel} fading"))
    ax.set_ylabel("frame error rate (1 - good/sent), 1e-3 = none lost")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.savefig(out / f"bler_curves{suffix}.png", dpi=120, bbox_inches="tight")
    for r in brow:
        print(f"{r['rate']} {r['modulation']:5s} {r['esn0_db']:5.1f} dB  BLER {r['bler']:.4f}  "
              f"({r['ok']} ok + {r['crc_fail']} crc + {r['undetected']} undetected = {r['frames']})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--quick", action="store_true", help="fewer points and bits (for tests)")
    ap.add_argument("--bler-only", action="store_true", help="only the coded BLER waterfalls (bler_curves.csv/png)")
    ap.add_argument("--channel", default="awgn", choices=("awgn", "rayleigh"),
                    help="channel of the BLER waterfalls (--bler-only)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if args.bler_only:
        bler_waterfalls(out, args.channel)
        return []

    curves = [("bpsk", "awgn", False, np.arange(2, 9.1, 1.0)),
              ("qpsk", "awgn", False, np.arange(2, 9.1, 1.0)),
              ("16qam", "awgn", False, np.arange(6, 13.1, 1.0)),
              ("bpsk", "rayleigh", True, np.arange(10, 31, 5.0)),
              ("bpsk", "rayleigh", False, np.arange(10, 31, 5.0))]
    if args.quick:
        curves = [("qpsk", "awgn", False, np.array([6.0, 7.0])), ("16qam", "awgn", False, np.array([10.0, 11.0]))]
    rows = []
    summary = []
    for mod, ch, genie, grid in curves:
        label = f"{mod} {ch}" + (" genie CSI" if ch != "awgn" and genie else " pilot CSI" if ch != "awgn" else "")
        bers = []
        for e in tqdm(grid, desc=label):
            ber, nbits, lost = measure_ber(mod, ch, float(e), genie=genie,
                                           min_errors=100 if args.quick else 300)
            th = float(theory_ber(mod, ch, e))
            rows.append(dict(curve=label, modulation=mod, channel=ch, csi="genie" if genie else "pilot",
                             ebn0_db=float(e), ber=ber, theory=th, bits=nbits, bursts_lost=lost))
            bers.append(ber)
        fine = np.linspace(grid[0], grid[-1], 400)
        e_meas = ebn0_at(1e-3, grid, np.array(bers))
        e_th = ebn0_at(1e-3, fine, theory_ber(mod, ch, fine))
        summary.append(dict(curve=label, ebn0_at_1e3=e_meas, theory_at_1e3=e_th, gap_db=e_meas - e_th))
    with open(out / "ber_curves.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(out / "ber_summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(summary[0]))
        w.writeheader()
        w.writerows(summary)
    fig, ax = plt.subplots(figsize=(7, 5))
    for label in dict.fromkeys(r["curve"] for r in rows):
        rr = [r for r in rows if r["curve"] == label]
        e = np.array([r["ebn0_db"] for r in rr])
        (line,) = ax.semilogy(e, [r["ber"] for r in rr], "o", label=f"{label} (GNU Radio chain)")
        fine = np.linspace(e[0], e[-1], 200)
        ax.semilogy(fine, theory_ber(rr[0]["modulation"], rr[0]["channel"], fine), "-", color=line.get_color(),
                    alpha=0.6)
    ax.set_xlabel("Eb/N0 (dB)")
    ax.set_ylabel("uncoded BER")
    ax.set_ylim(1e-5, 0.5)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Uncoded BER: markers measured, lines closed form")
    fig.savefig(out / "ber_curves.png", dpi=120, bbox_inches="tight")
    for s in summary:
        print(f"{s['curve']:28s} Eb/N0 @1e-3: measured {s['ebn0_at_1e3']:.2f} dB, theory "
              f"{s['theory_at_1e3']:.2f} dB, gap {s['gap_db']:+.2f} dB")
    if not args.quick:
        bler_waterfalls(out)
    return summary


if __name__ == "__main__":
    main()
