"""Rate control of one Seb / hyperprior image packet: the latent gain that
makes the packet fit a byte budget. :func:`fit_packet` is the reference
(bisection over encodes)."""
from __future__ import annotations

import math

import numpy as np


def fit_packet(codec, img: np.ndarray, sset, i: int, max_bytes: int, iters: int = 7) -> tuple[bytes, float]:
    """Largest image packet <= max_bytes by bisection of the latent gain
    (log scale, 0.05..8; the header carries it in steps of 1/1000); if even
    the coarsest is larger, the coarsest truncated to ``max_bytes`` (the
    decoder drops the cut streams)."""
    lo, hi = math.log(0.05), math.log(8.0)
    best = None
    p = codec.encode_image(img, sset, i, gain=math.exp(lo))
    if len(p) > max_bytes:
        return p[:max(max_bytes, 0)], math.exp(lo)
    best = (p, math.exp(lo))
    for _ in range(iters):
        mid = (lo + hi) / 2
        g = round(math.exp(mid), 3)
        p = codec.encode_image(img, sset, i, gain=g)
        if len(p) <= max_bytes:
            best, lo = (p, g), mid
        else:
            hi = mid
    return best
