"""Captions as uncoded channel symbols (the Multi-SC text path that makes
spelling errors: no FEC, no CRC, so bit errors become wrong letters, the
noise the paper's BART stage corrects).

6 bits per character over a 63-character alphabet (lower case, digits, common
punctuation; index 63 ends the text). Upper case is sent as lower case;
other characters as '?'. Bits map to QPSK (Gray) with unit average power.
"""
from __future__ import annotations

import numpy as np

ALPHABET = " abcdefghijklmnopqrstuvwxyz0123456789.,;:'\"-!?()/&%+=*#@$_<>[]\n"
END = 63
BITS = 6
assert len(ALPHABET) == END, len(ALPHABET)
_INDEX = {c: i for i, c in enumerate(ALPHABET)}


def text_to_bits(text: str) -> np.ndarray:
    ids = [_INDEX.get(c, _INDEX["?"]) for c in text.lower()] + [END]
    ids = np.array(ids, np.int64)
    return ((ids[:, None] >> np.arange(BITS - 1, -1, -1)) & 1).astype(np.uint8).ravel()


def bits_to_text(bits: np.ndarray) -> str:
    b = np.asarray(bits, np.int64).ravel()
    b = b[: b.size // BITS * BITS].reshape(-1, BITS)
    ids = (b << np.arange(BITS - 1, -1, -1)).sum(1)
    out = []
    for i in ids:
        if i == END:
            break
        out.append(ALPHABET[i])
    return "".join(out)


def char_error_rate(hyp: str, ref: str) -> float:
    """Levenshtein distance / len(ref) (0 for two empty strings)."""
    a, b = ref, hyp
    if not a:
        return 0.0 if not b else 1.0
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1] / len(a)
