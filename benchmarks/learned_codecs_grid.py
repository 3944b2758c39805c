"""Image grid for benchmarks/results/learned_codecs.md: for a few held-out photos,
source | JPEG2000 | hyperprior | conditional Seb (its plan) | Seb with its bases
forced, each at the byte budget of CBR 1/30 at one Es/N0 (512x512, codec
level), with PSNR in the titles.

    nice .venv/bin/python benchmarks/learned_codecs_grid.py --esn0 3 --out benchmarks/results/learned_codecs/grid_3dB.png
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--esn0", type=float, default=3.0)
    ap.add_argument("--photos", default="ColdRipple,EveningGlow,Kite")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "learned_codecs" / "grid.png"))
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from learned_codecs import budgets
    from gr_semcom.semantic import jpeg2000, photoset
    from gr_semcom.semantic.metrics import psnr
    from gr_semcom.semantic.seb import ratefit
    from gr_semcom.semantic.seb.codec import SebCodec

    names, ims = photoset.test_images(512)
    want = a.photos.split(",")
    sel = [(n, im) for n, im in zip(names, ims) if n.split("/")[-1] in want]
    b = budgets([a.esn0], 512, 1 / 30)[a.esn0]["bytes"]
    hp = SebCodec.from_files(sorted(str(p) for p in (ROOT / "models").glob("hyperprior_lam*/model.safetensors")))
    seb = SebCodec.from_files(sorted(str(p) for p in (ROOT / "models").glob("seb_lam*/model.safetensors")))
    fig, axes = plt.subplots(len(sel), 5, figsize=(15, 3.1 * len(sel)))
    for r, (n, im) in enumerate(sel):
        cols = [("source", im)]
        cols.append(("JPEG2000", jpeg2000.decode(jpeg2000.encode_to_budget(im, b), im.shape[:2])[0]))
        m = ratefit.choose_model(hp, 512, 512, b)
        s = hp.encode_set([im], m)
        cols.append((f"hyperprior ({hp.names[m]})", hp.decode_image(ratefit.fit_packet_fast(hp, im, s, 0, b)[0]).image))
        best = None
        for ub in (False, True):
            s = seb.encode_set([im], m, use_bases=ub)
            rec = seb.decode_image(ratefit.fit_packet_fast(seb, im, s, 0, max(30, b - len(s.packet)))[0], s.bases).image
            if not ub:
                best = rec
            else:
                forced = rec
                if psnr(rec, im) > psnr(best, im):
                    best = rec
        cols.append(("Seb (its plan)", best))
        cols.append(("Seb, bases forced", forced))
        for c, (t, x) in enumerate(cols):
            ax = axes[r, c] if len(sel) > 1 else axes[c]
            ax.imshow(x)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(t if c == 0 else f"{t}\n{psnr(x, im):.2f} dB", fontsize=8)
        (axes[r, 0] if len(sel) > 1 else axes[0]).set_ylabel(n.split("/")[-1], fontsize=8)
    fig.suptitle(f"held-out photos, 512x512, {b} bytes (CBR 1/30 at {a.esn0:g} dB, codec level)", fontsize=9)
    fig.tight_layout()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=70)
    print(a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
