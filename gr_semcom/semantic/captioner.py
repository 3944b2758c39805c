"""Image-to-text behind one small interface (ULBSC Sec. III-A uses BLIP).

* :class:`BlipCaptioner` -- transformers' ``BlipForConditionalGeneration``
  loaded with ``from_pretrained(local_files_only=True)`` from a local
  directory or the HF cache (default ``Salesforce/blip-image-captioning-base``);
  missing weights raise :class:`~gr_semcom.semantic.hub.MissingWeights` naming them and
  the ``semcom models download`` command.
* :class:`FixedCaptioner` -- a caption given by the user (``--caption``).
* :class:`SidecarCaptioner` -- reads ``IMAGE.txt`` next to the image (the
  shipped example images carry hand-written captions, marked as such).

Any object with a ``name`` and ``__call__(image HxWx3 uint8) -> str`` plugs in.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

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
    """``auto``: a given caption, else a sidecar .txt, else BLIP (which needs its weights)."""
    if caption:
        return FixedCaptioner(caption)
    if kind == "sidecar" or (kind == "auto" and image_path):
        try:
            return SidecarCaptioner(image_path)
        except (FileNotFoundError, TypeError):
            if kind == "sidecar":
                raise
    if kind in ("auto", "blip"):
        return BlipCaptioner.from_pretrained(model, device=device)
    raise ValueError(f"unknown captioner {kind!r} (auto, blip, sidecar, or --caption TEXT)")


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
