"""Analog (uncoded, learned-symbol) bursts for JSCC payloads such as DeepSC.

A c32 PDU of channel symbols (unit average power) is placed in the data
slots of one single-carrier burst of ``spec`` (same preamble, pilots, RRC
and detector as the digital PHY; no FEC, no mapping); the receiver detects,
synchronises and equalises the burst exactly as the digital receiver does
(pilot-aided channel estimate, zero-forcing) and outputs the equalised data
symbols as a c32 PDU with the estimated SNR in its metadata. That is the
channel a JSCC decoder was trained for: y = x + n / h.

One PDU must fit one burst (``spec.n_data`` symbols: 3600 for QPSK-sized
4-codeword frames); the received PDU carries the first ``n`` symbols where
``n`` is the sender's count (metadata ``n_symbols`` of the burst is not on
the air, so the receiver is told ``n`` at construction, 0 = the whole burst).
"""
from __future__ import annotations

import logging

import numpy as np
from gnuradio import gr

from ..phy.frame import FrameSpec
from .pdu_util import make_pdu, pdu_parts
from .phy_blocks import IN, OUT, STATUS, _status
from .phy_hier import spec_from_kwargs, watch_pipeline, wire_burst_input, wire_burst_output

log = logging.getLogger(__name__)


def analog_spec(**kw) -> FrameSpec:
    """The burst layout analog links use by default: QPSK-sized, uncoded."""
    kw.setdefault("code_rate", "none")
    return spec_from_kwargs(**kw)


class analog_mapper(gr.basic_block):
    """c32 PDU (<= spec.n_data symbols) -> burst symbols PDU."""

    def __init__(self, spec: FrameSpec):
        gr.basic_block.__init__(self, "semcom_analog_mapper", None, None)
        self.spec = spec
        self.message_port_register_in(IN)
        self.message_port_register_out(OUT)
        self.message_port_register_out(STATUS)
        self.set_msg_handler(IN, self.handle)

    def build(self, x: np.ndarray) -> np.ndarray:
        spec = self.spec
        x = np.asarray(x, np.complex64).ravel()
        if x.size == 0 or x.size > spec.n_data:
            raise ValueError(f"analog PDU of {x.size} symbols; one burst carries 1..{spec.n_data}")
        if not np.all(np.isfinite(x)):
            raise ValueError("analog PDU has non-finite symbols")
        # every analog PDU is its own burst: idle tail as after a PDU's last coded burst
        return np.concatenate([spec.place_data(x), np.zeros(spec.flush_symbols, np.complex64)])

    def handle(self, msg):
        try:
            meta, x = pdu_parts(msg)
            if x.dtype != np.complex64:
                raise ValueError("analog_mapper takes c32 PDUs")
            sym = self.build(x)
        except ValueError as exc:
            log.error("analog_mapper: %s", exc)
            self.message_port_pub(STATUS, _status(event="tx_error", error=str(exc)))
            return
        self.message_port_pub(OUT, make_pdu({"n_symbols": int(x.size)}, sym))


class analog_tx(gr.hier_block2):
    """c32 PDU in (port ``in``) -> complex baseband burst out."""

    def __init__(self, spec: FrameSpec | None = None, **kw):
        gr.hier_block2.__init__(self, "semcom_analog_tx", gr.io_signature(0, 0, 0),
                                gr.io_signature(1, 1, gr.sizeof_gr_complex))
        self.spec = spec = spec or analog_spec(**kw)
        self.message_port_register_hier_in("in")
        self.message_port_register_hier_out("status")
        self.mapper = analog_mapper(spec)
        self.msg_connect(self, "in", self.mapper, "in")
        self.msg_connect(self.mapper, "status", self, "status")
        wire_burst_output(self, spec, self.mapper)


class analog_deframer(gr.basic_block):
    """Equalised-symbol PDUs of accepted bursts -> the first ``n_symbols``."""

    def __init__(self, n_symbols: int = 0):
        gr.basic_block.__init__(self, "semcom_analog_deframer", None, None)
        self.n = int(n_symbols)
        self.judged = 0  # symbol PDUs handled (the receiver's in-flight count ends here)
        self.message_port_register_in(IN)
        self.message_port_register_out(OUT)
        self.set_msg_handler(IN, self.handle)

    def handle(self, msg):
        try:
            self._take(msg)
        finally:
            self.judged += 1

    def _take(self, msg):
        try:
            meta, y = pdu_parts(msg)
        except ValueError as exc:
            log.error("analog_deframer: %s", exc)
            return
        y = y[: self.n] if self.n else y
        meta["n_symbols"] = int(y.size)
        self.message_port_pub(OUT, make_pdu(meta, np.asarray(y, np.complex64)))


class analog_rx(gr.hier_block2):
    """Complex baseband in -> c32 PDU of equalised symbols per burst (``out``),
    burst events on ``status``. Same front end as ``phy_rx``."""

    def __init__(self, spec: FrameSpec | None = None, n_symbols: int = 0, threshold: float = 0.3, **kw):
        gr.hier_block2.__init__(self, "semcom_analog_rx", gr.io_signature(1, 1, gr.sizeof_gr_complex),
                                gr.io_signature(0, 0, 0))
        self.spec = spec = spec or analog_spec(**kw)
        self.message_port_register_hier_out("out")
        self.message_port_register_hier_out("status")
        wire_burst_input(self, spec, threshold)
        self.deframer = analog_deframer(n_symbols)
        self.msg_connect(self.demod, "symbols", self.deframer, "in")
        self.msg_connect(self.deframer, "out", self, "out")
        self.msg_connect(self.demod, "status", self, "status")
        self.msg_connect(self.sanitize, "status", self, "status")
        watch_pipeline(self, self.burst)
