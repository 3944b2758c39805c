"""Codec-level comparison on the held-out photo source (issue 19): JPEG2000,
the hyperprior family, Seb (the first, non-conditional models) and the
conditional Seb (bases optional per subset), each fitted to the byte budget
that CBR 1/30 leaves at the MCS of each Es/N0 (phy.mcs: the same payload
bytes the GNU Radio link carries; no channel errors here), on the 512x512
centre crops of the held-out plasma-workspace-wallpapers photos.

Per scheme and budget: mean PSNR, MS-SSIM, excess blockiness at the 32-pixel
grid (semantic/blockiness.py; 1 = none added), bytes, the model picked, and
CPU seconds per image of encode + rate fit + decode (process time, one torch
thread; the set stage of Seb divided by the set size). The rate fit is
ratefit.fit_packet_fast with the model from ratefit.choose_model
(``--exhaustive``: every model, best PSNR, also reported as a check of
choose_model), and for the conditional Seb both with and without its bases
(codec.plan_options), the better kept.

    nice .venv/bin/python benchmarks/learned_codecs.py --out benchmarks/results/learned_codecs
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def budgets(esn0s, size: int, cbr: float) -> dict:
    from gr_semcom.phy.mcs import byte_budget, cbr_channel_uses, choose_mcs

    out = {}
    for e in esn0s:
        spec = choose_mcs(e)
        b = byte_budget(cbr_channel_uses(size, size, cbr), spec, True)
        out[e] = {"mcs": f"{spec.modulation} {spec.code_rate}", "bytes": int(b.payload_bytes)}
    return out


PERCEPTUAL = []  # set by --perceptual


def _quality(rec, im) -> dict:
    from gr_semcom.semantic.blockiness import excess_blockiness
    from gr_semcom.semantic.metrics import ms_ssim, psnr

    q = {"psnr": psnr(rec, im), "ms_ssim": ms_ssim(rec, im), "blockiness32": excess_blockiness(rec, im, 32)}
    if PERCEPTUAL:
        from gr_semcom.semantic.perceptual import dists, lpips

        q["lpips"], q["dists"] = lpips(rec, im), dists(rec, im)
    return q


def run_jpeg2000(ims, budget):
    from gr_semcom.semantic import jpeg2000

    rows = []
    for im in ims:
        t = time.process_time()
        s = jpeg2000.encode_to_budget(im, budget)
        rec, failed = jpeg2000.decode(s, im.shape[:2])
        rows.append({"bytes": len(s or b""), "cpu_s": time.process_time() - t, "failed": failed, **_quality(rec, im)})
    return rows


def run_learned(codec, ims, budget, exhaustive: bool, set_size: int, n_models: int = 1, force_bases: bool = False):
    """Per image: (bytes, cpu_s, model, bases_used, quality). Subsets of
    ``set_size`` images share a set packet (charged to them in equal parts)."""
    from gr_semcom.semantic.metrics import psnr
    from gr_semcom.semantic.seb import ratefit

    rows = []
    for s0 in range(0, len(ims), set_size):
        sub = ims[s0:s0 + set_size]
        mids = range(len(codec.nets)) if exhaustive else \
            ratefit.candidates(codec, *sub[0].shape[:2], budget, n=n_models)
        best = None
        for mid in mids:
            for m, use_bases in [o for o in codec.plan_options() if o[0] == mid and (o[1] or not force_bases)]:
                t = time.process_time()
                sset = codec.encode_set(sub, m, use_bases=use_bases)
                t_set = (time.process_time() - t) / len(sub)
                b = budget - (len(sset.packet) + len(sub) - 1) // len(sub)
                if b <= 40:
                    continue
                res = []
                for i, im in enumerate(sub):
                    t = time.process_time()
                    p, g = ratefit.fit_packet_fast(codec, im, sset, i, b)
                    d = codec.decode_image(p, sset.bases)
                    res.append({**_split(p, len(sset.packet) / len(sub)),
                                "bytes": len(p) + len(sset.packet) / len(sub), "gain": g, "model": codec.names[m],
                                "bases_used": d.bases_used, "cpu_s": t_set + time.process_time() - t,
                                "rec": d.image})
                score = np.mean([psnr(r["rec"], im) for r, im in zip(res, sub)])
                if best is None or score > best[0]:
                    best = (score, res)
        for r, im in zip(best[1], sub):
            rec = r.pop("rec")
            rows.append({**r, **_quality(rec, im)})
    return rows


def _split(p: bytes, set_share: float) -> dict:
    """Bytes of each part of one image's stream (Fig. 5's CBR split): the set
    packet's share, header, indices, compensation, hyper-latent, residual."""
    from gr_semcom.semantic.seb.codec import IMG_HDR

    if len(p) < IMG_HDR.size:
        return {}
    *_, lc, lz, ly = IMG_HDR.unpack_from(p)
    idx = len(p) - IMG_HDR.size - lc - lz - ly
    return {"part_bases": set_share, "part_header": IMG_HDR.size, "part_indices": max(idx, 0),
            "part_compensation": lc, "part_hyper": lz, "part_residual": ly}


def summarise(rows) -> dict:
    out = {k: float(np.mean([r[k] for r in rows])) for k in ("psnr", "ms_ssim", "blockiness32", "bytes", "cpu_s")}
    for k in ("lpips", "dists"):
        if rows and k in rows[0]:
            out[k] = float(np.mean([r[k] for r in rows]))
    for k in ("part_bases", "part_header", "part_indices", "part_compensation", "part_hyper", "part_residual"):
        if rows and k in rows[0]:
            out[k] = float(np.mean([r.get(k, 0.0) for r in rows]))
    if rows and "model" in rows[0]:
        out["models"] = sorted({r["model"] for r in rows})
        out["bases_used_fraction"] = float(np.mean([bool(r.get("bases_used")) for r in rows]))
    out["n"] = len(rows)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "learned_codecs"))
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--cbr", type=float, default=1 / 30)
    ap.add_argument("--esn0", default="3,9,15", help="Es/N0 values (dB) whose MCS sets the byte budgets")
    ap.add_argument("--images", type=int, default=0, help="first N held-out photos (0 = all)")
    ap.add_argument("--set-size", type=int, default=4)
    ap.add_argument("--exhaustive", action="store_true", help="try every rate point (not only choose_model's)")
    ap.add_argument("--candidates", type=int, default=1, help="rate points tried (ratefit.candidates), 1 = choose_model")
    ap.add_argument("--hyperprior", default="models/hyperprior_lam*", help="glob of model directories")
    ap.add_argument("--seb", default="models/seb_lam*", help="glob of model directories (first Seb models)")
    ap.add_argument("--seb-cond", default="", help="glob of conditional Seb model directories")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--perceptual", action="store_true", help="also LPIPS (alex) and DISTS (outside the CPU timing)")
    ap.add_argument("--force-bases", action="store_true", help="Seb: only the plans with the set packet (CBR split)")
    ap.add_argument("--no-jpeg2000", action="store_true", help="skip JPEG2000 (deterministic: reuse another run's rows)")
    ap.add_argument("--photos", default=None, help="photoset directory (default data/photos)")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    if a.perceptual:
        PERCEPTUAL.append(1)
    from gr_semcom.semantic import photoset
    from gr_semcom.semantic.seb.codec import SebCodec

    names, ims = photoset.test_images(a.size, a.photos or photoset.DEFAULT_DIR)
    if a.images:
        names, ims = names[:a.images], ims[:a.images]
    ims = list(ims)
    esn0s = [float(x) for x in a.esn0.split(",")]
    bud = budgets(esn0s, a.size, a.cbr)
    schemes = {} if a.no_jpeg2000 else {"jpeg2000": None}
    for key, pat in (("hyperprior", a.hyperprior), ("seb", a.seb), ("seb_cond", a.seb_cond)):
        paths = sorted(str(p / "model.safetensors") for p in ROOT.glob(pat) if (p / "model.safetensors").is_file()) \
            if pat else []
        if paths:
            schemes[key] = SebCodec.from_files(paths)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"images": names, "size": a.size, "cbr": a.cbr, "budgets": bud, "threads": a.threads,
              "exhaustive": a.exhaustive, "candidates": a.candidates, "set_size": a.set_size,
              "command": " ".join(sys.argv), "schemes": {}}
    for key, codec in schemes.items():
        result["schemes"][key] = {"models": list(codec.names) if codec else None, "points": {}}
        for e in esn0s:
            b = bud[e]["bytes"]
            rows = run_jpeg2000(ims, b) if codec is None else \
                run_learned(codec, ims, b, a.exhaustive, a.set_size, a.candidates, a.force_bases)
            result["schemes"][key]["points"][str(e)] = {"summary": summarise(rows), "per_image": rows}
            s = result["schemes"][key]["points"][str(e)]["summary"]
            print(f"{key:11s} {e:5.1f} dB budget {b:5d} B: PSNR {s['psnr']:.2f} MS-SSIM {s['ms_ssim']:.4f} "
                  f"block32 {s['blockiness32']:.3f} bytes {s['bytes']:.0f} cpu {s['cpu_s']:.2f} s "
                  f"{s.get('models', '')} bases {s.get('bases_used_fraction', '')}", flush=True)
    (out / "learned_codecs.json").write_text(json.dumps(result, indent=1, default=float))
    (out / "learned_codecs_table.md").write_text(markdown(result))
    return 0


def markdown(result: dict) -> str:
    """The summary as a markdown table (one row per scheme and Es/N0)."""
    perc = any("lpips" in pt["summary"] for sc in result["schemes"].values() for pt in sc["points"].values())
    lines = ["| scheme | Es/N0 (dB) | MCS | budget (B) | PSNR (dB) | MS-SSIM | " + ("LPIPS | DISTS | " if perc else "")
             + "excess blockiness @32 | bytes | CPU s / image | model(s) | with bases |",
             "|---|---|---|---|---|---|" + ("---|---|" if perc else "") + "---|---|---|---|---|"]
    for key, sc in result["schemes"].items():
        for e, pt in sc["points"].items():
            s = pt["summary"]
            b = result["budgets"][e] if e in result["budgets"] else result["budgets"][float(e)]
            pcols = f"{s['lpips']:.4f} | {s['dists']:.4f} | " if perc else ""
            lines.append(f"| {key} | {float(e):g} | {b['mcs']} | {b['bytes']} | {s['psnr']:.2f} | {s['ms_ssim']:.4f} | {pcols}"
                         f"{s['blockiness32']:.3f} | {s['bytes']:.0f} | {s['cpu_s']:.2f} | "
                         f"{', '.join(s.get('models', [])) or '-'} | "
                         f"{'-' if key not in ('seb', 'seb_cond') else format(s['bases_used_fraction'], '.0%')} |")
    split = ["", "CBR split (mean bytes per image; bases = the set packet's share):", "",
             "| scheme | Es/N0 (dB) | bases | header | indices | compensation | hyper | residual |",
             "|---|---|---|---|---|---|---|---|"]
    for key, sc in result["schemes"].items():
        for e, pt in sc["points"].items():
            s = pt["summary"]
            if "part_residual" in s and key != "hyperprior":
                split.append(f"| {key} | {float(e):g} | " + " | ".join(
                    f"{s[k]:.0f}" for k in ("part_bases", "part_header", "part_indices", "part_compensation",
                                            "part_hyper", "part_residual")) + " |")
    return "\n".join(lines + (split if len(split) > 5 else [])) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
