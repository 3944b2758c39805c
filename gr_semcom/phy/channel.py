"""Simulated channels built from gr-channels' C++ blocks, and SNR conventions.

SNR is Es/N0 per complex symbol: transmitted symbols have unit average
energy and the RRC pulse unit energy, so a complex white noise of variance
sigma^2 per sample gives Es/N0 = 1/sigma^2 at the matched-filter output,
independent of samples per symbol. ``noise_voltage`` of
``channels.channel_model`` is that sigma (tests measure it).
Eb/N0 = Es/N0 - 10 log10(bits per symbol * code rate).

Fading (``channels.fading_model``, sum of sinusoids) has unit average power;
its Doppler is given per symbol (fD*T) and converted to per sample.
"""
from __future__ import annotations

import math

import numpy as np
from dataclasses import dataclass, field

CHANNELS = ("awgn", "rayleigh", "rician", "multipath")


def esn0_to_noise_voltage(esn0_db: float) -> float:
    return 10.0 ** (-esn0_db / 20.0)


def ebn0_to_esn0(ebn0_db: float, bits_per_symbol: int, code_rate: float = 1.0) -> float:
    return ebn0_db + 10.0 * math.log10(bits_per_symbol * code_rate)


def esn0_to_ebn0(esn0_db: float, bits_per_symbol: int, code_rate: float = 1.0) -> float:
    return esn0_db - 10.0 * math.log10(bits_per_symbol * code_rate)


@dataclass
class ChannelSpec:
    model: str = "awgn"
    esn0_db: float = 20.0
    cfo: float = 0.0  # cycles per symbol
    timing_offset: float = 0.0  # fractional sample delay, 0..1
    sro_ppm: float = 0.0
    phase_noise: float = 0.0  # std of the phase noise increment source (rad)
    doppler: float = 1e-3  # fD*T per symbol
    rician_k: float = 4.0
    taps_delays: list = field(default_factory=lambda: [0.0, 1.3, 3.1])  # in symbols
    taps_mags: list = field(default_factory=lambda: [1.0, 0.5, 0.25])
    seed: int = 0
    dc_offset: complex = 0j
    iq_imbalance_db: float = 0.0
    iq_phase_deg: float = 0.0
    #: static multipath as channel_model taps at the sample rate (normalised
    #: to unit energy), combined with the fractional timing offset; unlike
    #: ``multipath`` (Rayleigh taps) it does not fade
    static_taps: list | None = None

    def __post_init__(self):
        if self.model not in CHANNELS:
            raise ValueError(f"unknown channel {self.model!r}; choose one of {CHANNELS}")
        if not math.isfinite(self.esn0_db):
            raise ValueError("esn0_db must be finite")


def fractional_delay_taps(delay: float, half: int = 16) -> list:
    """Windowed-sinc FIR delaying a band-limited signal by ``half + delay`` samples.

    GNU Radio's MMSE interpolator (mmse_resampler_cc) is designed for signals
    well inside a quarter of the sample rate; an RRC signal at 2 samples per
    symbol is not, so the sub-sample timing offset is applied as channel_model
    taps instead. ``delay == 0`` gives the single tap [1].
    """
    if not delay:
        return [1.0 + 0j]
    n = np.arange(-half, half + 1, dtype=np.float64)
    h = np.sinc(n - delay) * np.kaiser(n.size, 8.0)
    h /= h.sum()
    return [complex(v) for v in h]


def channel_taps(spec: ChannelSpec) -> list:
    """channel_model taps: the fractional delay, convolved with the
    unit-energy static multipath taps if any."""
    taps = fractional_delay_taps(spec.timing_offset)
    if spec.static_taps:
        st = np.asarray(spec.static_taps, np.complex128)
        st = st / np.sqrt(np.sum(np.abs(st) ** 2))
        taps = [complex(v) for v in np.convolve(np.asarray(taps, np.complex128), st)]
    return taps


def make_channel(spec: ChannelSpec, sps: int, csi_output: bool = False):
    """A gr.hier_block2: complex in -> complex out (+ true channel gain if csi_output)."""
    from gnuradio import blocks, channels, gr

    nout = 2 if csi_output else 1

    class _chan(gr.hier_block2):
        def __init__(self):
            gr.hier_block2.__init__(self, "semcom_channel", gr.io_signature(1, 1, gr.sizeof_gr_complex),
                                    gr.io_signature(nout, nout, gr.sizeof_gr_complex))
            chain = [self]
            fdts = spec.doppler / sps
            if spec.model in ("rayleigh", "rician"):
                los = spec.model == "rician"
                self.fading = channels.fading_model(8, fdts, los, spec.rician_k, spec.seed + 1)
                chain.append(self.fading)
                if csi_output:
                    self.csi_fading = channels.fading_model(8, fdts, los, spec.rician_k, spec.seed + 1)
            elif spec.model == "multipath":
                delays = [d * sps for d in spec.taps_delays]
                norm = math.sqrt(sum(m * m for m in spec.taps_mags))
                mags = [m / norm for m in spec.taps_mags]
                ntaps = int(math.ceil(max(delays))) + 8
                self.fading = channels.selective_fading_model(8, fdts, False, spec.rician_k, spec.seed + 1,
                                                              delays, mags, ntaps)
                chain.append(self.fading)
            if spec.phase_noise:
                self.pn = channels.phase_noise_gen(float(spec.phase_noise), 0.01)
                chain.append(self.pn)
            self.model = channels.channel_model(
                noise_voltage=esn0_to_noise_voltage(spec.esn0_db),
                frequency_offset=spec.cfo / sps,
                epsilon=1.0 + spec.sro_ppm * 1e-6,
                taps=channel_taps(spec),
                noise_seed=spec.seed,
                block_tags=False)
            chain.append(self.model)
            if spec.iq_imbalance_db or spec.iq_phase_deg:
                self.iq = channels.iqbal_gen(spec.iq_imbalance_db, spec.iq_phase_deg, 0)
                chain.append(self.iq)
            if spec.dc_offset:
                self.dc = blocks.add_const_cc(complex(spec.dc_offset))
                chain.append(self.dc)
            chain.append(self)
            self.connect(*chain)
            if csi_output:
                # the same fading process (same seed) applied to a constant 1, clocked
                # by the data path (x*0 + 1) so both streams stay sample aligned
                self.mul = blocks.multiply_const_cc(0.0)
                self.add = blocks.add_const_cc(1.0)
                csi_chain = [self, self.mul, self.add]
                if spec.model in ("rayleigh", "rician"):
                    csi_chain.append(self.csi_fading)
                self.connect(*csi_chain, (self, 1))

    return _chan()
