"""Multi-SC codec (Algorithm 1): image -> main-object slice + region captions,
and back. One implementation serves the CLI, the GNU Radio blocks, the sweep
and the tests.

Slice PDU (digital: CRC + LDPC + QAM)::

    byte 0       version (high nibble)
    bytes 1-4    source height, width (u16 big-endian)
    bytes 5-12   slice box x0, y0, x1, y1 in source pixels (u16 each)
    bytes 13-14  slice side (u16; the slice is side x side)
    byte 15      number of captions sent
    rest         the slice as a JPEG 2000 codestream (at most ``slice_bytes``)

Captions: one per region, each on its own (orthogonal) channel: uncoded
QPSK text (textcode.py, the path with spelling errors), a digital PDU
(UTF-8 through CRC + LDPC: errors are erasures) or DeepSC symbols.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from ..images import MIN_SIDE, ImageError, load_image, resize
from .regions import Box, fuse, random_split, whole_image
from .segment import main_object_slice, paste_slice

VERSION = 1
HEADER = 16
SPLITS = ("fusion", "random", "single")
TEXT_MODES = ("uncoded", "digital", "deepsc")


def header_intact(data: bytes, missing=()) -> bool:
    """Whether the slice PDU's header arrived (the PHY lists lost byte ranges)."""
    return len(data) >= HEADER and not any(a < HEADER for a, _ in (missing or ()))


def caption_count(data: bytes, missing=()) -> int | None:
    """How many captions the slice PDU announces (None: header lost)."""
    return data[HEADER - 1] if header_intact(data, missing) else None


@dataclass
class MultiScConfig:
    split: str = "fusion"  # fusion (eq. 9) | random | single (one caption of the whole image)
    eps: float = 0.25  # fusion threshold epsilon, as a fraction of the image diagonal
    max_regions: int = 4  # captions sent at most (largest fused regions first)
    slice_side: int = 64
    slice_bytes: int = 400
    work_side: int = 512  # images are analysed at this longest side
    seed: int = 0  # random split

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"split is one of {SPLITS}, got {self.split!r}")
        if not 0 <= self.eps <= 2:
            raise ValueError("eps is a fraction of the image diagonal in [0, 2]")
        if self.max_regions < 1 or self.slice_side < 8 or self.slice_bytes < 32:
            raise ValueError("max_regions >= 1, slice_side >= 8, slice_bytes >= 32")


@dataclass
class MultiScPayload:
    slice_data: bytes
    captions: list  # one per region, in region order
    regions: list  # [Box] in source pixels
    detections: list  # [Box] before fusion
    slice_image: np.ndarray
    slice_box: Box
    mask: np.ndarray  # work-resolution main-object mask
    shape: tuple  # source (h, w)
    fields: list = field(default_factory=list)
    captioner: str = ""  # name of the region captioner that wrote the captions
    split_source: str = ""  # which detector gave the regions (DetectionSplit: the COCO detector or its fallback)

    def meta(self) -> dict:
        return {"scheme": "multisc", "version": VERSION, "height": self.shape[0], "width": self.shape[1],
                "captioner": self.captioner, "split_source": self.split_source,
                "slice_box": self.slice_box.as_list(), "slice_side": int(self.slice_image.shape[0]),
                "slice_bytes": len(self.slice_data) - HEADER, "captions": list(self.captions),
                "regions": [b.as_list() for b in self.regions], "detections": [b.as_list() for b in self.detections],
                "fields": self.fields}


@dataclass
class MultiScReconstruction:
    slice_image: np.ndarray
    slice_box: Box
    shape: tuple
    captions_received: list
    captions_corrected: list
    slice_erased: bool = False
    errors: list = field(default_factory=list)

    def canvas(self) -> np.ndarray:
        """The slice back at its place on grey: the image before generation."""
        return paste_slice(self.shape, self.slice_image, self.slice_box)

    def meta(self) -> dict:
        return {"scheme": "multisc", "height": self.shape[0], "width": self.shape[1],
                "slice_box": self.slice_box.as_list(), "slice_erased": self.slice_erased,
                "captions_received": list(self.captions_received),
                "captions_corrected": list(self.captions_corrected), "errors": list(self.errors)}


class MultiScCodec:
    def __init__(self, segmenter, detector, vlm, corrector, cfg: MultiScConfig | None = None):
        self.segmenter, self.detector, self.vlm, self.corrector = segmenter, detector, vlm, corrector
        self.cfg = cfg or MultiScConfig()

    @classmethod
    def default(cls, cfg: MultiScConfig | None = None, segmenter=None, detector=None, vlm=None, corrector=None):
        """Every stage's no-download default (docs/multisc.md), or the given stage objects."""
        return cls.build(cfg, segmenter=segmenter or "saliency", detector=detector or "auto",
                         vlm=vlm or "auto", corrector=corrector or "symspell")

    @classmethod
    def build(cls, cfg: MultiScConfig | None = None, segmenter="saliency", segmenter_model: str | None = None,
              detector="auto", detector_model: str | None = None, vlm="auto",
              vlm_model: str | None = None, corrector="symspell", corrector_model: str | None = None):
        """The codec from stage kinds (the CLI's and the GRC blocks' options) or
        stage objects; an empty kind leaves that stage out (a receiver needs
        only the corrector)."""
        from .correct import make_corrector
        from .regions import make_region_detector
        from .segment import make_segmenter
        from .vlm import VOCABULARY, make_vlm

        def stage(kind, make, *args):
            return (make(kind, *args) if kind else None) if isinstance(kind, str) else kind

        return cls(stage(segmenter, make_segmenter, segmenter_model or None),
                   stage(detector, make_region_detector, detector_model or None),
                   stage(vlm, make_vlm, vlm_model or None),
                   stage(corrector, make_corrector, corrector_model or None, VOCABULARY), cfg)

    # -- transmitter ----------------------------------------------------------------
    def regions(self, work: np.ndarray, rng: np.random.Generator) -> tuple[list[Box], list[Box]]:
        """(regions, detections) at work resolution, per the configured split."""
        shape = work.shape[:2]
        if self.cfg.split == "single":
            return whole_image(shape), []
        dets = self.detector(work)
        eps = self.cfg.eps * float(np.hypot(*shape))
        fused = fuse(dets, eps)[: self.cfg.max_regions]
        if self.cfg.split == "random":  # as many random pieces as fusion gives (same caption budget)
            return random_split(shape, len(fused), rng), dets
        return fused, dets

    def encode(self, image, budget=None) -> MultiScPayload:
        """``budget``: None (the slice gets at most ``cfg.slice_bytes``) or a
        callable ``budget(captions) -> (captions kept, slice PDU bytes or None)``
        that fits the payload to a channel-use budget once the captions are
        known (blocks/multisc_blocks.slice_budget). With a budget the slice stream is at
        most min(``cfg.slice_bytes``, PDU bytes - header); if that cannot carry
        the slice at ``slice_side``, the side is halved (down to 16) before it
        goes out as a header alone; None sends no slice PDU at all."""
        img = image if isinstance(image, np.ndarray) else load_image(image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ImageError(f"expected an HxWx3 uint8 RGB image, got {img.shape} {img.dtype}")
        h, w = img.shape[:2]
        if min(h, w) < MIN_SIDE or max(h, w) > 65535:
            raise ImageError(f"image is {w}x{h}; sides from {MIN_SIDE} to 65535 pixels are accepted")
        s = min(1.0, self.cfg.work_side / max(h, w))
        work = resize(img, (max(1, round(w * s)), max(1, round(h * s)))) if s < 1 else img
        mask = np.asarray(self.segmenter(work), np.float32)
        rng = np.random.default_rng(self.cfg.seed)
        regs, dets = self.regions(work, rng)
        main = mask >= 0.5
        n_main = max(1, int(main.sum()))
        caps = []
        for b in regs:
            frac = float(main[b.y0:b.y1, b.x0:b.x1].sum()) / n_main if b.area < 0.9 * main.size else 0.0
            caps.append(self.vlm.describe(b.crop(work), b, work.shape[:2], frac))
        max_bytes = self.cfg.slice_bytes
        if budget is not None:
            keep, pdu_bytes = budget(list(caps))
            keep = max(1, min(len(caps), int(keep)))
            regs, caps = regs[:keep], caps[:keep]
            max_bytes = None if pdu_bytes is None else min(max_bytes, max(0, int(pdu_bytes) - HEADER))

        def up(b: Box) -> Box:  # work -> source pixels
            return Box(int(b.x0 / s), int(b.y0 / s), min(w, int(round(b.x1 / s))), min(h, int(round(b.y1 / s))),
                       b.score, b.label)

        from ..jpeg2000 import encode_to_budget

        side = self.cfg.slice_side
        sl = main_object_slice(work, mask, side)
        stream = encode_to_budget(sl.image, max_bytes) if max_bytes else None
        while stream is None and max_bytes and side > 16:  # a smaller slice rather than none
            side //= 2
            sl = main_object_slice(work, mask, side)
            stream = encode_to_budget(sl.image, max_bytes)
        if stream is None and side != self.cfg.slice_side:  # none fits: the header alone, at the usual side
            side = self.cfg.slice_side
            sl = main_object_slice(work, mask, side)
        stream = stream or b""
        regs, dets, sbox = [up(b) for b in regs], [up(b) for b in dets], up(sl.box)
        head = struct.pack(">BHH4HHB", VERSION << 4, h, w, *sbox.as_list(), side, len(caps))
        fields = [{"name": "header", "offset": 0, "length": HEADER},
                  {"name": "slice_jpeg2000", "offset": HEADER, "length": len(stream), "side": side}]
        data = b"" if max_bytes is None else head + stream
        src = "whole picture" if self.cfg.split == "single" else (
            "random" if self.cfg.split == "random" else
            getattr(self.detector, "last_source", "") or getattr(self.detector, "name", ""))
        return MultiScPayload(data, caps, regs, dets, sl.image, sbox, mask, (h, w), fields,
                              getattr(self.vlm, "name", type(self.vlm).__name__), src)

    # -- receiver ---------------------------------------------------------------------
    def decode(self, slice_data: bytes | None, missing=(), captions=(), correct: bool = True) -> MultiScReconstruction:
        """``missing``: byte ranges of ``slice_data`` the PHY lost; ``captions``:
        received caption texts (None or '' for a caption that never arrived)."""
        from ..jpeg2000 import decode as j2k_decode

        data = bytes(slice_data or b"")
        errors = []
        head_lost = not header_intact(data, missing)
        side = self.cfg.slice_side
        if head_lost:
            errors.append("slice header lost: no slice, size and position unknown")
            shape, box = (256, 256), Box(0, 0, 0, 0)
        else:
            v, h, w, x0, y0, x1, y1, side, _n = struct.unpack(">BHH4HHB", data[:HEADER])
            if v >> 4 != VERSION:
                errors.append(f"payload version {v >> 4}, expected {VERSION}")
            shape, box = (max(1, h), max(1, w)), Box(x0, y0, min(x1, w), min(y1, h))
        miss = [(max(0, a - HEADER), max(0, b - HEADER)) for a, b in (missing or ()) if b > HEADER]
        sl, failed = j2k_decode(data[HEADER:] if not head_lost else b"", (side, side), miss)
        if failed:
            errors.append("slice lost or undecodable: grey")
        recv = [c if c else "" for c in captions]
        corr = [self.corrector(c) if (correct and c) else c for c in recv]
        return MultiScReconstruction(sl, box, shape, recv, corr, bool(failed), errors)
