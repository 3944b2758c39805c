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

Each (scheme, Es/N0, seed) point runs in its own process (GNU Radio 3.10
keeps shared-memory segments of every flowgraph until the process exits);
points already in the raw CSV are skipped (resumable).

    .venv/bin/python benchmarks/seb_curves.py --out benchmarks/results
"""
from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SCHEMES = ("seb", "hyperprior", "jpeg2000", "deepjscc")
COLOURS = {"seb": "C3", "hyperprior": "C0", "jpeg2000": "C2", "deepjscc": "C1"}
LABELS = {"seb": "Seb (this codec)", "hyperprior": "DL w/o corr. (hyperprior)", "jpeg2000": "JPEG2000 + LDPC",
          "deepjscc": "DeepJSCC (analog)"}


def _models(scheme: str) -> list[str]:
    pat = {"seb": "seb_lam*", "hyperprior": "hyperprior_lam*"}[scheme]
    return sorted(str(p) for p in (ROOT / "models").glob(pat + "/model.safetensors"))


def _images(n: int):
    from gr_semcom.semantic.seb.train import test_crops

    names, ims = test_crops()
    return names[:n], list(ims[:n])


def _point(task: dict) -> list[dict]:
    import torch

    torch.set_num_threads(1)
    from PIL import Image

    from gr_semcom import image_link
    from gr_semcom.phy.channel import ChannelSpec

    names, ims = _images(task["images"])
    scheme, snr, cbr = task["scheme"], task["esn0_db"], task["cbr"]
    if task.get("accounting") == "capacity":
        codec = None
        if scheme in ("seb", "hyperprior"):
            from gr_semcom.semantic.seb.codec import SebCodec

            codec = SebCodec.from_files(_models(scheme))
        rows = image_link.ideal_point(scheme, names, ims, snr, cbr, codec=codec)
        for r in rows:
            r.update(channel=task["channel"], seed=task["seed"], cbr_target=cbr)
        return rows
    chan = ChannelSpec(model=task["channel"], esn0_db=snr, seed=task["seed"])
    if scheme in ("seb", "hyperprior"):
        from gr_semcom.semantic.seb.codec import SebCodec

        res = image_link.run_seb(SebCodec.from_files(_models(scheme)), names, ims, chan, cbr, seed=task["seed"])
    elif scheme == "jpeg2000":
        res = image_link.run_jpeg2000(names, ims, chan, cbr)
    else:
        from gr_semcom.semantic.image_jscc import load_model

        res = image_link.run_deepjscc(load_model(ROOT / "models" / "image_deepjscc" / "model.safetensors"),
                                      names, ims, chan, cbr)
    if snr in task["grid_snrs"] and task["seed"] == task["first_seed"]:
        d = Path(task["out"]) / "seb_recon"
        d.mkdir(parents=True, exist_ok=True)
        for r in res[: task["grid_images"]]:
            Image.fromarray(r.image).save(d / f"{task['channel']}_{snr:g}dB_{scheme}_{r.name}.png")
    rows = []
    for r in res:
        row = dict(r.row)
        row["accounting"] = "phy"
        rows.append(row)
    return rows


def _ci95(x: np.ndarray) -> float:
    from scipy import stats

    x = x[np.isfinite(x)]
    if x.size < 2:
        return float("nan")
    return float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))


def summarise(raw: list[dict]) -> list[dict]:
    keys = sorted({(r["scheme"], r["channel"], float(r["esn0_db"]), r["accounting"]) for r in raw},
                  key=lambda k: (k[0], k[1], k[3], k[2]))
    out = []
    for s, c, e, a in keys:
        rs = [r for r in raw if (r["scheme"], r["channel"], float(r["esn0_db"]), r["accounting"]) == (s, c, e, a)]
        p = np.array([float(r["psnr"]) for r in rs])
        m = np.array([float(r["ms_ssim"]) for r in rs])
        row = {"scheme": s, "channel": c, "esn0_db": e, "accounting": a, "n": len(rs),
               "psnr": round(float(np.mean(p)), 3), "psnr_ci95": round(_ci95(p), 3),
               "ms_ssim": round(float(np.mean(m)), 4), "ms_ssim_ci95": round(_ci95(m), 4),
               "bytes": round(float(np.mean([float(r.get("bytes") or 0) for r in rs])), 1)}
        if a == "phy":
            row.update(cbr=round(float(np.mean([float(r["cbr"]) for r in rs])), 5),
                       cbr_max=round(float(np.max([float(r["cbr"]) for r in rs])), 5),
                       failed=sum(str(r.get("failed")) == "True" for r in rs),
                       mcs=f"{rs[0]['modulation']} {rs[0]['code_rate']}")
        out.append(row)
    return out


def plot(summary: list[dict], path: Path, cbr_text: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chans = sorted({r["channel"] for r in summary})
    fig, axes = plt.subplots(len(chans), 2, figsize=(12, 4.5 * len(chans)), squeeze=False)
    for ci, ch in enumerate(chans):
        for k, (metric, lab) in enumerate((("psnr", "PSNR (dB)"), ("ms_ssim", "MS-SSIM"))):
            ax = axes[ci][k]
            for s in SCHEMES:
                for acc, ls in (("phy", "-"), ("capacity", "--")):
                    rs = sorted((r for r in summary if r["scheme"] == s and r["channel"] == ch
                                 and r["accounting"] == acc), key=lambda r: r["esn0_db"])
                    if not rs:
                        continue
                    x = np.array([r["esn0_db"] for r in rs])
                    y = np.array([r[metric] for r in rs])
                    e = np.array([r[metric + "_ci95"] for r in rs])
                    name = LABELS[s] + (" - GNU Radio PHY" if acc == "phy" else " - capacity-achieving code")
                    ax.plot(x, y, ls, marker="o" if acc == "phy" else None, color=COLOURS[s], label=name)
                    if acc == "phy":
                        ax.fill_between(x, y - e, y + e, color=COLOURS[s], alpha=0.15)
            ax.set_xlabel("Es/N0 (dB)")
            ax.set_ylabel(lab)
            ax.set_title(f"{ch.upper()}, CBR {cbr_text}: {lab} (mean, 95 % CI over images)")
            ax.grid(alpha=0.3)
        axes[ci][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cbr_split(out: Path, n_images: int, esn0_db: float = 5.0) -> list[dict]:
    """Fig. 5: bytes per part of Seb's stream for each lambda (gain 1, no
    budget), as CBR with the capacity-achieving code and with the real MCS."""
    import torch

    torch.set_num_threads(2)
    from gr_semcom.image_link import _seb_parts
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
    return rows


def plot_split(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def grid(out: Path, channel: str, snrs, names) -> None:
    from PIL import Image, ImageDraw

    d = out / "seb_recon"
    rows = []
    for snr in snrs:
        for n in names:
            row = [Image.open(d / f"src_{n}.png")] if (d / f"src_{n}.png").exists() else []
            for s in SCHEMES:
                p = d / f"{channel}_{snr:g}dB_{s}_{n}.png"
                if p.exists():
                    row.append(Image.open(p))
            if len(row) > 1:
                rows.append((f"{n}, {snr:g} dB", row))
    if not rows:
        return
    w, h = 160, 160
    cols = max(len(r[1]) for r in rows)
    canvas = Image.new("RGB", (cols * w, len(rows) * (h + 14) + 16), "white")
    dr = ImageDraw.Draw(canvas)
    for j, t in enumerate(["source"] + [LABELS[s].split(" (")[0] for s in SCHEMES]):
        dr.text((j * w + 4, 2), t, fill="black")
    for i, (title, ims) in enumerate(rows):
        y = 16 + i * (h + 14)
        dr.text((4, y), title, fill="black")
        for j, im in enumerate(ims):
            canvas.paste(im.resize((w, h)), (j * w, y + 12))
    canvas.save(out / "seb_grid.png")


def main(argv=None) -> int:
    from fractions import Fraction

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
    from tqdm import tqdm

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cbr = float(Fraction(a.cbr))
    snrs = [float(s) for s in a.snrs.split(",")]
    grid_snrs = [float(s) for s in a.grid_snrs.split(",")]
    schemes = a.schemes.split(",")
    raw_path = out / "seb_curves_raw.csv"
    raw = list(csv.DictReader(open(raw_path))) if raw_path.exists() else []
    done = {(r["scheme"], r["channel"], float(r["esn0_db"]), int(r["seed"]), r["accounting"]) for r in raw}
    tasks = []
    for ch in a.channels.split(","):
        for s in schemes:
            for snr in snrs:
                for seed in range(a.seeds):
                    accs = ["phy"] + ([] if a.no_capacity or s == "deepjscc" or seed else ["capacity"])
                    for acc in accs:
                        if (s, ch, snr, seed, acc) in done:
                            continue
                        tasks.append({"scheme": s, "channel": ch, "esn0_db": snr, "seed": seed, "cbr": cbr,
                                      "images": a.images, "accounting": acc, "out": str(out),
                                      "grid_snrs": grid_snrs, "grid_images": a.grid_images, "first_seed": 0})
    names, ims = _images(a.images)
    from PIL import Image

    (out / "seb_recon").mkdir(exist_ok=True)
    for n, im in list(zip(names, ims))[: a.grid_images]:
        Image.fromarray(im).save(out / "seb_recon" / f"src_{n}.png")
    ctx = mp.get_context("spawn")
    with ctx.Pool(a.jobs, maxtasksperchild=1) as pool:
        for rows in tqdm(pool.imap_unordered(_point, tasks), total=len(tasks), desc="seb curves"):
            raw += rows
            keys = list(dict.fromkeys(k for r in raw for k in r))
            with open(raw_path, "w", newline="") as fh:
                w = csv.DictWriter(fh, keys)
                w.writeheader()
                w.writerows(raw)
    summary = summarise(raw)
    with open(out / "seb_curves.csv", "w", newline="") as fh:
        keys = list(dict.fromkeys(k for r in summary for k in r))
        w = csv.DictWriter(fh, keys)
        w.writeheader()
        w.writerows(summary)
    plot(summary, out / "seb_curves.png", a.cbr)
    grid(out, a.channels.split(",")[0], grid_snrs, names[: a.grid_images])
    if not a.no_split and "seb" in schemes:
        split = cbr_split(out, a.images)
        with open(out / "seb_cbr_split.csv", "w", newline="") as fh:
            keys = list(dict.fromkeys(k for r in split for k in r))
            w = csv.DictWriter(fh, keys)
            w.writeheader()
            w.writerows(split)
        plot_split(split, out / "seb_cbr_split.png")
    print(json.dumps([r for r in summary if r["accounting"] == "phy"], indent=0)[:4000])
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
