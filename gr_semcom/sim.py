"""Headless link runs: a PDU crosses phy_tx -> channel -> phy_rx in a real
GNU Radio flowgraph. Used by ``semcom transmit``, the benchmarks and the tests."""
from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pmt
from gnuradio import gr

from .blocks.pdu_util import make_pdu, pdu_parts
from .blocks.phy_hier import phy_rx, phy_tx
from .phy.channel import ChannelSpec, esn0_to_ebn0, make_channel
from .phy.frame import FrameSpec
from .phy.ofdm import OfdmSpec


def make_link_blocks(spec: FrameSpec | OfdmSpec, chan: ChannelSpec, rx_threshold: float | None = None,
                     rx_timeout: float = 2.0, genie_csi: bool = False, ldpc_decoder: str = "spa"):
    """(tx, channel, rx) hier blocks for either waveform.

    For OFDM the channel runs at one sample per "symbol unit" of the FFT: ``cfo``
    is read as a fraction of the subcarrier spacing and ``doppler`` per OFDM
    symbol, multipath delays and timing offset are in samples.
    """
    thr = {} if rx_threshold is None else {"threshold": rx_threshold}  # else each receiver's default
    if isinstance(spec, OfdmSpec):
        from .blocks.ofdm_hier import ofdm_phy_rx, ofdm_phy_tx

        if genie_csi:
            raise ValueError("genie CSI is implemented for the single-carrier waveform only")
        ch_spec = replace(chan, cfo=chan.cfo / spec.fft_len, doppler=chan.doppler / spec.fft_len)
        return ofdm_phy_tx(spec), make_channel(ch_spec, 1), ofdm_phy_rx(spec, timeout=rx_timeout,
                                                                       ldpc_decoder=ldpc_decoder, **thr)
    tx = phy_tx(spec)
    ch = make_channel(chan, spec.sps, csi_output=genie_csi)
    rx = phy_rx(spec, timeout=rx_timeout, genie_csi=genie_csi, ldpc_decoder=ldpc_decoder, **thr)
    return tx, ch, rx


class _collector(gr.basic_block):
    def __init__(self, name="collector"):
        gr.basic_block.__init__(self, name, None, None)
        self.items: list = []
        self.event = threading.Event()
        self.message_port_register_in(pmt.intern("in"))
        self.set_msg_handler(pmt.intern("in"), self.handle)

    def handle(self, msg):
        self.items.append(msg)
        self.event.set()


@dataclass
class LinkResult:
    received: bytes | None
    complete: bool
    missing: list
    frames_sent: int
    frames_ok: int
    frames_crc_fail: int
    bursts_detected: int
    false_alarms: int
    coded_ber: float
    coded_bits: int
    mean_snr_db: float
    seconds: float
    esn0_db: float
    ebn0_db: float
    lost_segments: list = field(default_factory=list)
    frame: dict = field(default_factory=dict)

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("received")
        return d


def run_link(data: bytes, spec: FrameSpec | OfdmSpec, chan: ChannelSpec, timeout: float = 60.0,
             rx_threshold: float | None = None, genie_csi: bool = False, payload_type: int = 0,
             idle_s: float = 3.0, ldpc_decoder: str = "spa") -> LinkResult:
    """Send ``data`` as one PDU and wait for the reassembled PDU, for every
    burst to be demodulated, for ``idle_s`` without receiver activity after
    the last frame was sent, or for ``timeout``."""
    tb = gr.top_block("semcom_link")
    tx, ch, rx = make_link_blocks(spec, chan, rx_threshold, max(1.0, min(5.0, timeout / 4)), genie_csi,
                                  ldpc_decoder)
    out, status, hard, sent = _collector("out"), _collector("status"), _collector("bits"), _collector("sent")
    tb.connect(tx, ch, rx)
    if genie_csi:
        tb.connect((ch, 1), (rx, 1))
    tb.msg_connect(rx, "out", out, "in")
    tb.msg_connect(rx, "status", status, "in")
    tb.msg_connect(rx, "bits", hard, "in")
    tb.msg_connect(tx.encoder if spec.code.alist is not None else tx.framer, "out", sent, "in")
    t0 = time.monotonic()
    tb.start()
    try:
        tx.framer._post(pmt.intern("in"), make_pdu({"payload_type": payload_type}, data))
        deadline = t0 + timeout
        seen, progress_at, all_bursts_at = -1, time.monotonic(), None
        while time.monotonic() < deadline:
            out.event.wait(0.05)
            now = time.monotonic()
            n = len(hard.items) + len(status.items)
            if n != seen:
                seen, progress_at = n, now
            all_bursts = bool(sent.items) and len(hard.items) >= len(sent.items)
            if all_bursts:
                all_bursts_at = all_bursts_at or now
            # done: the PDU is out and every burst was demodulated (or the
            # receiver has been idle for 1 s: the rest were lost); or every
            # burst demodulated and no PDU (all frames failed CRC, so the
            # reassembler has nothing) after a short grace period
            if out.items and (all_bursts or now - progress_at > 1.0):
                break
            if all_bursts and now - all_bursts_at > 0.5:
                break
            # every frame went out and the receiver has been idle for idle_s:
            # the remaining bursts were never detected (deep noise or fade)
            if sent.items and now - progress_at > idle_s:
                break
        if not out.items:
            rx.deframer.flush()
            time.sleep(0.1)
    finally:
        tb.stop()
        tb.wait()
    seconds = time.monotonic() - t0
    received, complete, missing = None, False, []
    if out.items:
        meta, arr = pdu_parts(out.items[0])
        received = arr.tobytes()
        complete = bool(meta.get("complete"))
        missing = [tuple(m) for m in (meta.get("missing") or [])]
    sts = [pmt.to_python(m) for m in status.items]
    frames = [s for s in sts if isinstance(s, dict) and s.get("event") == "frame"]
    drops = [s for s in sts if isinstance(s, dict) and s.get("event") == "burst_drop"]
    tx_bits = np.array([pdu_parts(m)[1] for m in sent.items]) if sent.items else np.zeros((0, 0))
    errs, nbits = 0, 0
    for m in hard.items:
        rb = pdu_parts(m)[1]
        if tx_bits.size:
            d = (tx_bits[:, : rb.size] != rb[None, :]).sum(1)
            errs += int(d.min())
            nbits += rb.size
    snrs = [f["snr_db"] for f in frames if f.get("snr_db") is not None]
    bps = spec.constellation.bits_per_symbol
    return LinkResult(
        received=received, complete=complete, missing=missing,
        frames_sent=len(sent.items), frames_ok=sum(1 for f in frames if f.get("crc_ok")),
        frames_crc_fail=sum(1 for f in frames if not f.get("crc_ok")),
        bursts_detected=len(hard.items), false_alarms=len(drops),
        coded_ber=errs / nbits if nbits else float("nan"), coded_bits=nbits,
        mean_snr_db=float(np.mean(snrs)) if snrs else float("nan"), seconds=seconds,
        esn0_db=chan.esn0_db, ebn0_db=esn0_to_ebn0(chan.esn0_db, bps, spec.code.rate),
        lost_segments=sorted(set(range(len(sent.items)))
                             - {f["seg_index"] for f in frames if f.get("crc_ok")}),
        frame=spec.describe())


@dataclass
class AnalogResult:
    symbols: np.ndarray | None  # equalised received symbols (None: burst lost)
    snr_db: float
    seconds: float
    bursts_dropped: int


def run_analog(symbols: np.ndarray, chan: ChannelSpec, spec: FrameSpec | None = None,
               timeout: float = 10.0, idle_s: float = 2.0, rx_threshold: float = 0.3) -> AnalogResult:
    """Send complex JSCC symbols as one uncoded burst (blocks/analog.py)
    through the channel; wait for the equalised symbols (or timeout)."""
    from .blocks.analog import analog_rx, analog_spec, analog_tx

    spec = spec or analog_spec()
    x = np.asarray(symbols, np.complex64).ravel()
    tb = gr.top_block("semcom_analog")
    tx = analog_tx(spec)
    ch = make_channel(chan, spec.sps)
    rx = analog_rx(spec, n_symbols=x.size, threshold=rx_threshold)
    out, status = _collector("out"), _collector("status")
    tb.connect(tx, ch, rx)
    tb.msg_connect(rx, "out", out, "in")
    tb.msg_connect(rx, "status", status, "in")
    t0 = time.monotonic()
    tb.start()
    try:
        tx.mapper._post(pmt.intern("in"), make_pdu({}, x))
        deadline = t0 + timeout
        while time.monotonic() < deadline and not out.items:
            out.event.wait(0.05)
            # the burst leaves at once: nothing within idle_s means it was dropped or never detected
            if time.monotonic() - t0 > idle_s:
                break
    finally:
        tb.stop()
        tb.wait()
    drops = sum(1 for m in status.items if (pmt.to_python(m) or {}).get("event") == "burst_drop")
    if not out.items:
        return AnalogResult(None, float("nan"), time.monotonic() - t0, drops)
    meta, y = pdu_parts(out.items[0])
    return AnalogResult(np.asarray(y, np.complex64), float(meta.get("snr_db", float("nan"))),
                        time.monotonic() - t0, drops)
