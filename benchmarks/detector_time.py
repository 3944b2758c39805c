"""Time of the offline COCO detector (CenterNet MobileNetV3, ONNX, onnxruntime
with ONE intra-op thread) per 512x512 image: the graph alone and the whole
``CenterNetDetector.detect`` (RGB conversion, 512x512 input, graph,
threshold, NMS, boxes in source pixels). Pin it to one core:

    taskset -c 0 .venv/bin/python benchmarks/detector_time.py [--runs 30]

Prints min / median / 90th percentile in ms. Target (issue 20): <= 150 ms.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def main(argv=None) -> int:
    import onnxruntime as ort
    from skimage import data

    from gr_semcom.semantic.detect.centernet import INPUT_NAME, OUTPUT_NAME, CenterNetDetector, preprocess

    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    det = CenterNetDetector(threads=1)
    im = data.astronaut()  # 512 x 512
    x = preprocess(im)
    for _ in range(3):
        det.detect(im)

    def timed(fn):
        ts = []
        for _ in range(a.runs):
            t = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t) * 1000)
        return {"min_ms": float(np.min(ts)), "median_ms": float(np.median(ts)), "p90_ms": float(np.percentile(ts, 90))}

    res = {"graph": timed(lambda: det.session.run([OUTPUT_NAME], {INPUT_NAME: x})),
           "detect": timed(lambda: det.detect(im)),
           "runs": a.runs, "threads": 1, "affinity": sorted(os.sched_getaffinity(0)),
           "onnxruntime": ort.__version__, "cpu": platform.processor() or platform.machine(),
           "loadavg_1min": os.getloadavg()[0]}
    for k in ("graph", "detect"):
        r = res[k]
        print(f"{k:7s} min {r['min_ms']:.1f} ms  median {r['median_ms']:.1f} ms  p90 {r['p90_ms']:.1f} ms")
    print(f"cores {res['affinity']}, load average {res['loadavg_1min']:.2f} (other jobs share the machine)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
