"""Single-carrier burst format and the per-burst receiver DSP (numpy).

Burst, in symbols (rate 1/T)::

    | preamble (64 QPSK) | P pilots | D data | P pilots | D data | ... | P pilots | guard zeros |

* preamble: 64 pseudo-random QPSK chips; the first 32 are the sync word that
  GNU Radio's ``corr_est_cc`` correlates against; the whole 64 serve fine
  timing, CFO and the first channel estimate.
* pilots: groups of ``pilot_len`` known BPSK symbols every ``pilot_spacing``
  data symbols and after the last data block, so the channel is interpolated
  (never extrapolated) across the frame: the receiver tracks flat fading and
  residual phase from pilots (no genie CSI unless asked).
* pulse: root-raised cosine, unit energy, ``sps`` samples per symbol.

SNR convention: symbols have unit average energy, the RRC has unit energy, so
Es/N0 = 1 / (complex noise variance per sample) at the channel input; Eb/N0 =
Es/N0 / (bits per symbol * code rate), with preamble/pilot overhead *not*
charged to Eb (stated in benchmarks/README.md; the overhead is reported).

Why this part is numpy and not a chain of GNU Radio stream blocks: the sample
work (RRC filters, correlation detection, burst extraction, LDPC) is GNU
Radio's C++; what is left is per-burst feed-forward estimation (fine timing,
CFO, pilot-interpolated channel, per-symbol noise variance for CSI-weighted
LLRs). No gr-digital block does pilot-aided single-carrier burst equalisation
with CSI-weighted LLRs; feedback loops (Costas, symbol_sync) need a run-in at
every burst start. Everything here is vectorised over the burst.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import numpy as np

from . import kernels as _k
from .constellations import _pam_tables, get_constellation
from .fec import get_code

PREAMBLE_LEN = 64
SYNC_LEN = 32


def _qpsk_preamble(seed: int = 640, n: int = 64) -> np.ndarray:
    """Pseudo-random unit-energy QPSK chips. Seed 640 has the lowest peak
    aperiodic autocorrelation sidelobe (8.6 of 64) among seeds 0..1999.
    QPSK rather than a BPSK m-sequence: random BPSK *data* matches a BPSK
    sync word chip for chip, so 32 data symbols often correlate like a
    preamble (measured: ~20 false detections per BPSK burst); against complex
    chips BPSK data correlates like noise."""
    q = np.random.RandomState(seed).randint(0, 4, n)
    return np.exp(1j * (np.pi / 4 + np.pi / 2 * q)).astype(np.complex64)


PREAMBLE = _qpsk_preamble()  # 64 chips
_PILOT_SEQ = (1.0 - 2.0 * np.array([0, 1, 1, 0, 1, 0, 0, 1], dtype=np.float64)).astype(np.complex64)


def rrc_taps(sps: int, rolloff: float, span: int) -> np.ndarray:
    """Unit-energy root-raised-cosine taps, ``span`` symbols long (odd length)."""
    n = np.arange(-span * sps // 2, span * sps // 2 + 1, dtype=np.float64) / sps
    a = rolloff
    h = np.empty_like(n)
    for i, t in enumerate(n):
        if abs(t) < 1e-12:
            h[i] = 1.0 - a + 4 * a / np.pi
        elif a > 0 and abs(abs(t) - 1 / (4 * a)) < 1e-9:
            h[i] = a / np.sqrt(2) * ((1 + 2 / np.pi) * np.sin(np.pi / (4 * a)) + (1 - 2 / np.pi) * np.cos(np.pi / (4 * a)))
        else:
            h[i] = (np.sin(np.pi * t * (1 - a)) + 4 * a * t * np.cos(np.pi * t * (1 + a))) / (np.pi * t * (1 - (4 * a * t) ** 2))
    return (h / np.sqrt(np.sum(h * h))).astype(np.float32)


@dataclass(frozen=True)
class CodedFrame:
    """The fields and per-frame sizes shared by the single-carrier and OFDM
    specs, so that ``frame_encoder``/``frame_decoder`` serve both."""

    modulation: str = "qpsk"
    code_rate: str = "1/2"
    codewords: int = 4

    @cached_property
    def constellation(self):
        return get_constellation(self.modulation)

    @cached_property
    def code(self):
        return get_code(self.code_rate)

    @property
    def info_bits(self) -> int:
        """Bits into the encoder per frame (k * codewords; 8*capacity for uncoded)."""
        if self.code.alist is None:
            return 8 * self.capacity
        return self.code.k * self.codewords

    @property
    def capacity(self) -> int:
        """Frame payload bytes (header + data + CRC) that fit in one burst."""
        if self.code.alist is None:
            return self.code_bits_uncoded // 8
        return (self.code.k * self.codewords) // 8

    @property
    def code_bits_uncoded(self) -> int:
        # uncoded frames carry as many bits as a rate-1/2 frame of the same size
        return 1800 * self.codewords // 8 * 8

    @property
    def coded_bits(self) -> int:
        if self.code.alist is None:
            return self.code_bits_uncoded
        return self.code.n * self.codewords


@dataclass(frozen=True)
class FrameSpec(CodedFrame):
    """Everything both ends must agree on. One object drives TX, RX, CLI and GRC."""

    sps: int = 2
    rolloff: float = 0.35
    rrc_span: int = 11
    pilot_spacing: int = 48
    pilot_len: int = 4
    guard: int = 24  # zero symbols after each burst

    def __post_init__(self):
        get_constellation(self.modulation)
        get_code(self.code_rate)
        if self.codewords < 1 or self.sps < 2 or self.pilot_spacing < 1 or self.pilot_len < 1:
            raise ValueError(f"invalid frame parameters: {self}")

    # -- sizes (constellation, code, info_bits, capacity, coded_bits: CodedFrame)
    @property
    def n_data(self) -> int:
        bps = self.constellation.bits_per_symbol
        return -(-self.coded_bits // bps)

    @property
    def n_groups(self) -> int:
        """Pilot groups (one before every data block and one at the end)."""
        return -(-self.n_data // self.pilot_spacing) + 1

    @property
    def n_symbols(self) -> int:
        """Preamble + data + pilots (guard excluded)."""
        return PREAMBLE_LEN + self.n_data + self.n_groups * self.pilot_len

    @property
    def flush_symbols(self) -> int:
        """Zero symbols after the last burst of a PDU (see burst_mapper)."""
        return 2 * SYNC_LEN + self.rrc_span + 64

    @property
    def burst_samples(self) -> int:
        return (self.n_symbols + self.guard) * self.sps

    @cached_property
    def rrc(self) -> np.ndarray:
        return rrc_taps(self.sps, self.rolloff, self.rrc_span)

    @property
    def sync_word(self) -> np.ndarray:
        return PREAMBLE[:SYNC_LEN]

    @cached_property
    def layout(self):
        """Indices (into the burst's symbols) of data and pilots, and pilot values."""
        data_idx = np.empty(self.n_data, dtype=np.int64)
        pilot_idx = np.empty(self.n_groups * self.pilot_len, dtype=np.int64)
        pos = PREAMBLE_LEN
        d = 0
        for g in range(self.n_groups):
            pilot_idx[g * self.pilot_len:(g + 1) * self.pilot_len] = np.arange(pos, pos + self.pilot_len)
            pos += self.pilot_len
            take = min(self.pilot_spacing, self.n_data - d)
            data_idx[d:d + take] = np.arange(pos, pos + take)
            pos += take
            d += take
        reps = -(-pilot_idx.size // _PILOT_SEQ.size)
        pilots = np.tile(_PILOT_SEQ, reps)[:pilot_idx.size]
        return data_idx, pilot_idx, pilots

    @property
    def overhead(self) -> float:
        """Fraction of transmitted symbols that carry no code bits."""
        return 1.0 - self.n_data / (self.n_symbols + self.guard)

    def describe(self) -> dict:
        return {
            "modulation": self.modulation, "code_rate": self.code_rate,
            "ldpc_n": self.code.n if self.code.alist else None,
            "ldpc_k": self.code.k if self.code.alist else None,
            "codewords_per_frame": self.codewords, "sps": self.sps, "rolloff": self.rolloff,
            "payload_bytes_per_frame": self.capacity, "symbols_per_burst": self.n_symbols + self.guard,
            "samples_per_burst": self.burst_samples, "overhead": round(self.overhead, 4),
        }

    # -- transmitter -------------------------------------------------------
    def build_symbols(self, coded_bits: np.ndarray) -> np.ndarray:
        """Coded bits (0/1, exactly ``coded_bits`` of them) -> burst symbols incl. guard."""
        coded_bits = np.asarray(coded_bits, dtype=np.uint8)
        if coded_bits.size != self.coded_bits:
            raise ValueError(f"expected {self.coded_bits} coded bits, got {coded_bits.size}")
        bps = self.constellation.bits_per_symbol
        pad = self.n_data * bps - coded_bits.size
        if pad:
            coded_bits = np.concatenate([coded_bits, np.zeros(pad, np.uint8)])
        return self.place_data(self.constellation.map_bits(coded_bits))

    def place_data(self, data: np.ndarray) -> np.ndarray:
        """Data symbols (at most ``n_data``; the rest of the slots stay 0) ->
        burst symbols incl. preamble, pilots and guard. Shared by the coded
        mapper and the analog (JSCC symbol) mapper."""
        data_idx, pilot_idx, pilots = self.layout
        sym = np.zeros(self.n_symbols + self.guard, dtype=np.complex64)
        sym[:PREAMBLE_LEN] = PREAMBLE
        sym[pilot_idx] = pilots
        sym[data_idx[: len(data)]] = data
        return sym


_warm: dict = {}  # kernel sets loaded in this process (BurstDemodulator.warm_up)


@dataclass
class BurstResult:
    ok: bool
    llr: np.ndarray | None = None  # log P0/P1 of the coded bits
    snr_db: float = float("nan")
    cfo: float = float("nan")  # cycles per symbol
    timing: float = float("nan")  # preamble start, samples into the burst
    noise_var: float = float("nan")
    symbols: np.ndarray | None = None  # equalised data symbols
    reason: str = ""
    extra: dict = field(default_factory=dict)


def _cubic(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Cubic Lagrange interpolation of ``x`` at fractional positions ``t``."""
    i = np.floor(t).astype(np.int64)
    mu = (t - i).astype(np.float32)
    i = np.clip(i, 1, x.size - 3)
    cm1 = -mu * (mu - 1) * (mu - 2) / 6
    c0 = (mu + 1) * (mu - 1) * (mu - 2) / 2
    c1 = -(mu + 1) * mu * (mu - 2) / 2
    c2 = (mu + 1) * mu * (mu - 1) / 6
    return cm1 * x[i - 1] + c0 * x[i] + c1 * x[i + 1] + c2 * x[i + 2]


def _frac_delay(x: np.ndarray, delay: float) -> np.ndarray:
    """Band-limited (FFT) advance of ``x`` by ``delay`` samples: y[n] = x(n + delay)."""
    n = x.size
    f = np.fft.fftfreq(n)
    return np.fft.ifft(np.fft.fft(x) * np.exp(2j * np.pi * f * delay)).astype(np.complex64)


def simulated_burst(spec: "FrameSpec", coded_bits: np.ndarray, esn0_db: float, cfo: float, delay: float,
                    rng: np.random.Generator) -> np.ndarray:
    """A burst as :class:`BurstDemodulator` receives it, made in numpy (the
    reference channel of the PHY tests and ``benchmarks/demod_time.py``):
    RRC-shaped symbols after 7 zero samples, delayed by ``delay`` samples
    (FFT fractional delay), rotated by ``cfo`` cycles per symbol, AWGN at
    ``esn0_db`` per symbol, matched-filtered."""
    sym = spec.build_symbols(coded_bits)
    up = np.zeros(sym.size * spec.sps, np.complex64)
    up[:: spec.sps] = sym
    tx = np.concatenate([np.zeros(7, np.complex64), np.convolve(up, spec.rrc)])
    tx = _frac_delay(tx, -delay) * np.exp(2j * np.pi * cfo / spec.sps * np.arange(tx.size))
    nv = 10 ** (-esn0_db / 10)
    rx = tx + np.sqrt(nv / 2) * (rng.standard_normal(tx.size) + 1j * rng.standard_normal(tx.size))
    return np.convolve(rx, spec.rrc)[spec.rrc.size // 2:]


TIMING_GRID = np.linspace(-1.0, 1.0, 33)  # fine-timing candidates, samples around the coarse start
CFO_NFFT = 2048  # bins of the preamble periodogram (CFO resolution before refinement)


def _phasor(f: float, n: int, block: int = 64) -> np.ndarray:
    """exp(2j pi f k), k < n, as complex64: an outer product of a block of
    ``block`` rotations and one rotation per block (n/64 + 64 complex
    exponentials instead of n; error ~1e-7 in float32)."""
    nb = -(-n // block)
    inner = np.exp(2j * np.pi * f * np.arange(block))
    outer = np.exp(2j * np.pi * f * block * np.arange(nb))
    return (outer[:, None] * inner[None, :]).ravel()[:n].astype(np.complex64)


@lru_cache(maxsize=8)
def _kaiser_table(half: int, beta: float, steps: int = 1024) -> np.ndarray:
    """Kaiser-windowed sinc taps j - mu, j = -half+1..half, for mu = k/steps, k = 0..steps."""
    mu = np.linspace(0.0, 1.0, steps + 1)[:, None]
    d = np.arange(-half + 1, half + 1)[None, :] - mu
    return np.sinc(d) * np.i0(beta * np.sqrt(np.clip(1 - (d / half) ** 2, 0, None))) / np.i0(beta)


def _interp_taps64_many(t0: np.ndarray, half: int = 8, beta: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """The first sample indices and the 2*half taps (float64, unit sum; rows)
    that interpolate at every position of ``t0`` (see :func:`_interp_at`):
    the taps at t0's fractional part, linear between the rows of the
    Kaiser-sinc table (kernels.interp_taps computes the same)."""
    t0 = np.asarray(t0, np.float64)
    t0i = np.floor(t0)
    table = _kaiser_table(half, beta)
    pos = (t0 - t0i) * (table.shape[0] - 1)
    i = np.minimum(pos.astype(np.int64), table.shape[0] - 2)
    a = (pos - i)[:, None]
    h = (1.0 - a) * table[i] + a * table[i + 1]
    return t0i.astype(np.int64) - half + 1, h / h.sum(1, keepdims=True)


def _interp_taps64(t0: float, half: int = 8, beta: float = 6.0) -> tuple[int, np.ndarray]:
    """:func:`_interp_taps64_many` at one position."""
    first, h = _interp_taps64_many(np.array([t0]), half, beta)
    return int(first[0]), h[0]


def _interp_taps(t0: float, half: int = 8, beta: float = 6.0) -> tuple[int, np.ndarray]:
    """:func:`_interp_taps64` as complex64 taps."""
    first, h = _interp_taps64(t0, half, beta)
    return first, h.astype(np.complex64)


def _interp_at(x: np.ndarray, t0: float, step: int, count: int, half: int = 8, beta: float = 6.0,
               precise: bool = False) -> np.ndarray:
    """``x`` at the fractional positions t0 + k * step, k < count: a 2*half-tap
    Kaiser-windowed sinc (beta 6: about -60 dB interpolation error on a
    signal 2x oversampled with RRC roll-off 0.35) evaluated only where needed,
    zero outside ``x``. Replaces an FFT fractional delay of the whole burst
    (same result within the error above, 4x less time: benchmarks/README.md,
    RX throughput). ``precise``: in complex128 (fine timing) rather than
    complex64."""
    t0i = int(np.floor(t0))
    # taps from a table over mu (1/1024-sample steps, linear between them:
    # relative error ~1e-7, far below the window's -60 dB); np.i0 per call
    # cost 0.18 ms per burst
    first, h = _interp_taps64(t0, half, beta) if precise else _interp_taps(t0, half, beta)
    last = t0i + (count - 1) * step + half  # inclusive
    lo, hi = max(0, -first), max(0, last + 1 - x.size)
    xp = np.pad(x, (lo, hi)) if (lo or hi) else x
    if precise:
        xp = xp.astype(np.complex128)
    win = np.lib.stride_tricks.sliding_window_view(xp, 2 * half)[first + lo::step][:count]
    return win @ h


_KERNELS = [np.array(k, dtype=np.float64) for k in ([1], [1, 2, 1], [1, 2, 3, 2, 1], [1, 2, 3, 4, 3, 2, 1],
                                                      [1, 2, 3, 4, 5, 4, 3, 2, 1])]


@lru_cache(maxsize=64)
def _edge_weights(n: int, kernel: bytes) -> np.ndarray:
    """1 / (sum of the kernel taps inside [0, n)) per output position."""
    return 1.0 / np.convolve(np.ones(n), np.frombuffer(kernel), mode="same")


def _smooth(h: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return np.convolve(h, kernel, mode="same") * _edge_weights(h.size, kernel.tobytes())


def _smooth_loo(h: np.ndarray, est_var: float) -> np.ndarray:
    """Smooth pilot-group channel estimates with the kernel of least estimated MSE.

    ``h`` are per-group least-squares estimates, each with error variance
    ``est_var``. For a candidate (symmetric, so linear trends pass unbiased)
    kernel k, the leave-one-out residual r = h_g - sum_j w_j h_{g+j} (w = k with
    its centre removed, renormalised) has E|r|^2 ~ bias^2 + est_var(1 + sum w^2),
    so MSE_k = bias^2 + est_var sum k^2 ~ E|r|^2 - est_var(1 + sum w^2 - sum k^2).
    Wide kernels win on static channels, narrow ones when the channel fades
    within the frame. No kernel: MSE = est_var.
    """
    best, best_err = h, est_var
    for k in _KERNELS[1:]:
        if k.size > h.size:
            break
        kn = k / k.sum()
        w = k.copy()
        w[w.size // 2] = 0.0
        r = h - _smooth(h, w)
        wn = w / w.sum()
        err = np.mean(np.abs(r) ** 2) - est_var * (1.0 + np.sum(wn * wn) - np.sum(kn * kn))
        if err < best_err:
            best_err, best = err, _smooth(h, k)
    return best


class BurstDemodulator:
    """Matched-filtered burst samples -> LLRs of the coded bits.

    ``search`` is how many samples at the start of the burst may precede the
    preamble (the detector's tag uncertainty). ``kernels``: ``"numba"``
    (compiled kernels of phy/kernels.py, GIL released; the default) or
    ``"numpy"`` (this class's numpy code, the tested reference); default from
    ``GR_SEMCOM_KERNELS``. Genie-CSI bursts always take the numpy path.
    """

    def __init__(self, spec: FrameSpec, search: int | None = None, min_snr_db: float = -5.0,
                 min_rho2: float = 0.15, kernels: str | None = None):
        self.spec = spec
        self.min_rho2 = min_rho2
        self._search = search if search is not None else 8 * spec.sps
        self.min_snr_db = min_snr_db
        sps = spec.sps
        self._pre_pos = np.arange(PREAMBLE_LEN) * sps
        self._segs = 4
        self.kernels = _k.backend(kernels)
        self._conj_pre = np.ascontiguousarray(np.conj(PREAMBLE)).astype(np.complex64)
        data_idx, pilot_idx, pilots = spec.layout
        self._conj_pilots = np.conj(pilots).astype(np.complex64)
        # per-burst constants, read once (FrameSpec's properties recompute)
        self._nsym = spec.n_symbols
        self._coded = spec.coded_bits
        self._need = self.search + self._nsym * sps + 4
        self._n_llr = data_idx.size * spec.constellation.bits_per_symbol
        self._layout = (np.ascontiguousarray(data_idx), np.ascontiguousarray(pilot_idx))
        self._table = np.ascontiguousarray(_kaiser_table(8, 6.0))
        self._twiddle = np.exp(-2j * np.pi * np.arange(CFO_NFFT) / CFO_NFFT)
        c = spec.constellation
        if c.name == "bpsk":
            self._llr_tab = (0, np.zeros(2), np.zeros(2, np.int64), 1.0)
        else:
            bpd, levels, labels, scale = _pam_tables(c.name)
            self._llr_tab = (bpd, np.asarray(levels, np.float64), np.asarray(labels, np.int64), float(scale))

    @property
    def search(self) -> int:
        """Samples before the preamble the search covers (fixed at construction:
        the compiled kernels index the burst by it unchecked)."""
        return self._search

    @property
    def samples_needed(self) -> int:
        return self._need

    def warm_up(self) -> None:
        """Load (or compile) the numba kernels now, once per process, by
        demodulating one clean simulated burst: the receiver blocks call it
        when they are built, so the first burst of a live stream does not
        wait ~0.3 s for numba's cache (a radio would overflow meanwhile)."""
        if self.kernels != "numba" or _warm.get("sc"):
            return
        rng = np.random.default_rng(0)
        bits = rng.integers(0, 2, self.spec.coded_bits).astype(np.uint8)
        x = simulated_burst(self.spec, bits, 30.0, 0.0, 0.0, rng).astype(np.complex64)
        self.demodulate(np.concatenate([x, np.zeros(max(self.samples_needed - x.size, 0), np.complex64)]))
        _warm["sc"] = True

    def _metric(self, x: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Non-coherent segmented preamble correlation (tolerant to CFO)."""
        seg = PREAMBLE_LEN // self._segs
        z = x[starts[:, None] + self._pre_pos[None, :]] * np.conj(PREAMBLE)[None, :]
        return (np.abs(z.reshape(len(starts), self._segs, seg).sum(-1)) ** 2).sum(-1)

    def demodulate(self, x: np.ndarray, csi: np.ndarray | None = None) -> BurstResult:
        """``csi`` (genie mode): the true channel gain stream cut out like
        ``x`` (same start, same delays); it is read at the data symbol
        instants this burst's timing estimate finds."""
        if self.kernels == "numba" and csi is None:
            return self.demodulate_numba(x)
        return self.demodulate_numpy(x, csi)

    def _fine_timing(self, x: np.ndarray, n0: int) -> float:
        """Fractional timing: the segmented preamble metric of the burst
        Kaiser-interpolated (complex128) at n0 + TIMING_GRID (1/16-sample
        steps over +-1 sample), its argmax and a parabolic refinement."""
        seg = PREAMBLE_LEN // self._segs
        sps = self.spec.sps
        # interpolation is linear, so each segment's correlation with the
        # preamble is formed once per integer lag m (x[n0 + m + k*sps], zero
        # outside x) and each candidate's is then its 16 taps over those lags;
        # tests/test_phy_numpy.py checks this against interpolating the
        # preamble at every candidate (_interp_at, complex128)
        first, h = _interp_taps64_many(n0 + TIMING_GRID)
        lags = np.arange(first.min() - n0, first.max() - n0 + h.shape[1])
        pos = n0 + lags[:, None] + (np.arange(PREAMBLE_LEN) * sps)[None, :]
        ok = (pos >= 0) & (pos < x.size)
        xl = np.where(ok, x[np.clip(pos, 0, x.size - 1)], 0).astype(np.complex128)
        corr = (xl * self._conj_pre.astype(np.complex128)[None, :]).reshape(lags.size, self._segs, seg).sum(-1)
        rows = (first - n0 - lags[0])[:, None] + np.arange(h.shape[1])[None, :]
        acc = np.einsum("dj,djg->dg", h, corr[rows])
        mf = (np.abs(acc) ** 2).sum(-1)
        b = int(np.argmax(mf))
        frac = TIMING_GRID[b]
        if 0 < b < TIMING_GRID.size - 1:
            y0, y1, y2 = mf[b - 1], mf[b], mf[b + 1]
            den = y0 - 2 * y1 + y2
            if den < 0:
                frac += 0.5 * (y0 - y2) / den * (TIMING_GRID[1] - TIMING_GRID[0])
        return n0 + frac

    @staticmethod
    def _cfo(zp: np.ndarray) -> float:
        """CFO (cycles/symbol) from the preamble: periodogram peak of
        r * conj(p) (CFO_NFFT bins), parabolic refinement."""
        nfft = CFO_NFFT
        spec_p = np.abs(np.fft.fft(zp, nfft)) ** 2
        k = int(np.argmax(spec_p))
        km, kp = spec_p[(k - 1) % nfft], spec_p[(k + 1) % nfft]
        den = km - 2 * spec_p[k] + kp
        delta = 0.5 * (km - kp) / den if den < 0 else 0.0
        return float(((k + delta + nfft / 2) % nfft - nfft / 2) / nfft)

    def demodulate_numba(self, x: np.ndarray) -> BurstResult:
        """:meth:`demodulate_numpy`'s steps in one compiled call
        (phy/kernels.py ``sc_demod``: one GIL release and one dispatch per
        burst). The CFO periodogram is searched on a coarse grid and then
        around its peak rather than by an FFT (see ``kernels.sc_cfo``)."""
        spec = self.spec
        x = np.ascontiguousarray(x, dtype=np.complex64)
        if x.size < self._need:
            return BurstResult(False, reason="short burst")
        data_idx, pilot_idx = self._layout
        bpd, levels, labels, scale = self._llr_tab
        llr = np.empty(self._n_llr, np.float32)
        y = np.empty(data_idx.size, np.complex64)
        code, t0, rho2, cfo, snr_db, noise_var = _k.first_use(
            "sc_demod", _k.sc_demod, x, self.search, self._pre_pos, self._conj_pre, self._segs, spec.sps,
            self._nsym, float(self.min_rho2), TIMING_GRID, self._table, self._twiddle, CFO_NFFT // 128,
            pilot_idx, self._conj_pilots, spec.pilot_len, data_idx, float(self.min_snr_db),
            bpd, levels, labels, scale, llr, y)
        if code == 0:
            return BurstResult(True, llr=llr[: self._coded], snr_db=float(snr_db), cfo=float(cfo),
                               timing=float(t0), noise_var=float(noise_var), symbols=y)
        if code == 2:
            return BurstResult(False, reason="no preamble", extra={"rho2": float(rho2)})
        if code == 3:
            return BurstResult(False, snr_db=float(snr_db), cfo=float(cfo), timing=float(t0),
                               noise_var=float(noise_var), reason="no signal")
        return BurstResult(False, reason="non-finite samples")  # code 1

    def demodulate_numpy(self, x: np.ndarray, csi: np.ndarray | None = None) -> BurstResult:
        """The numpy reference (see :meth:`demodulate`)."""
        spec = self.spec
        sps = spec.sps
        x = np.asarray(x, dtype=np.complex64)
        if x.size < self.samples_needed or not np.all(np.isfinite(x)):
            return BurstResult(False, reason="short burst" if x.size < self.samples_needed else "non-finite samples")
        # 1. integer timing, then fractional by a fine grid of interpolated candidates
        starts = np.arange(0, self.search + 1)
        m = self._metric(x, starts)
        n0 = int(starts[np.argmax(m)])
        # cheap false-alarm rejection before any burst-length work: the
        # segmented metric over the sample energy is a normalised correlation
        # in [0, 1] (noise: ~Gamma(4)/64, a preamble at Es/N0 s: ~s/(1+s))
        e_pre = float(np.sum(np.abs(x[n0 + self._pre_pos]) ** 2))
        rho2 = float(m.max()) / (PREAMBLE_LEN // self._segs * max(e_pre, 1e-30))
        if rho2 < self.min_rho2:
            return BurstResult(False, reason="no preamble", extra={"rho2": rho2})
        if n0 < 2:
            n0 = 2
        t0 = self._fine_timing(x, n0)
        # 2. the burst at the symbol instants t0 + k*sps
        nsym = spec.n_symbols
        r = _interp_at(x, t0, sps, nsym)
        # 3. CFO from the preamble: periodogram peak of r*conj(p), parabolic refine
        cfo = self._cfo(r[:PREAMBLE_LEN] * np.conj(PREAMBLE))
        if csi is None:
            r = r * _phasor(-cfo, nsym)
        # genie CSI is the whole channel (fading + any rotation): no CFO is
        # applied, or the preamble estimate's error (~1e-4 cycles/symbol in a
        # fade) would rotate a 15k-symbol burst by a full turn against it
        # 4. channel: preamble + pilot groups, linear interpolation in between
        data_idx, pilot_idx, pilots = spec.layout
        pl = spec.pilot_len
        h_pre = np.mean(r[:PREAMBLE_LEN] * np.conj(PREAMBLE))
        hp = (r[pilot_idx] * np.conj(pilots)).reshape(-1, pl)
        h_groups = hp.mean(1)
        centres = np.concatenate([[(PREAMBLE_LEN - 1) / 2], pilot_idx.reshape(-1, pl).mean(1)])
        hs = np.concatenate([[h_pre], h_groups])
        # noise: preamble residual (64 dof) and pilot scatter around group means
        res_pre = r[:PREAMBLE_LEN] - h_pre * PREAMBLE
        nv_pre = np.mean(np.abs(res_pre) ** 2) * PREAMBLE_LEN / (PREAMBLE_LEN - 1)
        if pl > 1:
            nv_pil = np.mean(np.abs(hp - h_groups[:, None]) ** 2) * pl / (pl - 1)
            w_pre, w_pil = PREAMBLE_LEN - 1, hp.size - hp.shape[0]
            noise_var = float((nv_pre * w_pre + nv_pil * w_pil) / (w_pre + w_pil))
        else:
            noise_var = float(nv_pre)
        hs = _smooth_loo(hs, noise_var / pl)
        if csi is not None:  # genie: the true channel at the data symbol instants
            csi = np.asarray(csi, dtype=np.complex64)
            pos = np.round(t0 + data_idx * sps).astype(np.int64)
            h_data = csi[np.clip(pos, 0, csi.size - 1)]
        else:
            h_data = (np.interp(data_idx, centres, hs.real) + 1j * np.interp(data_idx, centres, hs.imag)).astype(np.complex64)
        pw = np.abs(h_data) ** 2
        # Signal power from the lag-1 correlation of successive pilot-group
        # estimates: noise is independent between groups, so this carries no
        # noise bias; on a correlator false alarm the 'pilots' are random data
        # and it is ~0, far below any decodable SNR: that rejects false alarms.
        if h_groups.size > 1:
            sig = float(np.abs(np.mean(h_groups[1:] * np.conj(h_groups[:-1]))))
        else:
            sig = float(np.abs(h_groups[0]) ** 2) - noise_var / pl
        snr_db = float(10 * np.log10(max(sig, 1e-20) / max(noise_var, 1e-20)))
        if snr_db < self.min_snr_db:
            return BurstResult(False, snr_db=snr_db, cfo=cfo, timing=t0, noise_var=noise_var, reason="no signal")
        pw = np.maximum(pw, 1e-12)
        y = r[data_idx] * np.conj(h_data) / pw
        nv_sym = (noise_var / pw).astype(np.float32)
        llr = spec.constellation.llr(y, nv_sym)[: spec.coded_bits]
        return BurstResult(True, llr=llr, snr_db=snr_db, cfo=float(cfo), timing=float(t0),
                           noise_var=noise_var, symbols=y)
