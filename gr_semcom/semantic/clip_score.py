"""CLIP cosine similarity of two images (Multi-SC's "cosine similarity" of the
reconstructed and the source image; also the CLIP image-text score).

``ClipSimilarity.from_pretrained`` loads transformers' ``CLIPModel`` +
``CLIPProcessor`` from a local directory or the HF cache (default
``openai/clip-vit-base-patch32``); nothing is downloaded. These machines have
no CLIP weights: :func:`try_clip` returns None then and the metric is NaN;
the tests run the same code on a tiny config-built CLIP (:func:`tiny_clip`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

DEFAULT_CLIP = "openai/clip-vit-base-patch32"


class ClipSimilarity:
    def __init__(self, model, processor, device: str = "cpu"):
        self.model, self.processor, self.device = model.to(device).eval(), processor, device

    @classmethod
    def from_pretrained(cls, where: str = DEFAULT_CLIP, **kw) -> "ClipSimilarity":
        from transformers import CLIPModel, CLIPProcessor

        from .hub import load_model_and_processor

        model, proc = load_model_and_processor(CLIPModel, CLIPProcessor, "CLIP", where)
        return cls(model, proc, **kw)

    def image_features(self, images: list[np.ndarray]):
        import torch

        inputs = self.processor(images=[np.asarray(i, np.uint8) for i in images], return_tensors="pt").to(self.device)
        with torch.no_grad():
            f = self.model.get_image_features(**inputs)
        f = getattr(f, "pooler_output", f)
        return torch.nn.functional.normalize(f.float(), dim=-1)

    def text_features(self, texts: list[str]):
        import torch

        inputs = self.processor(text=list(texts), return_tensors="pt", padding=True, truncation=True).to(self.device)
        with torch.no_grad():
            f = self.model.get_text_features(**inputs)
        f = getattr(f, "pooler_output", f)
        return torch.nn.functional.normalize(f.float(), dim=-1)

    def image_similarity(self, a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
        """Cosine similarity of CLIP image embeddings, pairwise a[i] vs b[i]."""
        return (self.image_features(a) * self.image_features(b)).sum(-1).cpu().numpy()

    def text_image_score(self, images: list[np.ndarray], texts: list[str]) -> np.ndarray:
        """CLIP score (Hessel et al. 2021): 100 * max(cos(image, text), 0)."""
        return 100 * np.maximum((self.image_features(images) * self.text_features(texts)).sum(-1).cpu().numpy(), 0)


def try_clip(where: str | None = None):
    """The CLIP scorer if its weights are present, else None."""
    from .hub import MissingWeights

    try:
        return ClipSimilarity.from_pretrained(where or DEFAULT_CLIP)
    except (MissingWeights, ImportError):
        return None


def tiny_clip(dirpath: str | Path, seed: int = 0) -> Path:
    """Save a tiny randomly initialised CLIP (config-built) + processor."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from .multisc.vlm import VOCABULARY, _word_tokenizer

    d = Path(dirpath)
    d.mkdir(parents=True, exist_ok=True)
    tok = _word_tokenizer(VOCABULARY, ["<pad>", "<unk>", "<s>", "</s>"])
    torch.manual_seed(seed)
    cfg = CLIPConfig(text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, max_position_embeddings=64,
                                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                                      eos_token_id=tok.eos_token_id),
                     vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, image_size=32, patch_size=8),
                     projection_dim=16)
    CLIPModel(cfg).save_pretrained(d)
    ip = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=ip, tokenizer=tok).save_pretrained(d)
    return d
