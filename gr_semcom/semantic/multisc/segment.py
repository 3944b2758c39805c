"""Main-object slice (Multi-SC eq. 1, the paper's FCN).

Segmenters (``name`` + ``__call__(image) -> HxW float mask in [0, 1]``):

* :class:`HFSegmenter` -- a transformers semantic-segmentation model
  (``AutoModelForSemanticSegmentation``: FCN-like SegFormer, DPT, BEiT, ...)
  through ``from_pretrained`` (local directory / HF cache); the main object is
  the largest non-background class, as an FCN trained on VOC gives.
* :class:`SaliencySegmenter` -- the default that runs here: U^2-Net lite
  salient-object map (the same detector ULBSC uses). Class-agnostic: it
  finds the most salient object, not the largest labelled one.

:func:`main_object_slice` crops the mask's bounding box, greys out the
background and resizes to ``side`` x ``side``: the image that is sent.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .regions import Box

DEFAULT_SEGMENTER = "nvidia/segformer-b0-finetuned-ade-512-512"


class SaliencySegmenter:
    name = "u2netp"

    def __init__(self, detector=None):
        if detector is None:
            from ..saliency import make_detector

            detector = make_detector("auto")
        self.detector = detector
        self.name = f"saliency:{getattr(detector, 'name', 'detector')}"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(self.detector(image), np.float32), 0, 1)


class HFSegmenter:
    """Largest non-background class of a semantic-segmentation model."""

    name = "hf-segmenter"

    def __init__(self, model, processor, background: tuple = (0,), device: str = "cpu"):
        self.model, self.processor, self.background, self.device = model.to(device).eval(), processor, background, device

    @classmethod
    def from_pretrained(cls, where: str = DEFAULT_SEGMENTER, **kw) -> "HFSegmenter":
        from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

        from ..hub import load_model_and_processor

        model, proc = load_model_and_processor(AutoModelForSemanticSegmentation, AutoImageProcessor,
                                               "semantic segmenter", where, "image processor")
        return cls(model, proc, **kw)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        import torch

        h, w = image.shape[:2]
        inputs = self.processor(images=image, return_tensors="pt").to(self.device)
        with torch.no_grad():
            out = self.model(**inputs)
        seg = self.processor.post_process_semantic_segmentation(out, target_sizes=[(h, w)])[0].cpu().numpy()
        labels, counts = np.unique(seg, return_counts=True)
        keep = [(c, lab) for lab, c in zip(labels, counts) if lab not in self.background]
        if not keep:
            return np.zeros((h, w), np.float32)
        return (seg == max(keep)[1]).astype(np.float32)


def make_segmenter(kind: str = "saliency", model: str | None = None, detector=None):
    if kind == "saliency":
        return SaliencySegmenter(detector)
    if kind == "hf":
        return HFSegmenter.from_pretrained(model or DEFAULT_SEGMENTER)
    raise ValueError(f"unknown segmenter {kind!r} (saliency, hf)")


@dataclass
class Slice:
    image: np.ndarray  # side x side x 3 uint8 (background grey)
    box: Box  # where it sits in the source image
    mask: np.ndarray  # source-size mask that produced it


def mask_box(mask: np.ndarray, threshold: float = 0.5, margin: float = 0.05) -> Box:
    """Bounding box of ``mask >= threshold`` plus a margin; the whole image
    when nothing passes."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask >= threshold)
    if ys.size == 0:
        return Box(0, 0, w, h, 0.0, "main")
    mx, my = int(margin * w), int(margin * h)
    return Box(max(0, int(xs.min()) - mx), max(0, int(ys.min()) - my), min(w, int(xs.max()) + 1 + mx),
               min(h, int(ys.max()) + 1 + my), float(mask[ys, xs].mean()), "main")


def main_object_slice(image: np.ndarray, mask: np.ndarray, side: int = 96, threshold: float = 0.5) -> Slice:
    from ..images import resize

    m = np.asarray(mask, np.float32)
    if m.shape != image.shape[:2]:
        m = resize((np.clip(m, 0, 1) * 255).astype(np.uint8), (image.shape[1], image.shape[0])).astype(np.float32) / 255
    box = mask_box(m, threshold)
    crop = box.crop(image).astype(np.float32)
    alpha = np.clip(box.crop(m)[..., None] * 2.0, 0, 1)  # soft edge; >= 0.5 fully kept
    crop = crop * alpha + 128.0 * (1 - alpha)
    out = resize(np.clip(crop + 0.5, 0, 255).astype(np.uint8), (side, side))
    return Slice(out, box, m)


def paste_slice(shape: tuple[int, int], sl: np.ndarray, box: Box, fill: int = 128) -> np.ndarray:
    """The received slice back at its place on a grey canvas (what the
    receiver knows of the image before generation)."""
    from ..images import resize

    h, w = shape
    canvas = np.full((h, w, 3), fill, np.uint8)
    bw, bh = box.x1 - box.x0, box.y1 - box.y0
    if bw > 0 and bh > 0:
        canvas[box.y0:box.y1, box.x0:box.x1] = resize(sl, (bw, bh))
    return canvas
