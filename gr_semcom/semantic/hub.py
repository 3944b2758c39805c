"""Loading third-party pretrained weights (transformers, diffusers) without
downloading: ``from_pretrained(..., local_files_only=True)`` on a local
directory or a Hugging Face hub id already in the HF cache. Missing weights
raise :class:`MissingWeights`, whose message names them and the command that
fetches them on a machine with internet (``semcom models download``)."""
from __future__ import annotations


class MissingWeights(RuntimeError):
    def __init__(self, what: str, where: str, exc: Exception | None = None):
        super().__init__(
            f"weights for {what} not found at {where!r} (local directory or Hugging Face cache; this machine "
            f"does not download at run time). On a machine with internet run\n"
            f"    semcom models download {where} --to DIR\nand copy DIR here (pass it as the model path), "
            f"or fill the HF cache there and copy it."
            + (f"\n({type(exc).__name__}: {str(exc)[:300]})" if exc else ""))
        self.what, self.where = what, where


def load_pretrained(cls, what: str, where: str, **kw):
    """``cls.from_pretrained(where, local_files_only=True, **kw)`` or MissingWeights."""
    try:
        return cls.from_pretrained(where, local_files_only=True, **kw)
    except (OSError, ValueError, EnvironmentError) as exc:
        raise MissingWeights(what, where, exc) from None


def load_model_and_processor(model_cls, processor_cls, what: str, where: str, part: str = "processor"):
    """(model, processor) of one checkpoint: a transformers model class and
    its processor / tokenizer class, both from ``where``; MissingWeights
    names ``what`` (and ``part`` for the processor)."""
    processor = load_pretrained(processor_cls, f"{what} ({part})", where)
    return load_pretrained(model_cls, what, where), processor
