"""Transmitter and receiver hier blocks of the single-carrier digital PHY.

TX (PDU in, complex baseband out)::

    frame_encoder -> fec.async_encoder (gr-fec LDPC, C++) -> burst_mapper
      -> pdu.pdu_to_stream_c (C++) -> filter.interp_fir_filter_ccf (RRC, C++)

RX (complex baseband in, PDUs out)::

    NaN guard (C++ nan_guard_cc, or the Python sanitize_cc) -> filter.fft_filter_ccf (matched RRC, C++)
      -> preamble_detector (RMS-normalised corr_est_cc, C++)
      -> burst capture at each 'corr_start' tag (C++ burst_capture_c, or the Python burst_capture) -> burst_demod
      -> fec.async_decoder (gr-fec LDPC, C++) -> frame_decoder

Message ports: TX ``in`` (u8 PDU), ``status``; RX ``out`` (reassembled PDUs),
``status`` (per-frame and per-burst events), ``symbols`` (equalised data
symbols per burst, c32 PDU), ``bits`` (hard decisions of the
coded bits, for BER measurement).
"""
from __future__ import annotations

import numpy as np
from gnuradio import blocks, digital, fec, filter, gr, pdu

from ..phy.fec import make_decoder, make_encoder
from ..phy.frame import FrameSpec
from ..phy.kernels import env_flag
from . import phy_blocks as _pb
from .phy_blocks import (LocalPdus, burst_capture, burst_demod, burst_mapper, frame_decoder, frame_encoder,
                         make_burst_capture, make_sanitize, rx_workers)
from .phy_blocks import ldpc_decoder as ldpc_decoder_block

#: samples kept before each 'corr_start' tag; the demodulator searches the
#: preamble over twice that span, which covers corr_est_cc's tag jitter
_TAG_LEAD = 8


def spec_from_kwargs(**kw) -> FrameSpec:
    return FrameSpec(**{k: v for k, v in kw.items() if v is not None})


def sync_waveform(spec: FrameSpec) -> np.ndarray:
    """The sync word as it appears after TX RRC + RX matched filter, sps samples/symbol."""
    up = np.zeros(spec.sync_word.size * spec.sps, np.complex64)
    up[:: spec.sps] = spec.sync_word
    rc = np.convolve(spec.rrc, spec.rrc)
    d = rc.size // 2
    return np.convolve(up, rc)[d: d + up.size].astype(np.complex64)


def wire_encoder(hier, spec, sink) -> None:
    """TX hier ports ``in``/``status`` -> frame_encoder -> gr-fec async_encoder
    (if coded) -> ``sink`` (shared by both waveforms)."""
    hier.message_port_register_hier_in("in")
    hier.message_port_register_hier_out("status")
    hier.framer = frame_encoder(spec)
    hier.msg_connect(hier, "in", hier.framer, "in")
    hier.msg_connect(hier.framer, "status", hier, "status")
    if spec.code.alist is not None:
        hier.encoder = fec.async_encoder(make_encoder(spec.code), False, False, False, spec.coded_bits + 64)
        hier.msg_connect(hier.framer, "out", hier.encoder, "in")
        hier.msg_connect(hier.encoder, "out", sink, "in")
    else:
        hier.msg_connect(hier.framer, "out", sink, "in")


#: LDPC decoders the receivers offer: the batched numpy sum-product decoder
#: (default: measured fastest, same algorithm and BLER as gr-fec's), its
#: normalised min-sum variant, and gr-fec's own ldpc_decoder (C++, one
#: codeword at a time) through fec.async_decoder
LDPC_DECODERS = ("spa", "minsum", "gr-fec")


def inline_ldpc() -> bool:
    """Whether a receiver's demodulator runs its LDPC decoder's work in its
    own thread (default; ``GR_SEMCOM_RX_INLINE_LDPC=0``: a message per burst to
    the decoder block's thread, as two separate GRC blocks wired together do).
    Why: with the decoder in C++ its block spent more CPU on the message hop
    (GNU Radio's dispatch, the PDU hand-off, GIL hand-offs between threads)
    than on decoding (docs/receiver_speed.md)."""
    return env_flag("GR_SEMCOM_RX_INLINE_LDPC")


def inline_frames() -> bool:
    """Whether a receiver's LDPC decoder block hands each decoded burst to its
    frame decoder by a direct call in the decoding thread (default;
    ``GR_SEMCOM_RX_INLINE_FRAMES=0``: a message per burst to the frame
    decoder's own thread). Why: every message woke that thread, which then
    took the GIL from the demodulator's; on the 2-core box on 2026-12-07 the
    demodulator thread's CPU per run was the same with the frame decoding
    added to it, the frame decoder thread's 0.6-0.7 CPU s were gone, and
    QPSK went from 6.2-7.3 to 7.5-8.3 Msps (docs/receiver_speed.md)."""
    return env_flag("GR_SEMCOM_RX_INLINE_FRAMES")


def wire_decoder(hier, spec, demod, timeout: float, ldpc_iterations: int, ldpc_decoder: str = "spa",
                 workers: int | None = None) -> None:
    """demod -> LDPC decoder (if coded) -> frame_decoder, and the RX hier
    ports ``out``, ``status``, ``bits``, ``symbols``, ``flush`` (shared by
    both waveforms; call it before connecting anything else to those ports).
    ``workers``: threads of the demodulator and of the LDPC decoder each
    (:func:`~gr_semcom.blocks.phy_blocks.rx_workers`: default
    ``GR_SEMCOM_RX_WORKERS``, else 1: measured fastest on 2 cores); genie-CSI
    demodulation stays in one thread."""
    if ldpc_decoder not in LDPC_DECODERS:
        raise ValueError(f"ldpc_decoder is one of {LDPC_DECODERS}, got {ldpc_decoder!r}")
    n_workers = rx_workers(workers)
    if not getattr(demod, "genie", False):
        demod.workers = n_workers
    for p in ("out", "status", "bits", "symbols"):
        hier.message_port_register_hier_out(p)
    hier.message_port_register_hier_in("flush")
    hier.deframer = frame_decoder(spec, timeout=timeout)
    if spec.code.alist is not None and ldpc_decoder != "gr-fec":
        demod.soft_format = "llr"
        hier.decoder = ldpc_decoder_block(spec, ldpc_iterations, ldpc_decoder)
        hier.decoder.workers = n_workers
        if demod.backlog is not None and not getattr(demod, "genie", False):
            # the back-pressure covers the decoder too: it frees each burst's slot
            hier.decoder.backlog = demod.backlog
            demod.release_downstream = True
        # LLRs and decoded bits pass between these blocks as numpy arrays (LocalPdus)
        local = getattr(hier, "local", None) or LocalPdus()
        hier.local = demod.local_out = hier.decoder.local_in = local
        hier.decoder.local_out = hier.deframer.local_in = local
        hier.msg_connect(demod, "out", hier.decoder, "in")
        hier.msg_connect(hier.decoder, "out", hier.deframer, "in")
        if inline_ldpc() and not getattr(demod, "genie", False):
            # the demodulator runs the decoder's work in its own thread (on its
            # workers, if several): the block stays, with its ports, counters
            # and status, but no message crosses demod -> decoder
            demod.inline_decoder = hier.decoder
        if inline_frames():
            # the decoder block calls the frame decoder in the thread it decodes
            # in; the frame decoder keeps its ports, status and flush timer
            hier.decoder.inline_deframer = hier.deframer
    elif spec.code.alist is not None:
        hier.decoder = fec.async_decoder(make_decoder(spec.code, ldpc_iterations), False, False,
                                         spec.coded_bits + 64)
        hier.msg_connect(demod, "out", hier.decoder, "in")
        hier.msg_connect(hier.decoder, "out", hier.deframer, "in")
    else:
        hier.msg_connect(demod, "out", hier.deframer, "in")
    hier.msg_connect(hier.deframer, "out", hier, "out")
    hier.msg_connect(hier.deframer, "status", hier, "status")
    hier.msg_connect(demod, "status", hier, "status")
    hier.msg_connect(demod, "bits", hier, "bits")
    hier.msg_connect(demod, "symbols", hier, "symbols")
    hier.msg_connect(hier, "flush", hier.deframer, "flush")
    if isinstance(getattr(hier, "decoder", None), ldpc_decoder_block):
        hier.msg_connect(hier.decoder, "status", hier, "status")


def bursts_in_flight(capture, demod, decoder, deframer) -> int:
    """Bursts a receiver has cut out of the stream and not yet judged by its
    frame decoder (or dropped): waiting for the demodulator, held by it,
    between it and the LDPC decoder, or between that and the frame decoder.
    Each stage counts a PDU before publishing it, so the sum may be one too
    high for an instant but never too low."""
    n = max(0, capture.published - demod.handled) + demod.pending()
    if isinstance(decoder, ldpc_decoder_block):
        n += max(0, demod.passed - decoder.frames - decoder.rejected) + max(0, decoder.frames - deframer.judged)
    else:  # gr-fec's async_decoder (C++, one PDU out per PDU in) or uncoded
        n += max(0, demod.passed - deframer.judged)
    return n


def watch_pipeline(hier, capture) -> None:
    """Give a receiver hier block ``in_flight()`` (see :func:`bursts_in_flight`)
    and ``stream_position()`` (samples its burst capture has read), and make
    its frame decoder's reassembly timeout wait while bursts are in flight."""
    dec = getattr(hier, "decoder", None)
    hier.in_flight = lambda: bursts_in_flight(capture, hier.demod, dec, hier.deframer)
    hier.stream_position = lambda: int(capture.nitems_read(0))
    hier.deframer.busy = lambda: hier.in_flight() > 0


def wire_burst_output(hier, spec: FrameSpec, mapper) -> None:
    """mapper's burst-symbol PDUs -> pdu_to_stream_c -> RRC -> the hier's
    stream output (single-carrier TX tail, coded and analog)."""
    hier.to_stream = pdu.pdu_to_stream_c(pdu.EARLY_BURST_APPEND, 1 << 16)
    hier.shaper = filter.interp_fir_filter_ccf(spec.sps, spec.rrc.tolist())
    hier.msg_connect(mapper, "out", hier.to_stream, "pdus")
    hier.connect(hier.to_stream, hier.shaper, hier)


def wire_burst_input(hier, spec: FrameSpec, threshold: float, genie_csi: bool = False,
                     dc_block: int = 0) -> None:
    """The hier's stream input -> sanitize_cc -> [dc_blocker_cc] -> matched
    RRC -> preamble detector -> burst capture -> burst_demod (single-carrier
    RX front end, coded and analog); sets
    ``hier.sanitize/mf/corr/demod/capture/burst``. ``dc_block`` > 0 inserts
    GNU Radio's DC blocker (moving averages of that length, C++): an SDR's
    LO leakage (HackRF) is a constant offset the pilots would otherwise read
    as channel; 0 leaves it out (simulated channels, genie CSI)."""
    hier.sanitize = make_sanitize()
    # the matched filter by overlap-save FFT (C++): the same output, aligned the
    # same (max difference 3e-7 of full scale), at a third of the direct FIR's
    # CPU for the 23 taps (benchmarks/results/rx_speed.md); on a stream that
    # pauses it holds back up to output_multiple() - 1 samples (hold_back)
    hier.mf = filter.fft_filter_ccf(1, spec.rrc.tolist(), 1)
    # the capture takes the samples from the matched filter and the tags from
    # the correlator (tag_delay), no delay + tag_share in between
    hier.corr = preamble_detector(sync_waveform(spec), spec.sps, rho2=threshold, aligned=False)
    hier.demod = burst_demod(spec, search=2 * _TAG_LEAD * spec.sps, genie_csi=genie_csi)
    hier.capture = hier.demod.dem.samples_needed + 8
    hier.burst, hier.backlog, bursts = make_burst_capture(hier.capture, lead=_TAG_LEAD * spec.sps,
                                                          min_gap=_TAG_LEAD * spec.sps, max_pending=8,
                                                          tag_delay=hier.corr.delay_samples)
    hier.demod.backlog = hier.backlog
    hier.demod.local_in = bursts  # bursts as numpy arrays
    hier.local = LocalPdus()  # the demodulator -> decoder -> frame decoder hand-offs (wire_decoder)
    front = [hier, hier.sanitize]
    if dc_block:
        if genie_csi:
            raise ValueError("dc_block and genie_csi together would misalign the CSI stream")
        hier.dc = filter.dc_blocker_cc(int(dc_block), True)
        front.append(hier.dc)
    hier.connect(*front, hier.mf, hier.corr, (hier.burst, 1))
    hier.connect(hier.mf, (hier.burst, 0))
    hier.msg_connect(hier.burst, "pdus", hier.demod, "in")
    large_buffers(front[1:] + [hier.mf] + hier.corr.stream_blocks())


#: items per output buffer of the receivers' stream blocks. GNU Radio's
#: default (32 KiB: 4096 complex samples) means a work() call every ~2 ms at
#: 2 Msps; each call of a Python stream block (NaN guard, burst capture) costs
#: a fixed ~0.1 ms of interpreter and gateway overhead, so under load larger
#: chunks are what keeps those blocks cheap. Buffers only cap the chunk size;
#: a block still runs as soon as any input is there (no added latency at low rates).
RX_BUFFER_ITEMS = 1 << 16


def large_buffers(blks, items: int = RX_BUFFER_ITEMS) -> None:
    for b in blks:
        # the per-port form: the all-ports form logs a line per block at INFO
        for port in range(b.output_signature().max_streams()):
            b.set_min_output_buffer(port, items)


class preamble_detector(gr.hier_block2):
    """Complex in -> the same samples out, tagged ``corr_start`` at each sync word.

    GNU Radio's ``corr_est_cc`` compares |correlation|^2 either with a fixed
    level (ABSOLUTE: depends on the received amplitude) or with ``-ln(1-t)``
    times the mean over its work buffer (DYNAMIC: measured to miss every
    burst whose preamble sits in a fade, because the buffer mean is set by the
    strong parts around it). Here the correlator input is first normalised to
    unit power by a running RMS (``blocks.rms_cf`` -> ``divide_cc``), so the
    ABSOLUTE threshold becomes a threshold on the normalised correlation
    rho^2 = |<x, s>|^2 / (|x|^2 |s|^2) in [0, 1], independent of gain and
    fading. On noise alone rho^2 is about exponential with mean 1/L for an
    L-symbol word (false alarms ~ exp(-rho2 L) per sample); a signal at
    per-symbol SNR s gives about s/(1+s). All C++ blocks; the data path is
    delayed by the correlator's own delay so tags land on the raw samples.

    ``fused`` (default: where the compiled blocks are in use,
    ``phy_blocks.native_blocks()``): the normaliser is ``rms_normalize_cc``
    and the delay with the tag transfer ``tag_align_cc`` (semcom_native.cc),
    two blocks doing the arithmetic of the six GNU Radio blocks (rms_cf,
    add_const_ff, float_to_complex, divide_cc; delay, tag_share) that
    ``fused=False`` chains, the tested reference (tests/test_native_blocks.py):
    each block is a thread, a buffer and a work() call per chunk, and the six
    took 15 % of the receiver's CPU in a 10 Msps replay. The normalised
    samples equal the chain's to 1 ulp (divide_cc divides by a complex
    number). Tags of the input stream come out once, moved by the
    correlator's delay (GNU Radio's chain passes each three times: through
    the delay and through both normaliser paths).

    ``aligned=False``: no delay and tag transfer at all; the output is the
    correlator's (the normalised samples, tagged, ``delay_samples`` behind
    the input), for a burst capture that takes the samples from the
    detector's input and the tags from this output (``make_burst_capture(...,
    tag_delay=delay_samples)``), as the receivers do: one block and one hop
    fewer per sample.
    """

    def __init__(self, waveform: np.ndarray, sps: float, rho2: float = 0.3, avg_symbols: int = 32,
                 fused: bool | None = None, aligned: bool = True):
        gr.hier_block2.__init__(self, "semcom_preamble_detector", gr.io_signature(1, 1, gr.sizeof_gr_complex),
                                gr.io_signature(1, 1, gr.sizeof_gr_complex))
        w = np.asarray(waveform, dtype=np.complex64)
        if not 0 < rho2 < 1:
            raise ValueError("rho2 must be in (0, 1)")
        self.rho2 = rho2
        # |corr|^2 <= |s|^2 * sum_window |x|^2 = |s|^2 * len(w) for unit-power x;
        # corr_est ABSOLUTE fires when |corr|^2 > t * |s|^2^2
        es = float(np.sum(np.abs(w) ** 2))
        t = rho2 * len(w) / es
        alpha = 1.0 / (avg_symbols * sps)
        self.fused = _pb.native_blocks() if fused is None else bool(fused)
        if self.fused and not _pb.native_current():
            raise RuntimeError("fused=True needs the compiled blocks (bash scripts/build_native.sh)")
        self.corr = digital.corr_est_cc(w.tolist(), sps, 0, t, digital.THRESHOLD_ABSOLUTE)
        self.delay_samples = len(w)  # output lags input by this much
        self.aligned = bool(aligned)
        # the normaliser: input -> self.norm
        if self.fused:
            self.norm = _pb._native.rms_normalize_cc(alpha, 1e-12)
            self.connect(self, self.norm)
            self._stream = [self.norm]
        else:
            self.rms = blocks.rms_cf(alpha)
            self.floor = blocks.add_const_ff(1e-12)  # all-zero input: 0/eps = 0, never NaN
            self.f2c = blocks.float_to_complex()
            self.norm = blocks.divide_cc()
            self.connect(self, (self.norm, 0))
            self.connect(self, self.rms, self.floor, self.f2c, (self.norm, 1))
            self._stream = [self.rms, self.floor, self.f2c, self.norm]
        self._stream.append(self.corr)
        if not aligned:
            self.connect(self.norm, self.corr, self)
            return
        # the input delayed by the correlator's delay, carrying its tags: one
        # block (the delayed input on port 0) or delay + tag_share
        if self.fused:
            self.share = _pb._native.tag_align_cc(len(w))
            self.connect(self, (self.share, 0))
            self._stream.append(self.share)
        else:
            self.delay = blocks.delay(gr.sizeof_gr_complex, len(w))
            self.share = blocks.tag_share(gr.sizeof_gr_complex, gr.sizeof_gr_complex)
            self.connect(self, self.delay, (self.share, 0))
            self._stream += [self.delay, self.share]
        self.connect(self.norm, self.corr, (self.share, 1))
        self.connect(self.share, self)

    def stream_blocks(self) -> list:
        return list(self._stream)


class phy_tx(gr.hier_block2):
    def __init__(self, spec: FrameSpec | None = None, **kw):
        gr.hier_block2.__init__(self, "semcom_phy_tx", gr.io_signature(0, 0, 0),
                                gr.io_signature(1, 1, gr.sizeof_gr_complex))
        self.spec = spec = spec or spec_from_kwargs(**kw)
        self.mapper = burst_mapper(spec)
        wire_encoder(self, spec, self.mapper)
        wire_burst_output(self, spec, self.mapper)


class phy_rx(gr.hier_block2):
    """``threshold``: normalised correlation rho^2 of the 32-symbol sync word
    (see :class:`preamble_detector`); ``dc_block``: DC blocker length in
    samples, 0 = none (see :func:`wire_burst_input`); ``ldpc_decoder``: one
    of :data:`LDPC_DECODERS`; ``workers``: threads per stage (demodulator,
    LDPC decoder), default by the CPUs allowed (see :func:`wire_decoder`)."""

    def __init__(self, spec: FrameSpec | None = None, threshold: float = 0.3,
                 timeout: float = 2.0, genie_csi: bool = False, ldpc_iterations: int = 50, dc_block: int = 0,
                 ldpc_decoder: str = "spa", workers: int | None = None, **kw):
        nin = 2 if genie_csi else 1
        gr.hier_block2.__init__(self, "semcom_phy_rx", gr.io_signature(nin, nin, gr.sizeof_gr_complex),
                                gr.io_signature(0, 0, 0))
        self.spec = spec = spec or spec_from_kwargs(**kw)
        wire_burst_input(self, spec, threshold, genie_csi, dc_block)
        wire_decoder(self, spec, self.demod, timeout, ldpc_iterations, ldpc_decoder, workers)
        watch_pipeline(self, self.burst)
        self.msg_connect(self.sanitize, "status", self, "status")
        if genie_csi:
            # the true channel gain stream takes the same delays as the data and
            # is cut into bursts by the same tags
            # (matched-filter group delay + the detector's correlator delay)
            self.csi_delay = blocks.delay(gr.sizeof_gr_complex, spec.rrc.size // 2 + self.corr.delay_samples)
            self.tag_share = blocks.tag_share(gr.sizeof_gr_complex, gr.sizeof_gr_complex)
            self.csi_burst = burst_capture(self.capture, lead=_TAG_LEAD * spec.sps, min_gap=_TAG_LEAD * spec.sps)
            self.connect((self, 1), self.csi_delay, (self.tag_share, 0))  # genie CSI is trusted
            self.connect(self.corr, (self.tag_share, 1))
            self.connect(self.tag_share, self.csi_burst)
            self.msg_connect(self.csi_burst, "pdus", self.demod, "csi")
