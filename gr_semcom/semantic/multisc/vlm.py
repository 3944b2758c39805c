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

from ..words import _PAL, _PAL_NAMES, PALETTE, AttributeCaptioner, colour_names, position_words  # noqa: F401,E501 (re-exported)

QUERY = "<image>\nRelay a brief, clear account of the picture shown."
DEFAULT_VLM = "llava-hf/llava-interleave-qwen-0.5b-hf"

def _object_caption_words() -> list[str]:
    """Every word ObjectCaptioner's captions can use (COCO nouns and plurals)."""
    from ..words import NOUNS, _COLOUR_WORD, _NUMBERS, plural
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
