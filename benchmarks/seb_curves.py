"""Seb vs JPEG2000 + LDPC vs the scale-hyperprior codec alone ("DL w/o
corr.") vs DeepJSCC at one CBR, PSNR and MS-SSIM against Es/N0, through the
GNU Radio chain (image_link.py), on the 16 held-out photos (256x256 centre
crops, never seen in training). Also:

* the paper's accounting next to it (eq. 11-12): the same codecs with a
  capacity-achieving code, i.e. a byte budget of C(Es/N0) x channel uses / 8
  and no losses (dashed lines, rows with accounting = capacity);
* Fig. 5: the CBR split of Seb's stream (bases / indices / compensation /
  residual) for each trained lambda at Es/N0 = 5 dB, with the
  capacity-achieving code and with the real coded modulation;
* an image grid (source | each scheme) at chosen Es/N0.

The points run through gr_semcom.eval.sweep (the engine of ``semcom sweep``):
one process per (scheme, Es/N0, seed), resumable from the raw CSV.

    .venv/bin/python benchmarks/seb_curves.py --out benchmarks/results
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gr_semcom.systems.registry import IMAGE_SCHEMES as SCHEMES  # noqa: E402


def _models(scheme: str) -> list[str]:
    pat = {"seb": "seb_lam*", "hyperprior": "hyperprior_lam*"}[scheme]
    return sorted(str(p) for p in (ROOT / "models").glob(pat + "/model.safetensors"))


def _images(n: int):
    from gr_semcom.semantic.seb.train import test_crops

    names, ims = test_crops()
    return names[:n], list(ims[:n])


def cbr_split(out: Path, n_images: int, esn0_db: float = 5.0) -> list[dict]:
    """Fig. 5: bytes per part of Seb's stream for each lambda (gain 1, no
    budget), as CBR with the capacity-achieving code and with the real MCS."""
    import torch

    torch.set_num_threads(2)
    from gr_semcom.systems.images import _seb_parts
    from gr_semcom.phy.framing import OVERHEAD
    from gr_semcom.phy.mcs import burst_symbols, byte_budget, choose_mcs
    from gr_semcom.semantic.metrics import psnr
    from gr_semcom.semantic.seb.codec import SebCodec, split_image_set

    names, ims = _images(n_images)
    rows = []
    spec = choose_mcs(esn0_db)
    b = byte_budget(10 ** 6, spec).spec  # the codewords-per-burst setting of large budgets
    phy_bits_per_use = 8 * (b.capacity - OVERHEAD) / burst_symbols(b)
    cap = float(np.log2(1 + 10 ** (esn0_db / 10)))
    for path in _models("seb"):
        codec = SebCodec.from_files([path])
        labels, _ = split_image_set(codec.nets[0], ims)
        parts = {}
        ps = []
        for lab in sorted(set(labels.tolist())):
            idx = [i for i in range(len(ims)) if labels[i] == lab]
            sub = [ims[i] for i in idx]
            sset = codec.encode_set(sub, 0)
            for j, im in enumerate(sub):
                pkt = codec.encode_image(im, sset, j)
                ps.append(psnr(codec.decode_image(pkt, sset.bases).image, im))
                p = _seb_parts(pkt, sset.k, *im.shape[:2], len(sset.packet) / len(sub))
                p["bytes_header"] += 0
                for k, v in p.items():
                    parts[k] = parts.get(k, 0.0) + v
        src = 3 * sum(im.shape[0] * im.shape[1] for im in ims)
        row = {"model": Path(path).parent.name, "lambda": codec.nets[0].cfg.lam, "esn0_db": esn0_db,
               "psnr": round(float(np.mean(ps)), 3)}
        for k, v in parts.items():
            row[k.replace("bytes_", "cbr_capacity_")] = 8 * v / cap / src
            row[k.replace("bytes_", "cbr_phy_")] = 8 * v / phy_bits_per_use / src
        row["bpp"] = 8 * sum(parts.values()) / (src / 3)
        rows.append(row)
    return sorted(rows, key=lambda r: float(r["lambda"]))


def plot_split(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(rows, key=lambda r: float(r["lambda"]))
    parts = ["bases", "indices", "header", "compensation", "hyper", "residual"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3))
    fig.suptitle("Seb: CBR of each part of the stream per trained lambda (gain 1, test photos)")
    for ax, acc in zip(axes, ("capacity", "phy")):
        x = np.arange(len(rows))
        bottom = np.zeros(len(rows))
        for k, p in enumerate(parts):
            v = np.array([r.get(f"cbr_{acc}_{p}", 0.0) for r in rows])
            ax.bar(x, v, bottom=bottom, label=p, color=f"C{k}")
            bottom += v
        ax.set_xticks(x, [f"lambda={r['lambda']:g}\n{r['psnr']:.1f} dB" for r in rows])
        ax.set_ylabel("CBR")
        ax.set_title(f"Es/N0 {rows[0]['esn0_db']:g} dB, "
                     + ("capacity-achieving code" if acc == "capacity" else "this PHY's MCS + framing"), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    from fractions import Fraction

    from gr_semcom.eval import sweep

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--schemes", default=",".join(SCHEMES))
    ap.add_argument("--channels", default="awgn")
    ap.add_argument("--snrs", default="-3,0,3,6,9,12,15,18")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--cbr", default="1/30")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--no-capacity", action="store_true", help="skip the capacity-achieving accounting")
    ap.add_argument("--no-split", action="store_true", help="skip the Fig. 5 CBR split")
    ap.add_argument("--grid-snrs", default="3,9,15")
    ap.add_argument("--grid-images", type=int, default=3)
    a = ap.parse_args(argv)
    out = Path(a.out)
    schemes = a.schemes.split(",")
    cfg = sweep.SweepConfig(out=str(out), images="test256", n_images=a.images, cbr=float(Fraction(a.cbr)),
                            grid_snrs=tuple(sweep.parse_snrs(a.grid_snrs)), grid_images=a.grid_images)
    pts = sweep.points_for(schemes, a.channels.split(","), sweep.parse_snrs(a.snrs), a.seeds,
                           capacity=not a.no_capacity)
    raw = sweep.run_sweep(pts, cfg, workers=a.jobs, raw_name="seb_curves_raw.csv")
    summary = sweep.summarise(raw)
    sweep.write_rows(out / "seb_curves.csv", summary)
    sweep.plot(summary, out / "seb_curves.png", f"CBR {a.cbr}")
    sweep.grid(cfg, a.channels.split(",")[0], schemes, out / "seb_grid.png")
    if not a.no_split and "seb" in schemes:
        split = cbr_split(out, a.images)
        sweep.write_rows(out / "seb_cbr_split.csv", split)
        plot_split(split, out / "seb_cbr_split.png")
    print(json.dumps([r for r in summary if r["accounting"] == "phy"], indent=0)[:4000])
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
