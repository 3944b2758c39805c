"""Rate control of one Seb / hyperprior image packet: the latent gain (and
rate point) that makes the packet fit a byte budget.

* :func:`fit_packet` -- the reference: bisection of the latent gain over
  full encodes (8 encodes, transforms included, per call).
* :func:`fit_packet_fast` -- the same choice from one pass of the transforms
  (:meth:`SebCodec.analyse`): the residual stream's length at any gain is
  estimated from the Gaussian conditional's own likelihoods (the discretised
  Gaussian of the scale the coder will use, the scale-table entry
  ``build_indexes`` picks), the gain solved for the bytes left, then
  corrected by the ratio real / estimated bytes of one range-coded packet
  and checked with a second (rarely a third) -- a few milliseconds of rANS
  instead of eight encodes.
* :func:`choose_model` -- the rate point from a per-model table (bits per
  pixel at gain 1 on the validation photos, ``rate_table``), the one whose
  natural rate is nearest the budget in log terms.
"""
from __future__ import annotations

import math

import numpy as np
import torch

GAIN_MIN, GAIN_MAX = 0.05, 8.0
BISECT_ITERS = 7
# one step of the reference bisection (log gain): the tolerance the fast fit is held to
BISECT_STEP = (math.log(GAIN_MAX) - math.log(GAIN_MIN)) / 2 ** BISECT_ITERS


def fit_packet(codec, img: np.ndarray, sset, i: int, max_bytes: int, iters: int = BISECT_ITERS) -> tuple[bytes, float]:
    """Largest image packet <= max_bytes by bisection of the latent gain
    (log scale, 0.05..8; the header carries it in steps of 1/1000); if even
    the coarsest is larger, the coarsest truncated to ``max_bytes`` (the
    decoder drops the cut streams)."""
    lo, hi = math.log(GAIN_MIN), math.log(GAIN_MAX)
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


_SQRT2 = math.sqrt(2.0)


@torch.no_grad()
def estimated_bits(net, analysed, gain: float) -> float:
    """Bits of the residual stream at ``gain`` from the entropy model: sum of
    -log2 P(round(g y)) under the discretised zero-mean Gaussian of the scale
    table entry the coder uses for g * scale."""
    gc = net.gc
    idx = gc.build_indexes(analysed.scales * gain)
    s = gc.scale_table[idx.long()].float().clamp_min(0.11)
    v = torch.round(analysed.y * gain).abs()
    upper = 0.5 * torch.erfc(-((0.5 - v) / s) / _SQRT2)
    lower = 0.5 * torch.erfc(-((-0.5 - v) / s) / _SQRT2)
    lik = (upper - lower).clamp_min(1e-9)
    return float(-torch.log2(lik).sum())


def _solve(f, target: float, lo: float = math.log(GAIN_MIN), hi: float = math.log(GAIN_MAX), iters: int = 18) -> float:
    """Largest log gain in [lo, hi] with f(log gain) <= target (f increasing)."""
    if f(lo) > target:
        return lo
    if f(hi) <= target:
        return hi
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if f(mid) <= target:
            lo = mid
        else:
            hi = mid
    return lo


def _grid(g: float) -> float:
    return min(GAIN_MAX, max(GAIN_MIN, math.floor(g * 1000) / 1000))


def fit_gain(codec, analysed, max_bytes: int, max_packs: int = 6) -> tuple[bytes, float]:
    """Packet <= max_bytes at (nearly) the largest gain in 0.05..8 for an
    analysed image; the same contract as :func:`fit_packet` (the coarsest
    gain, truncated, when nothing fits)."""
    net = codec.nets[analysed.model_id]
    avail_bits = 8.0 * (max_bytes - analysed.fixed_bytes)
    cache: dict = {}

    def est(lg):
        g = _grid(math.exp(lg))
        if g not in cache:
            cache[g] = estimated_bits(net, analysed, g)
        return cache[g]

    p_min = codec.pack(analysed, GAIN_MIN)
    if len(p_min) > max_bytes:
        return p_min[:max(max_bytes, 0)], GAIN_MIN
    best = (p_min, GAIN_MIN)
    ratio = 1.0
    tried: dict = {GAIN_MIN: len(p_min)}
    too_big = GAIN_MAX * 1.001
    for _ in range(max_packs):
        g = _grid(math.exp(_solve(est, avail_bits / ratio)))
        g = min(g, _grid(too_big * 0.999)) if too_big <= GAIN_MAX else g
        if g <= best[1]:
            break
        if g in tried:
            break
        p = codec.pack(analysed, g)
        tried[g] = len(p)
        real_bits = 8.0 * (len(p) - analysed.fixed_bytes)
        e = est(math.log(g))
        if e > 0:
            ratio = max(real_bits, 8.0) / e
        if len(p) <= max_bytes:
            best = (p, g)
            # close enough to the edge: the next gain step of the reference bisection would not fit
            nxt = _grid(g * math.exp(BISECT_STEP / 2))
            if nxt >= GAIN_MAX or nxt <= g or (est(math.log(nxt)) * ratio > avail_bits):
                break
        else:
            too_big = min(too_big, g)
            ratio *= 1.0 + 0.5 * (len(p) - max_bytes) / max(1, len(p))  # a little more cautious
    return best


def fit_packet_fast(codec, img: np.ndarray, sset, i: int, max_bytes: int) -> tuple[bytes, float]:
    """:func:`fit_packet` from one analysis pass (the signature plan_seb uses)."""
    return fit_gain(codec, codec.analyse(img, sset, i), max_bytes)


def candidates(codec, h: int, w: int, max_bytes: int, n: int = 1) -> list[int]:
    """The ``n`` rate points whose validation bpp at gain 1 (``codec.rate_table``,
    read from the model cards) is nearest the budget's bpp in log terms,
    nearest first; the middle one (and its neighbours) without a table."""
    table = getattr(codec, "rate_table", None)
    k = len(codec.nets)
    if not table or any(t is None for t in table):
        order = sorted(range(k), key=lambda i: abs(i - k // 2))
    else:
        target = max(8.0 * max_bytes / (h * w), 1e-6)
        order = sorted(range(k), key=lambda i: abs(math.log(table[i] / target)))
    return order[:max(1, n)]


def choose_model(codec, h: int, w: int, max_bytes: int) -> int:
    """Rate point for a byte budget: the one whose natural rate (validation
    bpp at gain 1) is nearest the budget in log terms (:func:`candidates`).
    On the held-out photos at CBR 1/30 this agreed with the exhaustive search
    over the rate points on most images; where a second encode per image is
    affordable, try ``candidates(..., n=2)`` and keep the better one
    (benchmarks/results/learned_codecs.md)."""
    return candidates(codec, h, w, max_bytes, 1)[0]
