"""LDPC codes: the alist parity-check matrices that ship with GNU Radio's gr-fec.

The encoder and decoder objects are gr-fec's C++ ones (``fec.ldpc_encoder_make``
and ``fec.ldpc_decoder``); this module only chooses files, knows their sizes and
the LLR convention, and reads the alist for the commpy cross-check.

Facts measured on GNU Radio 3.10.5 (see tests/test_fec.py):

* ``ldpc_encoder_make(alist)`` is systematic, information bits are the *last*
  k bits of each n-bit codeword.
* ``ldpc_decoder`` treats a positive input as bit 1 and forms its internal LLR
  as ``x / (2 sigma^2)``. We build it with ``sigma = 0.5`` and feed
  ``x = -LLR / 2`` where ``LLR = log P(0)/P(1)``, so it decodes with our own
  (CSI-weighted) LLRs rather than a fixed-noise assumption.
* ``fec.async_decoder`` sets the decoder frame size to ``int(n_in * rate)``;
  for the (1800, 902) code ``1800 * 902/1800`` rounds down to 901 and the
  block's thread dies. One extra zero LLR at the end of every PDU makes the
  product land on the right integer and is ignored by the decoder
  (:data:`ASYNC_DECODER_PAD`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

ASYNC_DECODER_PAD = 1

#: rate name -> (alist file, n, k). All three ship with Debian's gnuradio package.
LDPC_CODES = {
    "1/4": ("n_0500_k_0127_gap_21.alist", 500, 127),
    "2/5": ("n_1100_k_0442_gap_24.alist", 1100, 442),
    "1/2": ("n_1800_k_0902_gap_28.alist", 1800, 902),
}
CODE_RATES = ("none",) + tuple(LDPC_CODES)


def alist_dir() -> Path:
    """Directory of gr-fec's alist files (GR_SEMCOM_ALIST_DIR overrides)."""
    env = os.environ.get("GR_SEMCOM_ALIST_DIR")
    if env:
        return Path(env)
    try:
        from gnuradio import gr

        prefix = Path(gr.prefix())
    except Exception:  # pragma: no cover - GNU Radio absent
        prefix = Path("/usr")
    return prefix / "share" / "gnuradio" / "fec" / "ldpc"


@dataclass(frozen=True)
class CodeSpec:
    rate_name: str
    n: int
    k: int
    alist: Path | None

    @property
    def rate(self) -> float:
        return self.k / self.n


@lru_cache(maxsize=None)
def get_code(rate_name: str) -> CodeSpec:
    if rate_name in (None, "none", "uncoded"):
        return CodeSpec("none", 1, 1, None)
    if rate_name not in LDPC_CODES:
        raise ValueError(f"unknown LDPC rate {rate_name!r}; choose one of {CODE_RATES}")
    fname, n, k = LDPC_CODES[rate_name]
    path = alist_dir() / fname
    if not path.exists():
        raise FileNotFoundError(
            f"LDPC alist {path} not found: install Debian's gnuradio package "
            "(apt-get install gnuradio) or set GR_SEMCOM_ALIST_DIR")
    return CodeSpec(rate_name, n, k, path)


def read_alist(path: str | Path) -> np.ndarray:
    """Parity-check matrix H (m x n, uint8) from an alist file (MacKay format)."""
    rows = [ln.split() for ln in Path(path).read_text().splitlines()]
    n, m = int(rows[0][0]), int(rows[0][1])
    h = np.zeros((m, n), dtype=np.uint8)
    for j in range(n):
        for i in rows[4 + j]:
            if int(i) > 0:
                h[int(i) - 1, j] = 1
    return h


def make_encoder(code: CodeSpec):
    """gr-fec encoder object (uncoded frames bypass the encoder in phy_tx)."""
    from gnuradio import fec

    return fec.ldpc_encoder_make(str(code.alist))


def make_decoder(code: CodeSpec, max_iterations: int = 50):
    """gr-fec decoder object (uncoded frames bypass the decoder in phy_rx)."""
    from gnuradio import fec

    return fec.ldpc_decoder.make(str(code.alist), 0.5, int(max_iterations))


#: gr-fec's ldpc_decoder fails to converge on valid codewords when inputs are
#: large (measured: frames that decode at Es/N0 10 dB fail at 14 dB), so LLRs
#: are clipped; |LLR| = 24 means P(error) ~ 4e-11, no information is lost.
LLR_CLIP = 12.0


def llr_to_grfec(llr: np.ndarray) -> np.ndarray:
    """Our LLR (log P0/P1) -> the soft value gr-fec's ldpc_decoder expects."""
    return (-0.5 * np.clip(np.asarray(llr, dtype=np.float32), -LLR_CLIP, LLR_CLIP)).astype(np.float32)
