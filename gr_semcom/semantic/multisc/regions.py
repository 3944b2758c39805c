"""Sub-images of Multi-SC (eq. 2) and the feature fusion of Sec. III-B (eq. 9).

Detectors (any object with ``name`` and ``__call__(image) -> list[Box]``):

* :class:`HFObjectDetector` -- transformers ``AutoModelForObjectDetection``
  (DETR, YOLOS, RT-DETR, ...) through ``from_pretrained`` from a local directory
  or the HF cache; what the paper uses (a trained object detector).
* :class:`DetectionSplit` -- the default: COCO detections of the offline
  CenterNet (made at set-up, no weights to download), with
  :class:`ProposalDetector` as the fallback when nothing is detected.
* :class:`ProposalDetector` -- Felzenszwalb graph segmentation (scikit-image)
  grouped into boxes, the largest first. Class-agnostic region proposals, not object detections: it
  finds coherent image regions (sky, a building, a face) without naming them.

Splits compared in the paper: feature fusion of detections (:func:`fuse`),
random split (:func:`random_split`, the "Multi-SC with random split"
baseline) and a single region (the whole image, "single text").
"""
from __future__ import annotations

import math

import numpy as np

from ..boxes import Box  # noqa: F401 (the boxes of every split)

DEFAULT_DETECTOR = "hustvl/yolos-tiny"


def centre_distance(a: Box, b: Box) -> float:
    """Eq. (9): Euclidean distance of the two boxes' centre points (pixels)."""
    (xa, ya), (xb, yb) = a.centre, b.centre
    return math.hypot(xa - xb, ya - yb)


def fuse(boxes: list[Box], eps: float) -> list[Box]:
    """Feature fusion (Sec. III-B, Algorithm 1 step 2): while two sub-images
    have centre distance d < ``eps`` (pixels), replace them by one sub-image
    covering both. Closest pair first; the result has no pair closer than eps.
    Order: largest area first."""
    if eps < 0:
        raise ValueError("eps must be >= 0")
    cur = list(boxes)
    while len(cur) > 1:
        best, pair = None, None
        for i in range(len(cur)):
            for j in range(i + 1, len(cur)):
                d = centre_distance(cur[i], cur[j])
                if d < eps and (best is None or d < best):
                    best, pair = d, (i, j)
        if pair is None:
            break
        i, j = pair
        merged = cur[i].union(cur[j])
        cur = [b for k, b in enumerate(cur) if k not in pair] + [merged]
    return sorted(cur, key=lambda b: -b.area)


def random_split(shape: tuple[int, int], n: int, rng: np.random.Generator, min_frac: float = 0.2) -> list[Box]:
    """``n`` rectangles tiling the image by random guillotine cuts (the
    paper's random-split baseline): the largest piece is cut across its
    longer side at a uniform position in [min_frac, 1 - min_frac]."""
    h, w = shape
    pieces = [Box(0, 0, w, h)]
    while len(pieces) < max(1, n):
        pieces.sort(key=lambda b: -b.area)
        b = pieces.pop(0)
        bw, bh = b.x1 - b.x0, b.y1 - b.y0
        if max(bw, bh) < 2:
            pieces.append(b)
            break
        f = rng.uniform(min_frac, 1 - min_frac)
        if bw >= bh:
            c = b.x0 + max(1, min(bw - 1, round(bw * f)))
            pieces += [Box(b.x0, b.y0, c, b.y1), Box(c, b.y0, b.x1, b.y1)]
        else:
            c = b.y0 + max(1, min(bh - 1, round(bh * f)))
            pieces += [Box(b.x0, b.y0, b.x1, c), Box(b.x0, c, b.x1, b.y1)]
    return sorted(pieces, key=lambda b: (b.y0, b.x0))


def whole_image(shape: tuple[int, int]) -> list[Box]:
    return [Box(0, 0, shape[1], shape[0], 1.0, "image")]


class ProposalDetector:
    """Class-agnostic regions: Felzenszwalb segments (on the image scaled to
    ``work`` px longest side) as bounding boxes, keeping those covering
    ``min_area``..``max_area`` of the image, largest first, at most ``k``."""

    name = "proposals"

    def __init__(self, k: int = 8, scale: float = 400.0, sigma: float = 0.8, min_area: float = 0.02,
                 max_area: float = 0.8, work: int = 256):
        self.k, self.scale, self.sigma = k, scale, sigma
        self.min_area, self.max_area, self.work = min_area, max_area, work

    def __call__(self, image: np.ndarray) -> list[Box]:
        from skimage.segmentation import felzenszwalb

        from ..images import resize

        h, w = image.shape[:2]
        s = min(1.0, self.work / max(h, w))
        small = resize(image, (max(1, round(w * s)), max(1, round(h * s)))) if s < 1 else image
        seg = felzenszwalb(small, scale=self.scale, sigma=self.sigma,
                           min_size=max(8, int(self.min_area * small.shape[0] * small.shape[1] / 4)))
        boxes = []
        n = small.shape[0] * small.shape[1]
        for lab in np.unique(seg):
            ys, xs = np.nonzero(seg == lab)
            frac = ys.size / n
            if not self.min_area <= frac <= self.max_area:
                continue
            b = Box(int(xs.min() / s), int(ys.min() / s), min(w, int(math.ceil((xs.max() + 1) / s))),
                    min(h, int(math.ceil((ys.max() + 1) / s))), float(frac), "region")
            boxes.append(b)
        boxes.sort(key=lambda b: -b.score)
        return boxes[: self.k] or whole_image((h, w))


class HFObjectDetector:
    """transformers object detector (``AutoModelForObjectDetection`` +
    ``AutoImageProcessor``, e.g. ``hustvl/yolos-tiny`` or
    ``facebook/detr-resnet-50``); boxes above ``threshold``, best first."""

    name = "hf-detector"

    def __init__(self, model, processor, threshold: float = 0.5, k: int = 8, device: str = "cpu"):
        self.model, self.processor = model.to(device).eval(), processor
        self.threshold, self.k, self.device = threshold, k, device

    @classmethod
    def from_pretrained(cls, where: str = DEFAULT_DETECTOR, **kw) -> "HFObjectDetector":
        from transformers import AutoImageProcessor, AutoModelForObjectDetection

        from ..hub import load_model_and_processor

        model, proc = load_model_and_processor(AutoModelForObjectDetection, AutoImageProcessor, "object detector",
                                               where, "image processor")
        return cls(model, proc, **kw)

    def __call__(self, image: np.ndarray) -> list[Box]:
        import torch

        h, w = image.shape[:2]
        inputs = self.processor(images=image, return_tensors="pt").to(self.device)
        with torch.no_grad():
            out = self.model(**inputs)
        res = self.processor.post_process_object_detection(out, threshold=self.threshold, target_sizes=[(h, w)])[0]
        id2label = getattr(self.model.config, "id2label", {}) or {}
        boxes = []
        for score, lab, bx in zip(res["scores"].tolist(), res["labels"].tolist(), res["boxes"].tolist()):
            x0, y0, x1, y1 = (int(round(v)) for v in bx)
            x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
            if x1 - x0 >= 4 and y1 - y0 >= 4:
                boxes.append(Box(x0, y0, x1, y1, float(score), str(id2label.get(lab, lab))))
        boxes.sort(key=lambda b: -b.score)
        return boxes[: self.k] or whole_image((h, w))


class DetectionSplit:
    """Multi-SC's default split input: COCO detections (the offline CenterNet,
    :mod:`gr_semcom.semantic.detect.centernet`), best ``k`` above
    ``threshold``, which :func:`fuse` then merges by centre distance (eq. 9).
    When the detector finds nothing (or is not installed), the fallback's
    class-agnostic regions (Felzenszwalb :class:`ProposalDetector`) are used,
    so a split always comes back. ``last_source`` says which one gave the
    last boxes (``name`` of the detector or of the fallback)."""

    def __init__(self, detector=None, fallback=None, k: int = 8, threshold: float = 0.3):
        if detector is None:
            from ..detect.centernet import CenterNetDetector

            detector = CenterNetDetector(threshold=threshold)
        self.detector, self.fallback = detector, fallback or ProposalDetector()
        self.k, self.threshold = k, threshold
        self.name = f"{getattr(detector, 'name', 'detector')}|{self.fallback.name}"
        self.last_source = ""

    def __call__(self, image: np.ndarray) -> list[Box]:
        h, w = image.shape[:2]
        try:
            dets = [b for b in self.detector(image) if b.score >= self.threshold and b.area > 0]
        except ValueError:
            dets = []
        dets = sorted(dets, key=lambda b: -b.score)[: self.k]
        if dets:
            self.last_source = getattr(self.detector, "name", "detector")
            return dets
        self.last_source = self.fallback.name
        return self.fallback(image) if min(h, w) >= 2 else whole_image((h, w))


def make_region_detector(kind: str = "auto", model: str | None = None, **kw):
    """``auto``: :class:`DetectionSplit` (COCO detections, proposals when none)
    if the COCO detector is installed, else proposals; ``coco`` (needs it),
    ``proposals``, ``hf`` (a transformers detector; needs its weights)."""
    if kind == "auto":
        from ..detect.centernet import CenterNetDetector

        kind = "coco" if CenterNetDetector.available(model) else "proposals"
        model = model if kind == "coco" else None
    if kind == "coco":
        from ..detect.centernet import CenterNetDetector

        return DetectionSplit(CenterNetDetector(model, threshold=kw.pop("threshold", 0.3)), **kw)
    if kind == "proposals":
        return ProposalDetector(**kw)
    if kind == "hf":
        return HFObjectDetector.from_pretrained(model or DEFAULT_DETECTOR, **kw)
    raise ValueError(f"unknown region detector {kind!r} (auto, coco, proposals, hf)")
