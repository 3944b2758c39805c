"""Region captions (Multi-SC eq. 3: e_n = F_I2T(q, i_n) with the fixed query q).

* :class:`LlavaCaptioner` -- a LLaVA-class VLM through transformers
  (``AutoModelForImageTextToText`` + ``AutoProcessor``, ``from_pretrained`` from
  a local directory / HF cache). Default ``llava-hf/llava-interleave-qwen-0.5b-hf``:
  LLaVA with a 0.5B Qwen language model, the class of the paper's light
  variant (LLaVA + Qwen1.5-0.5B). Query: :data:`QUERY`, the paper's.
* :class:`AttributeCaptioner` -- the default that runs here without weights.
  No learned recognition: it describes a region by measured attributes
  (its two dominant colours named from a fixed palette, brightness, texture
  from the gradient energy, size and position in the picture, and whether it
  holds the main object). Sentences like "a large dark green and grey textured
  region at the top left of the picture". They are image-dependent, carry
  real layout/colour information to a generator, and exercise the text path,
  the correction and the metrics exactly as VLM captions do; they do not name
  objects, which a VLM does.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

QUERY = "<image>\nRelay a brief, clear account of the picture shown."
DEFAULT_VLM = "llava-hf/llava-interleave-qwen-0.5b-hf"

# fixed palette (RGB) -> name; nearest in RGB
PALETTE = {
    "black": (20, 20, 20), "grey": (128, 128, 128), "white": (240, 240, 240), "red": (200, 30, 30),
    "orange": (240, 140, 30), "yellow": (235, 220, 50), "green": (60, 160, 60), "dark green": (30, 80, 35),
    "blue": (40, 80, 200), "light blue": (140, 190, 235), "navy": (20, 30, 90), "purple": (120, 50, 150),
    "pink": (235, 150, 180), "brown": (120, 75, 40), "beige": (215, 195, 160), "olive": (120, 120, 40),
    "teal": (30, 130, 130), "silver": (190, 190, 195),
}
_PAL_NAMES = list(PALETTE)
_PAL = np.array([PALETTE[k] for k in _PAL_NAMES], np.float32)


def _object_caption_words() -> list[str]:
    """Every word ObjectCaptioner's captions can use (COCO nouns and plurals)."""
    from ..captioner import NOUNS, _COLOUR_WORD, _NUMBERS, plural
    from ..detect.centernet import COCO_CLASSES

    nouns = {NOUNS.get(c, c) for c in COCO_CLASSES}
    words = set("a an close up of on with and in at the center background many picture".split())
    words |= set(_NUMBERS) | set(_COLOUR_WORD.values())
    for n in nouns | set(COCO_CLASSES):
        words |= set(n.split()) | set(plural(n).split())
    return sorted(words)


# every word the attribute and object captions use (the corrector's dictionary gets them)
VOCABULARY = sorted({w for n in _PAL_NAMES for w in n.split()} | set(
    "a the and of at in with picture region main object small medium large whole smooth textured detailed "
    "dark bright top bottom left right centre middle".split()) | set(_object_caption_words()))


def colour_names(pixels: np.ndarray, k: int = 2) -> list[str]:
    """Names of the ``k`` most frequent palette colours of ``pixels`` (Nx3)."""
    px = np.asarray(pixels, np.float32).reshape(-1, 3)
    if px.shape[0] > 4096:
        px = px[np.linspace(0, px.shape[0] - 1, 4096).astype(int)]
    d = ((px[:, None, :] - _PAL[None]) ** 2).sum(-1)
    counts = np.bincount(d.argmin(1), minlength=len(_PAL_NAMES))
    order = [i for i in np.argsort(-counts, kind="stable") if counts[i] > 0][:k]
    return [_PAL_NAMES[i] for i in order]


def position_words(cx: float, cy: float) -> str:
    v = "top" if cy < 1 / 3 else ("bottom" if cy > 2 / 3 else "")
    h = "left" if cx < 1 / 3 else ("right" if cx > 2 / 3 else "")
    if not v and not h:
        return "centre"
    return " ".join(x for x in (v, h) if x)


class AttributeCaptioner:
    name = "attributes"

    def describe(self, crop: np.ndarray, box=None, shape=None, main_fraction: float = 0.0) -> str:
        from ..images import resize

        im = np.asarray(crop, np.uint8)
        if im.shape[0] * im.shape[1] > 128 * 128:
            s = 128 / max(im.shape[:2])
            im = resize(im, (max(1, round(im.shape[1] * s)), max(1, round(im.shape[0] * s))))
        cols = colour_names(im, 2)
        grey = im.astype(np.float32).mean(-1)
        if min(grey.shape) >= 2:
            gy, gx = np.gradient(grey)
            energy = float(np.sqrt(gx ** 2 + gy ** 2).mean())
        else:  # 1-pixel-wide crop: no gradient to measure
            energy = 0.0
        texture = "smooth" if energy < 4 else ("textured" if energy < 12 else "detailed")
        light = float(grey.mean())
        tone = "dark " if light < 80 else ("bright " if light > 180 else "")
        colour = " and ".join(cols)
        if box is None or shape is None:
            return f"a {tone}{texture} picture mostly {colour}"
        h, w = shape
        frac = box.area / float(h * w)
        if frac > 0.9:
            where, size = "whole picture", "whole"
        else:
            cx, cy = box.centre
            where = position_words(cx / w, cy / h)
            size = "small" if frac < 0.1 else ("medium" if frac < 0.35 else "large")
        if main_fraction > 0.5:
            return f"the main object {tone}{texture} {colour} at the {where}".replace("at the whole picture",
                                                                                     "in the whole picture")
        if size == "whole":
            return f"a {tone}{texture} picture mostly {colour}"
        return f"a {size} {tone}{texture} {colour} region at the {where} of the picture"

    def __call__(self, image: np.ndarray) -> str:
        return self.describe(image)


class LlavaCaptioner:
    name = "llava"

    def __init__(self, model, processor, query: str = QUERY, max_new_tokens: int = 40, device: str = "cpu"):
        self.model, self.processor = model.to(device).eval(), processor
        self.query, self.max_new_tokens, self.device = query, max_new_tokens, device

    @classmethod
    def from_pretrained(cls, where: str = DEFAULT_VLM, **kw) -> "LlavaCaptioner":
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from ..hub import load_model_and_processor

        model, proc = load_model_and_processor(AutoModelForImageTextToText, AutoProcessor, "LLaVA-class VLM", where)
        return cls(model, proc, **kw)

    def prompt(self) -> str:
        """The paper's query in the model's chat format (its chat template if
        the processor has one, else LLaVA-1.5's USER/ASSISTANT format)."""
        if getattr(self.processor, "chat_template", None):
            text = self.query.replace("<image>\n", "").replace("<image>", "")
            conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
            return self.processor.apply_chat_template(conv, add_generation_prompt=True)
        return f"USER: {self.query} ASSISTANT:"

    def __call__(self, image: np.ndarray) -> str:
        import torch
        from PIL import Image

        inputs = self.processor(images=Image.fromarray(np.asarray(image, np.uint8)), text=self.prompt(),
                                return_tensors="pt").to(self.device)
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new = out[0, inputs["input_ids"].shape[1]:]
        return self.processor.decode(new, skip_special_tokens=True).strip()

    def describe(self, crop, box=None, shape=None, main_fraction: float = 0.0) -> str:
        return self(crop)


def make_vlm(kind: str = "auto", model: str | None = None, **kw):
    """``auto``: :class:`~gr_semcom.semantic.captioner.ObjectCaptioner` (names
    COCO objects; offline detector made at set-up) when installed, else
    ``attributes``; ``objects``; ``llava`` (needs its weights)."""
    if kind in ("auto", "objects"):
        from ..captioner import ObjectCaptioner
        from ..detect.centernet import CenterNetDetector

        if kind == "objects" or CenterNetDetector.available():
            return ObjectCaptioner()
        kind = "attributes"
    if kind == "attributes":
        return AttributeCaptioner()
    if kind == "llava":
        return LlavaCaptioner.from_pretrained(model or DEFAULT_VLM, **kw)
    raise ValueError(f"unknown VLM {kind!r} (auto, objects, attributes, llava)")


def _word_tokenizer(words: list[str], specials: list[str]):
    """A real fast tokenizer (tokenizers WordLevel + whitespace) over ``words``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(specials + [w for w in words if w not in specials])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", eos_token="</s>",
                                   bos_token="<s>")


def tiny_llava(dirpath: str | Path, seed: int = 0) -> Path:
    """Save a randomly initialised tiny LLaVA (CLIP vision tower + Llama LM,
    config-built, word-level tokenizer, LlavaProcessor) so tests run the real
    ``from_pretrained`` + ``generate`` path without a download."""
    import torch
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    d = Path(dirpath)
    d.mkdir(parents=True, exist_ok=True)
    specials = ["<pad>", "<unk>", "<s>", "</s>", "<image>"]
    words = ["USER:", "ASSISTANT:", "Relay", "a", "brief,", "clear", "account", "of", "the", "picture", "shown."] \
        + VOCABULARY
    tok = _word_tokenizer(words, specials)
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    torch.manual_seed(seed)
    cfg = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, image_size=32, patch_size=8).to_dict(),
        text_config=LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                                pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                                eos_token_id=tok.eos_token_id).to_dict(),
        image_token_id=tok.convert_tokens_to_ids("<image>"), vision_feature_layer=-1,
        vision_feature_select_strategy="default", image_seq_length=16)
    LlavaForConditionalGeneration(cfg).save_pretrained(d)
    ip = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=8, vision_feature_select_strategy="default",
                   image_token="<image>", num_additional_image_tokens=1).save_pretrained(d)
    return d
