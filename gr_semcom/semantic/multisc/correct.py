"""Spelling correction of received captions (Multi-SC eq. 6, t_n = N_BART(t'_n)).

* :class:`BartCorrector` -- a BART-class seq2seq corrector through
  transformers (``AutoModelForSeq2SeqLM`` + ``AutoTokenizer``,
  ``from_pretrained`` from a local directory / HF cache); default
  ``oliverguhr/spelling-correction-english-base`` (BART-base fine-tuned to
  correct spelling), the paper's kind of model.
* :class:`SymSpellCorrector` -- the default that runs here: symspellpy's
  compound lookup (edit distance <= 2, word splits and merges) over its
  bundled English frequency dictionary, with the caption vocabulary of the
  region captioner weighted up. Rule-based: it fixes misspelled words but
  cannot use sentence context the way BART does, and it lower-cases and drops
  punctuation.
* :class:`NoCorrector` -- the received text as is ("without correction").
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

DEFAULT_BART = "oliverguhr/spelling-correction-english-base"


class NoCorrector:
    name = "none"

    def __call__(self, text: str) -> str:
        return text


@functools.lru_cache(maxsize=4)
def _symspell(extra: tuple, max_edit: int):
    import importlib.resources

    from symspellpy import SymSpell

    s = SymSpell(max_dictionary_edit_distance=max_edit, prefix_length=7)
    path = importlib.resources.files("symspellpy") / "frequency_dictionary_en_82_765.txt"
    s.load_dictionary(str(path), term_index=0, count_index=1)
    big = 10 ** 11  # above the dictionary's most frequent word: caption words win ties
    for w in extra:
        s.create_dictionary_entry(w, big)
    return s


class SymSpellCorrector:
    name = "symspell"

    def __init__(self, vocabulary=(), max_edit: int = 2):
        self.vocabulary = tuple(sorted({w.lower() for w in vocabulary if w.strip()}))
        self.max_edit = max_edit

    def __call__(self, text: str) -> str:
        t = re.sub(r"[^a-z0-9' ]+", " ", text.lower())
        t = " ".join(t.split())
        if not t:
            return ""
        s = _symspell(self.vocabulary, self.max_edit)
        res = s.lookup_compound(t, max_edit_distance=self.max_edit, transfer_casing=False)
        return res[0].term if res else t


class BartCorrector:
    name = "bart"

    def __init__(self, model, tokenizer, num_beams: int = 4, device: str = "cpu"):
        self.model, self.tokenizer = model.to(device).eval(), tokenizer
        self.num_beams, self.device = num_beams, device

    @classmethod
    def from_pretrained(cls, where: str = DEFAULT_BART, **kw) -> "BartCorrector":
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        from ..hub import load_model_and_processor

        model, tok = load_model_and_processor(AutoModelForSeq2SeqLM, AutoTokenizer, "BART spelling corrector", where,
                                              "tokenizer")
        return cls(model, tok, **kw)

    def __call__(self, text: str) -> str:
        import torch

        if not text.strip():
            return ""
        enc = self.tokenizer([text], return_tensors="pt", truncation=True, max_length=256).to(self.device)
        n = int(enc["input_ids"].shape[1])
        with torch.no_grad():
            out = self.model.generate(**enc, num_beams=self.num_beams, max_new_tokens=2 * n + 8, do_sample=False)
        return self.tokenizer.decode(out[0], skip_special_tokens=True).strip()


def make_corrector(kind: str = "symspell", model: str | None = None, vocabulary=()):
    if kind == "none":
        return NoCorrector()
    if kind == "symspell":
        return SymSpellCorrector(vocabulary)
    if kind == "bart":
        return BartCorrector.from_pretrained(model or DEFAULT_BART)
    raise ValueError(f"unknown corrector {kind!r} (symspell, bart, none)")


def tiny_bart(dirpath: str | Path, words=(), seed: int = 0) -> Path:
    """Save a randomly initialised tiny BART (config-built) with a word-level
    tokenizer, so tests run the real seq2seq ``from_pretrained`` + ``generate``."""
    import torch
    from transformers import BartConfig, BartForConditionalGeneration

    from .vlm import VOCABULARY, _word_tokenizer

    d = Path(dirpath)
    d.mkdir(parents=True, exist_ok=True)
    tok = _word_tokenizer(list(words) or VOCABULARY, ["<pad>", "<unk>", "<s>", "</s>"])
    torch.manual_seed(seed)
    cfg = BartConfig(vocab_size=len(tok), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                     decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
                     pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                     decoder_start_token_id=tok.eos_token_id, forced_eos_token_id=tok.eos_token_id)
    BartForConditionalGeneration(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d
