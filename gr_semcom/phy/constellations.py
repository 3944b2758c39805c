"""Gray-coded constellations with unit average energy, and vectorised soft demapping.

One table per modulation is the single source of truth: the transmitter maps
bits with it, the receiver computes LLRs against it, and
:func:`gr_constellation` turns it into a ``gnuradio.digital.constellation``
object for GRC GUIs and GNU Radio blocks.

Why the table is written here rather than taken from gr-digital: in GNU Radio
3.10 ``constellation_qpsk()`` returns points of energy 4 from
``map_to_points_v``, ``qam_constellation(64)`` has energy 1.13 and
``constellation_16qam()`` is not Gray coded between nearest neighbours. A
unit-energy Gray table keeps Es/N0 exact and lets commpy (an independent
implementation) cross-check BER in the tests.

Bit conventions: bits are MSB first inside a symbol; LLRs are
``log P(b=0) / P(b=1)`` (positive favours 0).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["Constellation", "get_constellation", "MODULATIONS"]

MODULATIONS = ("bpsk", "qpsk", "16qam", "64qam")


def _gray_pam(bits_per_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Levels of a Gray-coded PAM and the bit label (as int) of each level."""
    m = 1 << bits_per_dim
    levels = np.arange(-(m - 1), m, 2, dtype=np.float64)  # -(m-1) .. (m-1)
    idx = np.arange(m)
    gray = idx ^ (idx >> 1)
    # Most negative level carries the label with MSB 1 so that bit 0 maps to
    # the positive half (matches the BPSK convention 0 -> +1).
    labels = gray[::-1].copy()
    return levels, labels


@dataclass(frozen=True)
class Constellation:
    name: str
    bits_per_symbol: int
    points: np.ndarray  # (M,) complex128, index = integer label (MSB first)

    @property
    def order(self) -> int:
        return self.points.size

    # -- mapping ---------------------------------------------------------
    def map_bits(self, bits: np.ndarray) -> np.ndarray:
        """Map a 0/1 array (length multiple of bits_per_symbol) to symbols."""
        bits = np.asarray(bits, dtype=np.uint8)
        k = self.bits_per_symbol
        if bits.size % k:
            raise ValueError(f"{bits.size} bits is not a multiple of {k} bits/symbol ({self.name})")
        weights = (1 << np.arange(k - 1, -1, -1)).astype(np.int64)
        labels = bits.reshape(-1, k).astype(np.int64) @ weights
        return self.points[labels].astype(np.complex64)

    def hard_bits(self, symbols: np.ndarray) -> np.ndarray:
        return (self.llr(symbols, np.ones(np.shape(symbols), np.float32)) < 0).astype(np.uint8)

    def nearest(self, y: np.ndarray) -> np.ndarray:
        """The constellation point nearest to each of ``y`` (complex64, same
        shape). Every constellation here is a square Gray QAM (or BPSK), so
        the nearest point is the nearest PAM level on each axis: O(N) instead
        of the O(N * M) distances of an argmin over the points, the same
        answer but for exact ties (tests/test_phy_numpy.py)."""
        y = np.asarray(y, dtype=np.complex64)
        out = np.empty(y.shape, np.complex64)
        if self.name == "bpsk":
            out.real = np.where(y.real < 0, np.float32(-1), np.float32(1))
            out.imag = 0
            return out
        _bpd, levels, _labels, scale = _pam_tables(self.name)
        m = levels.size
        s = np.float32(scale)
        for src, dst in ((y.real, out.real), (y.imag, out.imag)):
            k = np.clip(np.rint((src / s + np.float32(m - 1)) * np.float32(0.5)), 0, m - 1)
            dst[...] = (np.float32(2) * k - np.float32(m - 1)) * s
        return out

    # -- soft demapping --------------------------------------------------
    def llr(self, y: np.ndarray, noise_var: np.ndarray | float) -> np.ndarray:
        """Max-log LLRs of equalised symbols ``y`` with per-symbol noise variance.

        ``noise_var`` is the complex noise variance after equalisation (for a
        flat channel h and noise N0: N0/|h|^2). For Gray square QAM the in-phase
        and quadrature bits are separable, so each is a 1-D PAM problem: cost
        O(N * sqrt(M)) instead of O(N * M). Exact for BPSK and QPSK.
        Returns float32 array of length ``len(y) * bits_per_symbol``.
        """
        y = np.asarray(y, dtype=np.complex64).ravel()
        nv = np.broadcast_to(np.asarray(noise_var, dtype=np.float32), y.shape)
        nv = np.maximum(nv, 1e-12)
        if self.name == "bpsk":
            return (4.0 * y.real / nv).astype(np.float32)
        bpd, levels, labels, scale = _pam_tables(self.name)
        out = np.empty((y.size, 2 * bpd), dtype=np.float32)
        if bpd == 1:  # QPSK: two levels a0 (bit 0), a1 = -a0 per dimension, LLR = 2 (a0 - a1) x / nv
            a0 = scale * float(levels[labels == 0][0])
            g = (4.0 * a0 / nv).astype(np.float32)
            out[:, 0] = g * y.real
            out[:, 1] = g * y.imag
            return out.ravel()
        for part, col0 in ((y.real, 0), (y.imag, bpd)):
            # per-dimension noise variance is nv/2, so log p = -(x-a)^2 / nv + const
            d = -((part[:, None] - scale * levels[None, :]) ** 2) / nv[:, None]
            for b in range(bpd):
                bit = (labels >> (bpd - 1 - b)) & 1
                out[:, col0 + b] = d[:, bit == 0].max(axis=1) - d[:, bit == 1].max(axis=1)
        return out.ravel()


@lru_cache(maxsize=None)
def _pam_tables(name: str):
    bps = {"qpsk": 2, "16qam": 4, "64qam": 6}[name]
    bpd = bps // 2
    levels, labels = _gray_pam(bpd)
    m = levels.size
    scale = 1.0 / np.sqrt(2.0 * (m * m - 1) / 3.0)  # unit average energy of the square QAM
    return bpd, levels, labels, scale


@lru_cache(maxsize=None)
def get_constellation(name: str) -> Constellation:
    name = name.lower()
    if name == "bpsk":
        return Constellation("bpsk", 1, np.array([1.0 + 0j, -1.0 + 0j]))
    if name not in ("qpsk", "16qam", "64qam"):
        raise ValueError(f"unknown modulation {name!r}; choose one of {MODULATIONS}")
    bpd, levels, labels, scale = _pam_tables(name)
    m = levels.size
    pts = np.empty(m * m, dtype=np.complex128)
    for i in range(m):  # in-phase level
        for q in range(m):  # quadrature level
            label = (int(labels[i]) << bpd) | int(labels[q])
            pts[label] = scale * (levels[i] + 1j * levels[q])
    return Constellation(name, 2 * bpd, pts)


def gr_constellation(name: str):
    """A ``gnuradio.digital`` constellation object built from our table."""
    from gnuradio import digital  # local import: phy stays importable without GNU Radio

    c = get_constellation(name)
    rot = 2 if c.name == "bpsk" else 4
    return digital.constellation_calcdist(
        [complex(p) for p in c.points], list(range(c.order)), rot, 1,
        digital.constellation.AMPLITUDE_NORMALIZATION)
