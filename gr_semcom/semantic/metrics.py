"""Metrics the seed papers report (numpy; BLEU through sacrebleu).

Saliency (ULBSC Sec. IV-B): maps are float arrays in [0, 1].

* ``mae(pred, gt)`` -- eq. (13), mean |P - G| over pixels.
* ``f_measure(pred, gt, beta2=0.3)`` -- eq. (12) with the *adaptive*
  threshold of the salient-object literature ULBSC follows (Achanta et al.,
  CVPR 2009: twice the mean saliency of the predicted map, capped at 1). The
  ground truth is binarised at 0.5 (a U^2-Net map of the source image when no
  hand-made mask exists). Precision = TP / predicted positives, recall =
  TP / ground-truth positives; pixels of value 0 are never positive, so an
  all-zero map has F = 0 (the threshold 2*mean would be 0 there). A map of
  mean > 0.5 gets threshold 1: only pixels at exactly 1 count (the
  definition's known edge, kept as published).

Text: ``bleu`` is sacrebleu's corpus BLEU (0..100) with its default 13a
tokeniser; ``bleu_n`` gives the n-gram-weighted variants DeepSC plots
(1-gram .. 4-gram) on 0..1 via sacrebleu's ``max_ngram_order``.
"""
from __future__ import annotations

import numpy as np


def _as_map(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D map, got shape {a.shape}")
    if a.size and (a.min() < -1e-6 or a.max() > 1 + 1e-6):
        raise ValueError(f"{name} must lie in [0, 1] (got {a.min():.3g}..{a.max():.3g})")
    return a


def _pair(pred, gt):
    p, g = _as_map(pred, "pred"), _as_map(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred {p.shape} and gt {g.shape} differ in shape; resize first")
    return p, g


def mae(pred, gt) -> float:
    p, g = _pair(pred, gt)
    return float(np.mean(np.abs(p - g)))


def adaptive_threshold(pred) -> float:
    return float(min(2.0 * np.mean(_as_map(pred, "pred")), 1.0))


def precision_recall(pred, gt, threshold: float | None = None) -> tuple[float, float]:
    p, g = _pair(pred, gt)
    t = adaptive_threshold(p) if threshold is None else threshold
    pb = (p >= t) & (p > 0)  # a zero-saliency pixel is never "salient" (an all-zero map predicts nothing)
    gb = g >= 0.5
    tp = float(np.sum(pb & gb))
    precision = tp / float(pb.sum()) if pb.any() else 0.0
    recall = tp / float(gb.sum()) if gb.any() else (1.0 if not pb.any() else 0.0)
    return precision, recall


def f_measure(pred, gt, beta2: float = 0.3, threshold: float | None = None) -> float:
    prec, rec = precision_recall(pred, gt, threshold)
    den = beta2 * prec + rec
    return float((1 + beta2) * prec * rec / den) if den > 0 else 0.0


def bleu(hypotheses: list[str], references: list[str]) -> float:
    import sacrebleu

    if len(hypotheses) != len(references):
        raise ValueError("one reference per hypothesis")
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)


def bleu_n(hypotheses: list[str], references: list[str], n: int = 1) -> float:
    """BLEU with n-gram order ``n`` (uniform weights up to n), on 0..1."""
    from sacrebleu.metrics import BLEU

    metric = BLEU(max_ngram_order=n, effective_order=True)
    return float(metric.corpus_score(list(hypotheses), [list(references)]).score) / 100.0


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(peak * peak / mse))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM (pytorch-msssim, five scales, Wang et al. 2003's weights) of two
    HxWx3 uint8 images, data range 255. NaN for images whose short side is
    <= 160 px (too small for four 2x downsamplings with the 11-tap window)."""
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"expected two HxWx3 images of one shape, got {a.shape} and {b.shape}")
    if min(a.shape[:2]) <= 160:
        return float("nan")
    ta = torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1)[None]
    tb = torch.from_numpy(b.astype(np.float32)).permute(2, 0, 1)[None]
    return float(_ms_ssim(ta, tb, data_range=255.0))
