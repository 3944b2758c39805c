"""Image-to-text behind one small interface (ULBSC Sec. III-A uses BLIP).

* :class:`BlipCaptioner` -- transformers' ``BlipForConditionalGeneration``
  loaded with ``from_pretrained(local_files_only=True)`` from a local
  directory or the HF cache (default ``Salesforce/blip-image-captioning-base``);
  missing weights raise :class:`~gr_semcom.semantic.hub.MissingWeights` naming them and
  the ``semcom models download`` command.
* :class:`FixedCaptioner` -- a caption given by the user (``--caption``).
* :class:`SidecarCaptioner` -- reads ``IMAGE.txt`` next to the image (the
  shipped example images carry hand-written captions, marked as such).
* :class:`ObjectCaptioner` -- no captioning model: names the COCO detector's
  objects (count, position, size) with colour / background attributes; the
  default when BLIP's weights are missing (``make_captioner("auto")``).
* :class:`AttributeImageCaptioner` -- colours / texture only (last fallback).

Any object with a ``name`` and ``__call__(image HxWx3 uint8) -> str`` plugs in.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from .words import NOUNS, SUPPORTS, UNCOLOURED, _COLOUR_WORD, _NUMBERS, count_phrase, plural  # noqa: F401

DEFAULT_BLIP = "Salesforce/blip-image-captioning-base"


class Captioner(Protocol):
    name: str

    def __call__(self, image: np.ndarray) -> str: ...


class BlipCaptioner:
    name = "blip"

    def __init__(self, model, processor, device: str = "cpu", max_new_tokens: int = 30, num_beams: int = 3):
        self.model = model.to(device).eval()
        self.processor = processor
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.num_beams = num_beams

    @classmethod
    def from_pretrained(cls, where: str = DEFAULT_BLIP, device: str = "cpu", **kw) -> "BlipCaptioner":
        from transformers import BlipForConditionalGeneration, BlipProcessor

        from .hub import load_model_and_processor

        model, processor = load_model_and_processor(BlipForConditionalGeneration, BlipProcessor, "BLIP captioner",
                                                    where)
        return cls(model, processor, device, **kw)

    def __call__(self, image: np.ndarray) -> str:
        import torch

        inputs = self.processor(images=image, return_tensors="pt").to(self.device)
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, num_beams=self.num_beams)
        return self.processor.decode(out[0], skip_special_tokens=True).strip()


class FixedCaptioner:
    name = "fixed"

    def __init__(self, caption: str):
        if not caption or not caption.strip():
            raise ValueError("empty caption")
        self.caption = caption.strip()

    def __call__(self, image: np.ndarray) -> str:
        return self.caption


class SidecarCaptioner:
    """Caption from ``<image path>.txt`` (or same stem ``.txt``)."""

    name = "sidecar"

    def __init__(self, image_path: str | Path):
        p = Path(image_path)
        for c in (p.with_name(p.name + ".txt"), p.with_suffix(".txt")):
            if c.is_file():
                self.caption = c.read_text().strip().splitlines()[0]
                self.path = c
                break
        else:
            raise FileNotFoundError(f"no caption file next to {p} ({p.name}.txt or {p.stem}.txt)")

    def __call__(self, image: np.ndarray) -> str:
        return self.caption


def make_captioner(kind: str, image_path: str | None = None, caption: str | None = None,
                   model: str = DEFAULT_BLIP, device: str = "cpu") -> Captioner:
    """The captioner for ``kind``:

    * ``auto``: a given caption, else a sidecar .txt next to the image, else
      BLIP when its weights are there, else :class:`ObjectCaptioner` (the
      offline COCO detector; its model is made by scripts/setup.sh), else the
      attribute captions (colours, texture, position) -- so ULBSC works on any
      image with no weights and no sidecar file;
    * ``blip`` (needs its weights), ``sidecar``, ``objects``, ``attributes``.

    The returned object's ``name`` says which one it is (metadata)."""
    if caption:
        return FixedCaptioner(caption)
    if kind == "sidecar" or (kind == "auto" and image_path):
        try:
            return SidecarCaptioner(image_path)
        except (FileNotFoundError, TypeError):
            if kind == "sidecar":
                raise
    if kind == "blip":
        return BlipCaptioner.from_pretrained(model, device=device)
    if kind == "auto":
        from .hub import MissingWeights

        try:
            return BlipCaptioner.from_pretrained(model, device=device)
        except (MissingWeights, ImportError, OSError):
            pass
        try:
            return ObjectCaptioner()
        except (FileNotFoundError, ImportError, OSError):
            return AttributeImageCaptioner()
    if kind == "objects":
        return ObjectCaptioner()
    if kind == "attributes":
        return AttributeImageCaptioner()
    raise ValueError(f"unknown captioner {kind!r} (auto, blip, sidecar, objects, attributes, or --caption TEXT)")


# ---------------------------------------------------------------- captions from detections
def colour_word(pixels: np.ndarray, dominance: float = 0.5) -> str:
    """The colour word of ``pixels`` (Nx3) when one colour (palette of
    multisc.vlm, merged into DeepSC's words) covers at least ``dominance`` of
    them, else '' (no adjective rather than a wrong one)."""
    from .words import _PAL, _PAL_NAMES

    px = np.asarray(pixels, np.float32).reshape(-1, 3)
    if not px.size:
        return ""
    if px.shape[0] > 4096:
        px = px[np.linspace(0, px.shape[0] - 1, 4096).astype(int)]
    near = ((px[:, None, :] - _PAL[None]) ** 2).sum(-1).argmin(1)
    counts: dict[str, int] = {}
    for i in near:
        w = _COLOUR_WORD.get(_PAL_NAMES[i], _PAL_NAMES[i])
        counts[w] = counts.get(w, 0) + 1
    best = max(counts, key=counts.get)
    return best if counts[best] >= dominance * len(near) else ""


def attribute_caption(image: np.ndarray) -> str:
    """'a picture mostly brown and green': the two dominant colours in words
    the DeepSC model knows (the attribute captions' texture and brightness
    words are not in its vocabulary)."""
    from .words import colour_names

    cols = []
    for c in colour_names(image, 3):
        c = _COLOUR_WORD.get(c, c)
        if c not in cols:
            cols.append(c)
    return "a picture mostly " + " and ".join(cols[:2]) if cols else "a picture"


def place_phrase(cx: float, cy: float) -> str:
    """Where a point (fractions of width/height) is, in caption words."""
    v = "top" if cy < 0.3 else ("bottom" if cy > 0.7 else "")
    h = "left" if cx < 0.3 else ("right" if cx > 0.7 else "")
    if v and h:
        return f"at the {v} {h}"
    if h:
        return f"on the {h}"
    if v:
        return f"at the {v}"
    return "in the center"


class ObjectCaptioner:
    """Short English captions that name things, with no captioning model: the
    COCO detector's objects (class, count, position, size) and the attribute
    features of :mod:`.multisc.vlm` (dominant colours; background colours and
    texture), e.g. "two brown dogs in the center with a table, white and gray
    background". With no detection it falls back to the attribute caption of
    the picture. Also a Multi-SC VLM (``describe(crop, box, shape, frac)``):
    a region's fused detection labels (or the detector on the crop) name it.

    ``name`` is ``objects:<detector name>`` (metadata)."""

    def __init__(self, detector=None, threshold: float = 0.3, max_kinds: int = 3):
        if detector is None:
            from .detect.centernet import CenterNetDetector

            detector = CenterNetDetector(threshold=threshold)
        self.detector = detector
        self.threshold, self.max_kinds = threshold, max_kinds
        self.name = f"objects:{getattr(detector, 'name', 'detector')}"
        self.last_source = ""  # "objects" or "attributes" (no detection) for the last caption

    def detect(self, image: np.ndarray) -> list:
        try:
            boxes = self.detector(image)
        except ValueError:  # not an image the detector takes (e.g. 0 pixels): nothing detected
            return []
        return [b for b in boxes if b.score >= self.threshold and b.label]

    @staticmethod
    def _rgb(image) -> np.ndarray:
        from .detect.centernet import as_rgb_uint8

        return as_rgb_uint8(image)

    def caption_from(self, image: np.ndarray, boxes: list) -> str:
        """The caption of ``image`` given its detections ``boxes`` (Box with label, score)."""
        from .detect.centernet import COCO_CLASSES
        from .words import colour_names

        im = self._rgb(image)
        h, w = im.shape[:2]
        named = [b for b in boxes if b.label in COCO_CLASSES and b.area > 0]
        if not named:
            self.last_source = "attributes"
            return attribute_caption(im)
        self.last_source = "objects"
        groups: dict[str, list] = {}
        for b in named:
            groups.setdefault(NOUNS.get(b.label, b.label), []).append(b)
        kinds = sorted(groups, key=lambda k: -sum(b.area * b.score for b in groups[k]))
        things = [k for k in kinds if k not in SUPPORTS]
        if things:  # a cup on a table: the table is where the thing is, not the subject
            kinds = things[:1] + [k for k in kinds if k != things[0]]
        kinds = kinds[: self.max_kinds]
        main = groups[kinds[0]]
        big = max(main, key=lambda b: b.area)
        x0, y0 = min(b.x0 for b in main), min(b.y0 for b in main)
        x1, y1 = max(b.x1 for b in main), max(b.y1 for b in main)
        # the main object's colour from the middle half of its largest box (less background)
        bw, bh = big.x1 - big.x0, big.y1 - big.y0
        core = im[big.y0 + bh // 4: big.y1 - bh // 4 or big.y1, big.x0 + bw // 4: big.x1 - bw // 4 or big.x1]
        col = "" if kinds[0] in UNCOLOURED else colour_word(core if core.size else im)
        noun = kinds[0]
        n = len(main)
        phrase = count_phrase(noun, n)
        if col:
            phrase = phrase.replace(noun if n == 1 else plural(noun), f"{col} {noun if n == 1 else plural(noun)}", 1)
            if n == 1:
                phrase = ("an " if col[0] in "aeiou" else "a ") + phrase.split(" ", 1)[1]
        if (x1 - x0) * (y1 - y0) > 0.6 * h * w:
            text = f"a close up of {phrase}" if n == 1 else f"a picture of {phrase}"
        else:
            text = f"{phrase} {place_phrase((x0 + x1) / 2 / w, (y0 + y1) / 2 / h)}"
        on = [k for k in kinds[1:] if k in SUPPORTS]
        if on:
            text += f" on {count_phrase(on[0], 1)}"
        others = [count_phrase(k, len(groups[k])) for k in kinds[1:] if k not in on[:1]]
        if others:
            text += " with " + " and ".join(others)
        # background: pixels outside every box
        outside = np.ones((h, w), bool)
        for b in named:
            outside[b.y0:b.y1, b.x0:b.x1] = False
        if outside.mean() >= 0.1:
            cols = []
            for c in colour_names(im[outside], 2):
                c = _COLOUR_WORD.get(c, c)
                if c not in cols:
                    cols.append(c)
            text += ", " + " and ".join(cols) + " background"
        return text

    def __call__(self, image: np.ndarray) -> str:
        im = self._rgb(image)
        return self.caption_from(im, self.detect(im))

    def describe(self, crop: np.ndarray, box=None, shape=None, main_fraction: float = 0.0) -> str:
        """Multi-SC region caption: the region's own detection labels
        ("dog", "dog+dog+cup" after fusion) when it has them, else the detector
        on the crop; where the region sits in the picture; attribute caption
        when nothing is named."""
        from .detect.centernet import COCO_CLASSES
        from .words import AttributeCaptioner

        im = self._rgb(crop)
        labels = [x for x in (getattr(box, "label", "") or "").split("+") if x]
        if labels and all(x in COCO_CLASSES for x in labels):
            counts: dict[str, int] = {}
            for x in labels:
                counts[NOUNS.get(x, x)] = counts.get(NOUNS.get(x, x), 0) + 1
            kinds = sorted(counts, key=lambda k: -counts[k])[: self.max_kinds]
            col = "" if kinds[0] in UNCOLOURED else colour_word(im)
            head = count_phrase(kinds[0], counts[kinds[0]])
            if col:
                first, rest = head.split(" ", 1)
                head = (("an " if col[0] in "aeiou" else "a ") if first in ("a", "an") else first + " ") \
                    + f"{col} {rest}"
            text = head + "".join(f" and {count_phrase(k, counts[k])}" for k in kinds[1:])
            self.last_source = "labels"
        else:
            dets = self.detect(im)
            if not dets:
                self.last_source = "attributes"
                return AttributeCaptioner().describe(im, box, shape, main_fraction)
            text = self.caption_from(im, dets)
            self.last_source = "objects"
            text = text.split(", ")[0]  # the region's background is the rest of the picture
        hh, ww = shape if shape is not None else (0, 0)
        if box is not None and shape is not None and box.area < 0.9 * hh * ww:
            cx, cy = box.centre
            return text + f" {place_phrase(cx / ww, cy / hh)} of the picture"
        if self.last_source == "labels" or len(text.split()) < 4:
            text = "a picture of " + text  # a whole-picture region; and at least BLEU's 4-grams
        return text


class AttributeImageCaptioner:
    """The attribute caption of the whole picture (colours, texture, brightness;
    :class:`~gr_semcom.semantic.multisc.vlm.AttributeCaptioner`), the last
    fallback when neither BLIP nor the detector is there."""

    name = "attributes"

    def __call__(self, image: np.ndarray) -> str:
        from .detect.centernet import as_rgb_uint8
        from .words import AttributeCaptioner

        return AttributeCaptioner().describe(as_rgb_uint8(image))


def tiny_blip(dirpath: str | Path, seed: int = 0) -> Path:
    """Save a randomly initialised, tiny BLIP captioner (config-built, with a
    small word-piece vocabulary) to ``dirpath`` so tests run the real
    ``from_pretrained`` + ``generate`` path without any download."""
    import torch
    from transformers import (BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor,
                              BlipProcessor)

    d = Path(dirpath)
    d.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "cat", "dog", "on", "the", "bed",
             "sitting", "of", "man", "picture", "with", "red", "car", "street"]
    (d / "vocab.txt").write_text("\n".join(words) + "\n")
    tok = BertTokenizer(str(d / "vocab.txt"), bos_token="[DEC]")
    torch.manual_seed(seed)
    cfg = BlipConfig(
        text_config=dict(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=64, bos_token_id=5, pad_token_id=0,
                         sep_token_id=3, eos_token_id=3),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=64, patch_size=16),
        projection_dim=32)
    model = BlipForConditionalGeneration(cfg)
    model.config.decoder_input_ids = 5
    model.save_pretrained(d)
    BlipProcessor(BlipImageProcessor(size={"height": 64, "width": 64}), tok).save_pretrained(d)
    return d


def synthetic_object_captions(n: int, seed: int = 0, region_share: float = 0.3) -> list[str]:
    """``n`` captions in ObjectCaptioner's own grammar, for training the DeepSC
    text model on the sentences it will carry: random COCO detections (1-3
    kinds, 1-5 of each, random sizes and places) painted in random palette
    colours on a random two-colour background and captioned by
    :meth:`ObjectCaptioner.caption_from`; ``region_share`` of them are Multi-SC
    region captions (:meth:`ObjectCaptioner.describe` of a fused box). A
    grammar, not a dataset: no photo is involved."""
    from .detect.centernet import COCO_CLASSES
    from .boxes import Box
    from .words import _PAL

    rng = np.random.default_rng(seed)
    cap = ObjectCaptioner(detector=lambda im: [])
    out = []
    for _ in range(n):
        h, w = 96, 128
        im = np.empty((h, w, 3), np.uint8)
        im[:] = _PAL[rng.integers(len(_PAL))]
        im[:, rng.integers(w // 3, w):] = _PAL[rng.integers(len(_PAL))]
        boxes = []
        for c in rng.choice(len(COCO_CLASSES), rng.integers(1, 4), replace=False):
            for _k in range(int(rng.choice([1, 1, 1, 2, 2, 3, 4, 6]))):
                bw, bh = (int(v) for v in rng.integers(8, [w, h]))
                x0, y0 = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
                im[y0:y0 + bh, x0:x0 + bw] = _PAL[rng.integers(len(_PAL))]
                boxes.append(Box(x0, y0, x0 + bw, y0 + bh, float(rng.uniform(0.3, 0.9)), COCO_CLASSES[c]))
        if rng.random() < region_share:
            u = boxes[0]
            for b in boxes[1:]:
                u = u.union(b)
            out.append(cap.describe(u.crop(im), u, (h, w), 0.0))
        else:
            out.append(cap.caption_from(im, boxes))
    return out
