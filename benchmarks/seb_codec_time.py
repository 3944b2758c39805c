"""Seb encode + decode time per 512x512 image on the CPU (and the baselines'),
with the shipped models; peak memory (max RSS) of the process.

    taskset -c 0 .venv/bin/python benchmarks/seb_codec_time.py --threads 1

Per image: the set stage (patch latents + k-means + bases coding) for a set
of ``--set`` images divided by the set size, one image packet at gain 1 and
its decoding; the rate search of the CBR harness (bisection over the gain,
every trained lambda) is timed separately because it multiplies the encoder
calls, and next to it the fast rate fit (issue 19: ratefit.choose_model +
fit_packet_fast, one analysis pass; for Seb also without its bases) at the
9 dB budget, as CPU seconds (process time) per image of rate fit + encode +
decode. Median of ``--repeat`` runs over the held-out photos (the
plasma-workspace-wallpapers source of data/photos when fetched, else the 16
older test photos) at 512x512.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--set", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--images", type=int, default=8)
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    from gr_semcom.systems.images import plan_seb
    from gr_semcom.phy.mcs import choose_mcs
    from gr_semcom.semantic import jpeg2000
    from gr_semcom.semantic.image_jscc import load_model
    from gr_semcom.semantic.seb.codec import SebCodec
    from gr_semcom.semantic import photoset
    from gr_semcom.semantic.seb import ratefit
    from gr_semcom.semantic.seb.train import test_crops
    from gr_semcom.phy.mcs import byte_budget, cbr_channel_uses

    try:
        _, ims = photoset.test_images(a.size)
        source = photoset.HELD_OUT
    except FileNotFoundError:
        _, ims = test_crops(a.size)
        source = "seb.train.test_crops"
    ims = list(ims[: a.images])
    res = {"size": a.size, "threads": a.threads, "set_size": a.set, "images": source}
    budget = byte_budget(cbr_channel_uses(a.size, a.size, 1 / 30), choose_mcs(9.0), True).payload_bytes
    for scheme in ("seb", "hyperprior"):
        paths = sorted(str(p) for p in (ROOT / "models").glob(f"{scheme}_lam*/model.safetensors"))
        if not paths:
            continue
        codec = SebCodec.from_files(paths)
        mid = len(codec.nets) // 2
        t_set, t_enc, t_dec, sizes = [], [], [], []
        for _ in range(a.repeat):
            for s in range(0, len(ims), a.set):
                sub = ims[s:s + a.set]
                t = time.perf_counter()
                sset = codec.encode_set(sub, mid)
                t_set.append((time.perf_counter() - t) / len(sub))
                bases = codec.decode_set(sset.packet) if sset.packet else None
                for i, im in enumerate(sub):
                    t = time.perf_counter()
                    p = codec.encode_image(im, sset, i)
                    t_enc.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    codec.decode_image(p, bases)
                    t_dec.append(time.perf_counter() - t)
                    sizes.append(len(p))
        t = time.perf_counter()
        plan_seb(codec, ims[: a.set], choose_mcs(9.0), 1 / 30)
        t_plan = (time.perf_counter() - t) / a.set
        # fast: the model from the rate table, the gain from one analysis pass, the transmitter's decode;
        # Seb: with and without its bases (plan_options), set stage shared by the subset
        fast = []
        for s in range(0, len(ims), a.set):
            sub = ims[s:s + a.set]
            c0 = time.process_time()
            mid_f = ratefit.choose_model(codec, a.size, a.size, budget)
            for m, ub in [o for o in codec.plan_options() if o[0] == mid_f]:
                sset = codec.encode_set(sub, m, use_bases=ub)
                b = budget - (len(sset.packet) + len(sub) - 1) // len(sub)
                for i, im in enumerate(sub):
                    p, _ = ratefit.fit_packet_fast(codec, im, sset, i, max(b, 30))
                    codec.decode_image(p, sset.bases)
            fast.append((time.process_time() - c0) / len(sub))
        res[scheme] = {"model": codec.names[mid], "set_stage_s": float(np.median(t_set)),
                       "encode_s": float(np.median(t_enc)), "decode_s": float(np.median(t_dec)),
                       "encode_plus_decode_s": float(np.median(t_set) + np.median(t_enc) + np.median(t_dec)),
                       "rate_search_per_image_s": t_plan, "mean_bytes_gain1": float(np.mean(sizes)),
                       "fast_fit_encode_decode_cpu_s_per_image": float(np.median(fast)), "fast_budget_bytes": budget,
                       "models": list(codec.names)}
    t_enc, t_dec, t_fit = [], [], []
    for im in ims:
        c0 = time.process_time()
        jpeg2000.decode(jpeg2000.encode_to_budget(im, budget), im.shape[:2])
        t_fit.append(time.process_time() - c0)
        t = time.perf_counter()
        s = jpeg2000.encode(im, 100)
        t_enc.append(time.perf_counter() - t)
        t = time.perf_counter()
        jpeg2000.decode(s, im.shape[:2])
        t_dec.append(time.perf_counter() - t)
    res["jpeg2000"] = {"encode_s": float(np.median(t_enc)), "decode_s": float(np.median(t_dec)),
                       "fit_encode_decode_cpu_s_per_image": float(np.median(t_fit)), "fit_budget_bytes": budget}
    m = load_model(ROOT / "models" / "image_deepjscc" / "model.safetensors")
    t_enc, t_dec = [], []
    for im in ims:
        t = time.perf_counter()
        y = m.encode_image(im)
        t_enc.append(time.perf_counter() - t)
        t = time.perf_counter()
        m.decode_image(y, *im.shape[:2])
        t_dec.append(time.perf_counter() - t)
    res["deepjscc"] = {"encode_s": float(np.median(t_enc)), "decode_s": float(np.median(t_dec))}
    res["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
