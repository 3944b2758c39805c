"""OFDM mode: frame parameters and the per-burst receiver DSP (numpy).

The waveform is GNU Radio's own (``gr-digital`` OFDM blocks, 802.11a-like
carrier plan as in ``digital.ofdm_tx``: 64-point FFT, 16-sample cyclic prefix,
48 data and 4 pilot carriers, Schmidl & Cox sync symbols, one BPSK header
symbol built by ``packet_header_ofdm``). What this module adds:

* any of our unit-energy Gray constellations on the payload carriers (GNU
  Radio's ``ofdm_tx`` offers BPSK/QPSK/8PSK only), with bits MSB first;
* a burst receiver with soft output: GNU Radio's OFDM receiver ends in hard
  decisions (``constellation_decoder_cb``); here the equalised payload
  carriers become max-log LLRs weighted by each carrier's channel gain, so the
  LDPC decoder sees deep fades as unreliable (the reason OFDM + LDPC works in
  multipath). See :mod:`gr_semcom.blocks.ofdm_hier` for why GNU Radio's
  Schmidl & Cox receiver chain is not used.

SNR convention: the transmitter scales the IFFT to be unitary (1/sqrt(N)), so
with ``channel_model`` noise voltage ``10^(-EsN0/20)`` the Es/N0 of every
active subcarrier equals the requested Es/N0 (the cyclic prefix costs
``cp/(fft+cp)`` of the energy on top, reported as overhead).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from . import kernels as _k
from .constellations import _pam_tables, get_constellation
from .fec import get_code
from .frame import CodedFrame, _phasor, _warm

#: 802.11a carrier plan, as GNU Radio's ofdm_txrx defaults
OCCUPIED = tuple(list(range(-26, -21)) + list(range(-20, -7)) + list(range(-6, 0))
                 + list(range(1, 7)) + list(range(8, 21)) + list(range(22, 27)))
PILOTS = (-21, -7, 7, 21)
# pilot polarity sequence: 127-chip m-sequence (x^7 + x^4 + 1), one value per OFDM symbol
_LFSR_LEN = 127


def _pilot_polarity() -> np.ndarray:
    state = 0x7F
    out = np.empty(_LFSR_LEN, np.int8)
    for i in range(_LFSR_LEN):
        b = ((state >> 6) ^ (state >> 3)) & 1
        out[i] = 1 - 2 * (state & 1)
        state = ((state << 1) | b) & 0x7F
    return out


@dataclass(frozen=True)
class OfdmSpec(CodedFrame):
    fft_len: int = 64
    cp_len: int = 16
    occupied: tuple = field(default=OCCUPIED)
    pilots: tuple = field(default=PILOTS)

    def __post_init__(self):
        get_constellation(self.modulation)
        get_code(self.code_rate)
        if self.codewords < 1 or not 0 < self.cp_len < self.fft_len:
            raise ValueError(f"invalid OFDM parameters: {self}")
        if max(map(abs, self.occupied + self.pilots)) >= self.fft_len // 2:
            raise ValueError("carrier index outside the FFT")
        if self.payload_bytes > 4095:
            raise ValueError("packet_header_ofdm carries at most 4095 payload bytes per frame; "
                             "use fewer codewords")

    @property
    def bits_per_symbol(self) -> int:
        return self.constellation.bits_per_symbol

    @property
    def padded_bits(self) -> int:
        """Coded bits padded to whole bytes and whole constellation symbols."""
        step = int(np.lcm(8, self.bits_per_symbol))
        return -(-self.coded_bits // step) * step

    @property
    def payload_bytes(self) -> int:
        return self.padded_bits // 8

    @property
    def payload_symbols(self) -> int:
        return self.padded_bits // self.bits_per_symbol

    @property
    def ofdm_symbols(self) -> int:
        """OFDM symbols per frame: 2 sync + 1 header + payload."""
        return 3 + -(-self.payload_symbols // len(self.occupied))

    @property
    def burst_samples(self) -> int:
        return self.ofdm_symbols * (self.fft_len + self.cp_len)

    @property
    def overhead(self) -> float:
        return 1.0 - self.coded_bits / self.bits_per_symbol / self.burst_samples

    @cached_property
    def pilot_symbols(self) -> tuple:
        pol = _pilot_polarity()
        return tuple(tuple(float(p) * v for v in (1, 1, 1, -1)[: len(self.pilots)]) for p in pol)

    def sync_words(self) -> tuple[list, list]:
        """The Schmidl & Cox symbols of GNU Radio's ``ofdm_tx``/``ofdm_rx`` defaults
        (same construction: legacy NumPy RNG seeded 42, BPSK): word 1 on the odd
        active carriers only, scaled by sqrt(2) (two time halves equal up to
        sign), word 2 on every active carrier (channel estimate, coarse CFO).
        Random words of our own drew timing triggers 2-3 samples early from
        ``ofdm_sync_sc_cfb`` and lost headers; GNU Radio's words do not."""
        n = self.fft_len
        active = {c % n for c in self.occupied + self.pilots}
        rs = np.random.RandomState(42)
        w1 = [(np.sqrt(2) if rs.randint(2) == 0 else -np.sqrt(2)) if (x in active and x % 2) else 0.0
              for x in range(n)]
        rs = np.random.RandomState(42)
        w2 = [(1.0 if rs.randint(2) == 0 else -1.0) if x in active else 0.0 for x in range(n)]
        w2[0] = 0.0
        return ([complex(v) for v in np.fft.fftshift(w1)], [complex(v) for v in np.fft.fftshift(w2)])

    def gr_points(self) -> list:
        """Constellation points ordered by integer label (MSB-first bits)."""
        return [complex(p) for p in self.constellation.points]

    def describe(self) -> dict:
        return {"waveform": "ofdm", "modulation": self.modulation, "code_rate": self.code_rate,
                "ldpc_n": self.code.n if self.code.alist else None,
                "ldpc_k": self.code.k if self.code.alist else None,
                "codewords_per_frame": self.codewords, "fft_len": self.fft_len, "cp_len": self.cp_len,
                "data_carriers": len(self.occupied), "pilot_carriers": len(self.pilots),
                "payload_bytes_per_frame": self.capacity, "ofdm_symbols_per_frame": self.ofdm_symbols,
                "samples_per_burst": self.burst_samples, "overhead": round(self.overhead, 4)}

    # -- soft demapping ----------------------------------------------------
    @cached_property
    def _smoother(self) -> np.ndarray:
        """Projection of an active-carrier channel estimate onto delays
        -4 .. cp_len+4 samples (least squares): a channel shorter than the cyclic
        prefix lives there, so the noise of a one-symbol estimate drops by
        about 10 log10(active / taps) dB."""
        active = np.array(sorted(self.occupied + self.pilots))
        delays = np.arange(-4, self.cp_len + 5)
        basis = np.exp(-2j * np.pi * np.outer(active, delays) / self.fft_len)
        return basis @ np.linalg.pinv(basis)

    def pilot_values(self, nsym: int) -> np.ndarray:
        """Known pilot symbols of ``nsym`` payload OFDM symbols (the header
        symbol takes the allocator's first pilot set, payload symbol j set j+1)."""
        return self._pilot_table[(np.arange(nsym) + 1) % len(self.pilot_symbols)]

    @cached_property
    def _pilot_table(self) -> np.ndarray:
        return np.array(self.pilot_symbols, np.complex64)

    def pilot_phase(self, grid: np.ndarray, h: np.ndarray, psym: np.ndarray) -> tuple[np.ndarray, float]:
        """Per-symbol pilot correlation with the channel ``h`` (its angle is the
        common phase of each payload symbol) and the phase slope per symbol
        from lag-1 products (no unwrapping needed)."""
        pil = np.array(self.pilots) + self.fft_len // 2
        corr = np.sum(grid[:, pil] * np.conj(h[pil] * psym), axis=1)
        slope = float(np.angle(np.sum(corr[1:] * np.conj(corr[:-1])))) if corr.size > 1 else 0.0
        return corr, slope

    def equalize(self, grid: np.ndarray, chan_taps: np.ndarray | None):
        """Payload FFT grid (symbols x fft_len, shifted) -> (data symbols, their
        carrier gains |H|^2, noise variance N0, per-symbol common phase).

        The channel starts from the sync-symbol-2 estimate ``chan_taps``,
        smoothed in the delay domain and refined decision-directed; the common phase of every OFDM symbol is tracked on the pilots
        (residual CFO, phase noise) with a 9-symbol sliding average; N0 comes
        from the pilot residuals.
        """
        n = self.fft_len
        grid = np.asarray(grid, np.complex64).reshape(-1, n)
        active = np.array(sorted(self.occupied + self.pilots)) + n // 2
        h = np.ones(n, np.complex64)
        if chan_taps is not None and len(chan_taps) == n:
            h = np.asarray(chan_taps, np.complex64).copy()
            h[active] = self._smoother @ h[active]
        occ = np.array(self.occupied) + n // 2
        pil = np.array(self.pilots) + n // 2
        nsym = grid.shape[0]
        psym = self.pilot_values(nsym)
        passes = self.EQ_PASSES
        for it in range(passes + 1):
            # residual CFO makes the phase a ramp: average the de-ramped pilots
            # over 9 symbols, put the ramp back (unbiased at the frame edges too)
            corr, slope = self.pilot_phase(grid, h, psym)
            j = np.arange(nsym)
            flat = corr * np.exp(-1j * slope * j)
            phase = np.angle(np.convolve(flat, np.ones(9), mode="same")) + slope * j
            rot = np.exp(-1j * phase)[:, None]
            if it == passes:
                break
            # decision-directed refinement: every payload symbol re-estimates its
            # carrier (the preamble counts as one observation), then the same
            # delay-domain smoothing; repeated because better channels give
            # better decisions (one pass from a one-symbol estimate leaves the
            # symbol error rate about twice the ideal at 7 dB)
            y = (grid[:, occ] / h[occ]) * rot
            dec = self.constellation.nearest(y)  # = pts[argmin |y - pts|], per axis
            num = np.zeros(n, np.complex64)
            den = np.ones(n, np.float32)
            num[active] = h[active]
            num[occ] += np.sum(grid[:, occ] * rot * np.conj(dec), axis=0)
            den[occ] += np.sum(np.abs(dec) ** 2, axis=0)
            num[pil] += np.sum(grid[:, pil] * rot * np.conj(psym), axis=0)
            den[pil] += np.sum(np.abs(psym) ** 2, axis=0)
            h = h.copy()
            h[active] = self._smoother @ (num[active] / den[active])
        gp = np.abs(h[pil]) ** 2
        zp = grid[:, pil] / h[pil]
        # residual per pilot carrier minus its mean (the channel-estimate error,
        # common to all symbols of that carrier): what is left is noise
        r = (zp * rot - psym) * np.conj(psym)
        r = r - r.mean(axis=0, keepdims=True)
        n0 = float(np.mean(np.abs(r) ** 2 * gp[None, :])) * nsym / max(nsym - 1, 1)
        y = (grid[:, occ] / h[occ]) * rot
        g = np.broadcast_to(np.abs(h[occ]) ** 2, y.shape)
        return y.ravel(), g.ravel(), max(n0, 1e-9), phase

    EQ_PASSES = 3  # decision-directed channel refinements (equalize)

    @cached_property
    def _eq_tables(self):
        n = self.fft_len
        active = np.array(sorted(self.occupied + self.pilots), np.int64) + n // 2
        occ = np.array(self.occupied, np.int64) + n // 2
        pil = np.array(self.pilots, np.int64) + n // 2
        if self.constellation.name == "bpsk":
            m_axis, scale = 0, 1.0
        else:
            _bpd, levels, _labels, scale = _pam_tables(self.constellation.name)
            m_axis = int(levels.size)
        return active, occ, pil, np.ascontiguousarray(self._smoother, np.complex128), m_axis, float(scale)

    def equalize_numba(self, grid: np.ndarray, chan_taps: np.ndarray | None):
        """:meth:`equalize` (less the phases) as one compiled kernel
        (phy/kernels.py ``ofdm_equalize``, GIL released): the same steps in
        complex128 where the reference mixes complex64 and complex128, so
        the results agree to float32 rounding (tests/test_kernels.py)."""
        n = self.fft_len
        grid = np.ascontiguousarray(np.asarray(grid, np.complex64).reshape(-1, n))
        nsym = grid.shape[0]
        smooth = chan_taps is not None and len(chan_taps) == n
        h0 = np.array(chan_taps, np.complex64) if smooth else np.ones(n, np.complex64)
        active, occ, pil, smoother, m_axis, scale = self._eq_tables
        psym = np.ascontiguousarray(self.pilot_values(nsym))
        y = np.empty(nsym * occ.size, np.complex64)
        g = np.empty(nsym * occ.size, np.float32)
        n0 = _k.first_use("ofdm_equalize", _k.ofdm_equalize, grid, h0, smooth, active, occ, pil, psym, smoother,
                          self.EQ_PASSES, m_axis, scale, y, g)
        return y, g, float(n0)

    def soft_demap(self, grid: np.ndarray, chan_taps: np.ndarray | None = None, kernels: str | None = None
                   ) -> tuple[np.ndarray, float, np.ndarray]:
        """Payload FFT grid -> (LLRs of the coded bits, estimated Es/N0 in dB,
        equalised payload symbols).

        After zero-forcing, a carrier with gain g has noise variance N0/g, so
        each LLR is weighted by its carrier's gain (max-log, Gray tables).
        ``kernels``: the compiled equaliser (``numba``, default from
        ``GR_SEMCOM_KERNELS``) or the numpy reference (``numpy``)."""
        if _k.backend(kernels) == "numba":
            y, g, n0 = self.equalize_numba(grid, chan_taps)
        else:
            y, g, n0, _ = self.equalize(grid, chan_taps)
        y, g = y[: self.payload_symbols], g[: self.payload_symbols]
        llr = self.constellation.llr(y, n0 / np.maximum(g, 1e-6))
        es = float(np.mean(g))
        return llr[: self.coded_bits], 10 * np.log10(es / n0), y


@dataclass
class OfdmBurstResult:
    ok: bool
    llr: np.ndarray | None = None
    snr_db: float = float("nan")
    cfo: float = float("nan")  # in subcarrier spacings
    timing: float = float("nan")
    quality: float = float("nan")
    reason: str = ""
    symbols: np.ndarray | None = None  # equalised payload symbols


class OfdmBurstDemodulator:
    """One captured OFDM burst (samples) -> LLRs of its coded bits.

    Timing: correlation with both known sync symbols over ``search`` candidate
    starts (four non-coherent segments each, tolerant to CFO); CFO: Schmidl &
    Cox phase between the two halves of sync symbol 1 (range +-1 subcarrier
    spacing); then a numpy FFT of every symbol, channel from sync symbol 2,
    and :meth:`OfdmSpec.soft_demap`. A candidate whose Schmidl & Cox plateau
    value is below ``min_quality``, or whose pilots do not add up coherently
    (``min_coherence``), is not a frame (a correlator false alarm).

    ``kernels``: ``"numba"`` runs the timing search (the largest cost) as a
    compiled kernel (phy/kernels.py, GIL released), ``"numpy"`` the
    reference code; default from ``GR_SEMCOM_KERNELS``.
    """

    BACKOFF = 3  # FFT window starts this many samples inside the cyclic prefix

    def __init__(self, spec: OfdmSpec, search: int = 64, min_quality: float = 0.25,
                 min_coherence: float = 0.3, kernels: str | None = None):
        self.spec = spec
        self.kernels = _k.backend(kernels)
        self.min_coherence = min_coherence
        self.search = search
        self.min_quality = min_quality
        w1, w2 = spec.sync_words()
        self.w2 = np.asarray(w2, np.complex64)
        self.s1 = sync_waveform(spec, w1)
        self.s2 = sync_waveform(spec, w2)
        self._conj_s1 = np.ascontiguousarray(np.conj(self.s1)).astype(np.complex64)
        self._conj_s2 = np.ascontiguousarray(np.conj(self.s2)).astype(np.complex64)

    @property
    def samples_needed(self) -> int:
        return self.search + self.spec.burst_samples

    def warm_up(self) -> None:
        """Load the numba timing and equaliser kernels now, once per process
        (see :meth:`gr_semcom.phy.frame.BurstDemodulator.warm_up`): an
        all-zero capture for the timing search (it stops there), an all-zero
        payload grid for the equaliser."""
        if self.kernels != "numba" or _warm.get("ofdm"):
            return
        self.demodulate(np.zeros(self.samples_needed, np.complex64))
        self.spec.equalize_numba(np.zeros((self.spec.ofdm_symbols - 3, self.spec.fft_len), np.complex64), None)
        _warm["ofdm"] = True

    def _metric(self, x, starts):
        n, L = self.spec.fft_len, self.spec.fft_len + self.spec.cp_len
        idx = starts[:, None] + np.arange(n)[None, :]
        z1 = (x[idx] * np.conj(self.s1)).reshape(len(starts), 4, -1).sum(-1)
        z2 = (x[idx + L] * np.conj(self.s2)).reshape(len(starts), 4, -1).sum(-1)
        return (np.abs(z1) ** 2).sum(-1) + (np.abs(z2) ** 2).sum(-1)

    def demodulate(self, x: np.ndarray) -> OfdmBurstResult:
        spec = self.spec
        n, cp = spec.fft_len, spec.cp_len
        L = n + cp
        x = np.asarray(x, np.complex64)
        starts = np.arange(self.BACKOFF, self.search + 1)
        if self.kernels == "numba" and x.size >= self.samples_needed:
            x = np.ascontiguousarray(x)
            metric, bad = _k.first_use("ofdm_metric", _k.ofdm_metric, x, self.BACKOFF, self.search,
                                       self._conj_s1, self._conj_s2, L)
            if bad:
                return OfdmBurstResult(False, reason="non-finite samples")
        else:
            if x.size < self.samples_needed or not np.all(np.isfinite(x)):
                return OfdmBurstResult(False, reason="short burst" if x.size < self.samples_needed
                                       else "non-finite samples")
            metric = self._metric(x, starts)
        p = int(starts[np.argmax(metric)])
        if p >= starts[-1] - 1 or p <= starts[0] + 1:
            # the peak may lie outside this capture (a false alarm just before a
            # real frame): leave it to the capture of the real frame's own tag
            return OfdmBurstResult(False, timing=p, reason="preamble at the search edge")
        h1, h2 = x[p:p + n // 2], x[p + n // 2:p + n]
        pc = np.sum(np.conj(h1) * h2)
        quality = float(np.abs(pc) ** 2 / max(np.sum(np.abs(h1) ** 2) * np.sum(np.abs(h2) ** 2), 1e-30))
        if quality < self.min_quality:
            return OfdmBurstResult(False, quality=quality, timing=p, reason="no preamble")
        # halves differ by a sign (odd carriers) and by the CFO rotation over n/2 samples
        cfo = float(np.angle(-pc) / np.pi)
        raw = x[p - self.BACKOFF:p - self.BACKOFF + spec.ofdm_symbols * L]
        idx = np.arange(spec.ofdm_symbols)[:, None] * L + np.arange(n)[None, :]
        active = np.array(sorted(spec.occupied + spec.pilots)) + n // 2
        psym = spec.pilot_values(spec.ofdm_symbols - 3)
        for _ in range(2):
            body = raw * _phasor(-cfo / n, raw.size)
            grid = np.fft.fftshift(np.fft.fft(body[idx], axis=1), axes=1)
            h = np.zeros(n, np.complex64)
            h[active] = grid[1, active] / self.w2[active]
            # fine CFO: pilot phase drift over the whole frame (a baseline of
            # the frame length instead of half a symbol), then redo the FFTs
            corr, drift = spec.pilot_phase(grid[3:], h, psym)
            cfo += drift / (2 * np.pi * L / n)
        # pilot coherence: ~1 for a real frame (even at 0 dB), ~1/sqrt(4 * symbols)
        # for a correlator false alarm that happened to pass the plateau check
        ramp = np.exp(-1j * drift * np.arange(corr.size))
        coherence = float(np.abs(np.sum(corr * ramp)) / max(np.sum(np.abs(corr)), 1e-30))
        if coherence < self.min_coherence:
            return OfdmBurstResult(False, quality=quality, timing=p, reason="incoherent pilots")
        llr, snr_db, y = spec.soft_demap(grid[3:], h, self.kernels)
        return OfdmBurstResult(True, llr=llr, snr_db=snr_db, cfo=cfo, timing=float(p), quality=quality,
                               symbols=y.astype(np.complex64))


def sync_waveform(spec: OfdmSpec, word) -> np.ndarray:
    """Time-domain body (no cyclic prefix) of a sync symbol as the TX sends it:
    ``fft_vcc`` inverse with shift, scaled to a unitary IFFT."""
    n = spec.fft_len
    return (np.fft.ifft(np.fft.ifftshift(np.asarray(word, np.complex64))) * np.sqrt(n)).astype(np.complex64)
