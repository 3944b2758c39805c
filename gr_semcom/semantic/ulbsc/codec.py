"""ULBSC codec (Sec. III): image -> caption + saliency map -> payload, and back.

One implementation serves the CLI, the GNU Radio blocks and the tests.

Digital payload (bytes, the PDU that crosses CRC + LDPC + QAM)::

    byte 0      version (high nibble) | flags (bit 0: caption sent analog,
                bit 1: caption as vocabulary tokens, bit 2: no saliency field)
    bytes 1-4   source height, width (u16 big-endian)
    next        saliency codebook indices, grid^2 * ceil(log2 N_idx) bits, MSB
                first (absent in the caption-only form)
    rest        caption (digital caption mode only): the caption's tokens in
                the DeepSC vocabulary, ceil(log2 V) bits each, ended by <end>,
                when every word is in the vocabulary; else UTF-8

Analog caption mode (DeepSC, as the paper): the caption travels as the
``n_symbols`` complex symbols of the DeepSC encoder over an uncoded burst
(:mod:`gr_semcom.blocks.analog`); the digital payload then carries only the
header and the indices.

The caption-only form (``fields="caption"``, the paper's "OnlyCaption"
baseline, ``--scheme caption-only``) sends the header and the caption; its
receiver's map is the codebook's prior entry (what a 0-bit saliency channel
gives).

Lost bytes (a frame that failed CRC is an erasure; the PHY reports which byte
ranges are missing) never crash the decoder: a lost saliency field decodes
to the codebook's most probable entry (the learned prior) and is flagged
``saliency_erased``; a lost caption is flagged ``caption_erased``.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data import pdu_text
from ..images import MIN_SIDE, ImageError, load_image, resize
from .vq import SaliencyVQ, prepare_map, restore_map
from ...common import MODELS

VERSION = 1
FLAG_ANALOG = 0x01
FLAG_TOKENS = 0x02  # digital caption as DeepSC vocabulary indices instead of UTF-8
FLAG_NO_SALIENCY = 0x04  # caption-only form: no saliency indices
FIELDS = ("all", "caption")
DEFAULT_VQ = MODELS / "ulbsc_saliency_vq" / "model.safetensors"
DEFAULT_DEEPSC = MODELS / "deepsc_text" / "model.safetensors"
MAX_SIDE = 8192
WORK_SIDE = 1024  # images are downscaled to this longest side before detection


@dataclass
class UlbscPayload:
    data: bytes  # digital part
    caption: str
    saliency: np.ndarray  # transmitter's saliency map (HxW, [0, 1])
    indices: np.ndarray
    shape: tuple[int, int]
    symbols: np.ndarray | None = None  # DeepSC symbols (analog caption mode)
    fields: list = field(default_factory=list)  # [{name, offset, length, ...}]

    @property
    def bits(self) -> int:
        return 8 * len(self.data)

    def meta(self) -> dict:
        return {"scheme": "ulbsc", "version": VERSION, "caption_mode": "analog" if self.symbols is not None
                else "digital", "fields": [dict(f) for f in self.fields], "height": self.shape[0],
                "width": self.shape[1], "bytes": len(self.data),
                "analog_symbols": 0 if self.symbols is None else int(self.symbols.size)}


@dataclass
class UlbscReconstruction:
    caption: str
    saliency: np.ndarray  # HxW float map at the source resolution
    shape: tuple[int, int]
    indices: np.ndarray
    saliency_erased: bool = False
    caption_erased: bool = False
    errors: list = field(default_factory=list)

    def meta(self) -> dict:
        return {"scheme": "ulbsc", "caption": self.caption, "height": self.shape[0], "width": self.shape[1],
                "indices": [int(i) for i in self.indices], "saliency_erased": self.saliency_erased,
                "caption_erased": self.caption_erased, "errors": list(self.errors)}


class UlbscCodec:
    def __init__(self, vq: SaliencyVQ, detector=None, captioner=None, deepsc=None, caption_mode: str = "digital",
                 fields: str = "all"):
        if caption_mode not in ("digital", "analog"):
            raise ValueError("caption_mode is 'digital' or 'analog'")
        if fields not in FIELDS:
            raise ValueError(f"fields is one of {FIELDS}")
        if fields == "caption" and caption_mode == "analog":
            raise ValueError("the caption-only form sends its caption digitally (caption_mode 'digital')")
        self.fields = fields
        if caption_mode == "analog" and deepsc is None:
            raise ValueError("analog caption mode needs a DeepSC model")
        self.vq = vq.eval()
        self.detector = detector
        self.captioner = captioner
        self.deepsc = deepsc
        self.caption_mode = caption_mode
        cfg = vq.cfg
        self.index_bytes = math.ceil(cfg.bits_per_map / 8)
        self.header_bytes = 5
        with torch.no_grad():
            self._prior_index = int(vq.prior_logits.argmax())

    @classmethod
    def from_files(cls, vq_path=DEFAULT_VQ, deepsc_path=DEFAULT_DEEPSC, caption_mode: str = "digital",
                   detector=None, captioner=None, fields: str = "all") -> "UlbscCodec":
        for p, what in ((vq_path, "ULBSC saliency VQ"),) + (((deepsc_path, "DeepSC text JSCC"),)
                                                           if caption_mode == "analog" else ()):
            if not Path(p).is_file():
                raise FileNotFoundError(f"{what} weights not found at {p} (shipped in models/; see its README)")
        deepsc = None
        if caption_mode == "analog" or (deepsc_path and Path(deepsc_path).is_file()):
            from ..deepsc import DeepSC

            deepsc = DeepSC.load(deepsc_path)  # digital mode: its vocabulary codes the caption
        return cls(SaliencyVQ.load(vq_path), detector, captioner, deepsc, caption_mode, fields)

    # -- transmitter ------------------------------------------------------------
    def analyse(self, image) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        """(working image, saliency map, source shape); checks the input."""
        img = image if isinstance(image, np.ndarray) else load_image(image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ImageError(f"expected an HxWx3 uint8 RGB image, got {img.shape} {img.dtype}")
        h, w = img.shape[:2]
        if min(h, w) < MIN_SIDE:
            raise ImageError(f"image is {w}x{h}; both sides must be at least {MIN_SIDE} pixels")
        if max(h, w) > MAX_SIDE:
            raise ImageError(f"image is {w}x{h}; sides up to {MAX_SIDE} are accepted")
        work = img
        if max(h, w) > WORK_SIDE:
            s = WORK_SIDE / max(h, w)
            work = resize(img, (max(1, round(w * s)), max(1, round(h * s))))
        if self.detector is None:
            raise RuntimeError("no saliency detector configured")
        return work, self.detector(work), (h, w)

    def encode(self, image, caption: str | None = None) -> UlbscPayload:
        work, sal, (h, w) = self.analyse(image)
        if caption is None:
            if self.captioner is None:
                raise RuntimeError("no captioner configured and no caption given")
            caption = self.captioner(work)
        return self.encode_fields(caption, sal, (h, w))

    def encode_fields(self, caption: str, saliency: np.ndarray, shape: tuple[int, int]) -> UlbscPayload:
        idx = self.vq.encode(prepare_map(saliency, self.vq.cfg.size))[0].numpy()
        bits = self.vq.indices_to_bits(idx)
        bits = np.concatenate([bits, np.zeros(8 * self.index_bytes - bits.size, np.uint8)])
        ibytes = np.packbits(bits).tobytes()
        flags = FLAG_ANALOG if self.caption_mode == "analog" else 0
        fields = [{"name": "header", "offset": 0, "length": 5},
                  {"name": "saliency_indices", "offset": 5, "length": self.index_bytes,
                   "bits": int(self.vq.cfg.bits_per_map), "n_indices": int(idx.size)}]
        if self.fields == "caption":  # the transmitter's indices stay in the payload object, not on the air
            flags |= FLAG_NO_SALIENCY
            ibytes, fields = b"", fields[:1]
        h, w = shape
        head = struct.pack(">BHH", (VERSION << 4) | flags, min(h, 65535), min(w, 65535))
        symbols = None
        if self.caption_mode == "digital":
            cap, enc = self._caption_bytes(caption)
            if enc == "tokens":
                head = bytes([head[0] | FLAG_TOKENS]) + head[1:]
            fields.append({"name": "caption", "offset": 5 + len(ibytes), "length": len(cap),
                           "encoding": enc})
            data = head + ibytes + cap
        else:
            symbols = self.deepsc.text_to_symbols([caption])[0]
            data = head + ibytes
        return UlbscPayload(data, caption, saliency, idx, (h, w), symbols, fields)

    def _token_bits(self) -> int:
        return max(1, math.ceil(math.log2(len(self.deepsc.vocab))))

    def _caption_bytes(self, caption: str) -> tuple[bytes, str]:
        from ..data import normalise_text
        from ..deepsc import END

        v = self.deepsc.vocab if self.deepsc is not None and self.deepsc.vocab is not None else None
        words = normalise_text(caption).split()
        if v is None or not words or any(w not in v.stoi for w in words) \
                or v.decode([v.stoi[w] for w in words]) != caption.strip():
            return caption.encode("utf-8"), "utf-8"  # lossless fallback
        ids = np.array([v.stoi[w] for w in words] + [END], np.int64)
        n = self._token_bits()
        bits = ((ids[:, None] >> np.arange(n - 1, -1, -1)) & 1).astype(np.uint8).ravel()
        return np.packbits(bits).tobytes(), "tokens"

    def _caption_from_tokens(self, raw: bytes) -> str:
        n = self._token_bits()
        bits = np.unpackbits(np.frombuffer(raw, np.uint8))
        bits = bits[: bits.size // n * n].reshape(-1, n).astype(np.int64)
        ids = (bits << np.arange(n - 1, -1, -1)).sum(1)
        return self.deepsc.vocab.decode(ids)

    # -- receiver ---------------------------------------------------------------
    def decode(self, data: bytes | None, missing=(), symbols: np.ndarray | None = None) -> UlbscReconstruction:
        """``missing``: (start, end) byte ranges the PHY could not deliver."""
        data = bytes(data or b"")
        errors = []
        # bytes the PHY reported missing, and any the (short) payload lacks
        lost = np.zeros(max(len(data), self.header_bytes + self.index_bytes), bool)
        lost[len(data):] = True
        for a, b in missing or ():
            lost[int(a):int(b)] = True
        header_ok = not lost[: self.header_bytes].any()
        if header_ok:
            vf, h, w = struct.unpack(">BHH", data[:5])
            if vf >> 4 != VERSION:
                errors.append(f"payload version {vf >> 4}, expected {VERSION}")
                header_ok = False
        if not header_ok:
            h, w, vf = self.vq.cfg.size * 8, self.vq.cfg.size * 8, 0
            errors.append("header lost: output size unknown, using default")
        shape = (max(h, 1), max(w, 1))
        no_sal = bool(vf & FLAG_NO_SALIENCY) if header_ok else self.fields == "caption"
        a, b = self.header_bytes, self.header_bytes + (0 if no_sal else self.index_bytes)
        sal_erased = bool(lost[a:b].any())
        if no_sal:  # caption-only form: the receiver has the prior, nothing was lost
            idx = np.full(self.vq.cfg.n_indices, self._prior_index)
        elif sal_erased:
            idx = np.full(self.vq.cfg.n_indices, self._prior_index)
            errors.append("saliency indices lost: codebook prior used")
        else:
            bits = np.unpackbits(np.frombuffer(data[a:b], np.uint8))[: self.vq.cfg.bits_per_map]
            idx = self.vq.bits_to_indices(bits)
        sal = self.decode_map(idx, shape)
        analog = bool(vf & FLAG_ANALOG) if header_ok else self.caption_mode == "analog"
        cap_erased = False
        if analog:
            if symbols is None or self.deepsc is None or np.asarray(symbols).size < self.deepsc.cfg.n_symbols:
                caption, cap_erased = "", True
                errors.append("analog caption symbols missing")
            else:
                caption = self.deepsc.symbols_to_text(np.asarray(symbols)[: self.deepsc.cfg.n_symbols])[0]
        else:
            # the padding past len(data) is no caption byte; no byte past the fields before it: nothing came
            cap_erased = bool(lost[b:max(b, len(data))].any()) or len(data) <= b
            raw = data[b:]
            if header_ok and vf & FLAG_TOKENS:
                if self.deepsc is None:
                    caption, cap_erased = "", True
                    errors.append("caption sent as tokens but no DeepSC vocabulary loaded")
                else:
                    caption = self._caption_from_tokens(raw)
            else:
                caption = pdu_text(raw)
            if cap_erased:
                errors.append("caption bytes lost")
        return UlbscReconstruction(caption, sal, shape, idx, sal_erased, cap_erased, errors)

    def decode_map(self, idx: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        m = self.vq.decode(torch.as_tensor(np.asarray(idx, np.int64))[None])
        return restore_map(m, shape).astype(np.float32)

    def prior_map(self, shape: tuple[int, int]) -> np.ndarray:
        """What a receiver without saliency knows: the codebook's prior entry."""
        return self.decode_map(np.full(self.vq.cfg.n_indices, self._prior_index), shape)
