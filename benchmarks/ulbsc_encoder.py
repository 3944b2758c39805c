"""ULBSC transmitter time per image on CPU, excluding captioning (the caption
is given): image decode + checks, U^2-Net lite saliency (onnxruntime),
64x64 resize, VQ encoder + nearest code, payload packing; and the DeepSC
encoder (analog caption mode). Goal: <= 0.5 s per image.

    taskset -c 0 .venv/bin/python benchmarks/ulbsc_encoder.py --threads 1
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--images", nargs="*", default=None, help="default: examples/*.jpg + a 4000x3000 photo")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from gr_semcom.semantic.images import load_image, png_bytes, resize
    from gr_semcom.semantic.saliency import U2NetpDetector
    from gr_semcom.semantic.ulbsc.codec import DEFAULT_DEEPSC, DEFAULT_VQ, UlbscCodec

    root = Path(__file__).resolve().parents[1]
    files = args.images or [str(p) for p in sorted((root / "examples").glob("*.jpg"))]
    blobs = [(Path(f).name, Path(f).read_bytes()) for f in files]
    big = resize(load_image(files[0]), (4000, 3000))
    blobs.append(("4000x3000 (upscaled chelsea, PNG)", png_bytes(big)))
    rows = []
    for mode in ("digital", "analog"):
        codec = UlbscCodec.from_files(DEFAULT_VQ, DEFAULT_DEEPSC, mode, U2NetpDetector(threads=args.threads))
        codec.encode(load_image(blobs[0][1]), caption="warm up")
        for name, blob in blobs:
            ts = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                codec.encode(load_image(blob), caption="a cat lying on a table")
                ts.append(time.perf_counter() - t)
            rows.append({"mode": mode, "image": name, "median_s": float(np.median(ts)), "min_s": float(min(ts))})
            print(json.dumps(rows[-1]))
    print(json.dumps({"cpu": platform.processor() or platform.machine(), "threads": args.threads,
                      "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
