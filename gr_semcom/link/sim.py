"""Headless link runs: a PDU crosses phy_tx -> channel -> phy_rx in a real
GNU Radio flowgraph. Used by ``semcom transmit``, the benchmarks and the tests."""
from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pmt
from gnuradio import gr

from ..blocks.pdu_util import make_pdu, pdu_parts
from ..blocks.phy_hier import phy_rx, phy_tx
from ..phy import framing
from ..phy.channel import ChannelSpec, esn0_to_ebn0, make_channel
from ..phy.frame import FrameSpec
from ..phy.ofdm import OfdmSpec


def make_link_blocks(spec: FrameSpec | OfdmSpec, chan: ChannelSpec, rx_threshold: float | None = None,
                     rx_timeout: float = 2.0, genie_csi: bool = False, ldpc_decoder: str = "spa"):
    """(tx, channel, rx) hier blocks for either waveform.

    For OFDM the channel runs at one sample per "symbol unit" of the FFT: ``cfo``
    is read as a fraction of the subcarrier spacing and ``doppler`` per OFDM
    symbol, multipath delays and timing offset are in samples.
    """
    thr = {} if rx_threshold is None else {"threshold": rx_threshold}  # else each receiver's default
    if isinstance(spec, OfdmSpec):
        from ..blocks.ofdm_hier import ofdm_phy_rx, ofdm_phy_tx

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
    """One PDU across the link, every transmitted frame accounted for:
    ``frames_ok + frames_crc_fail + frames_undetected == frames_sent`` (a
    frame is *undetected* when no burst reached the frame decoder at its
    position: missed by the preamble detector, or dropped by the
    demodulator, with the reason in ``frame_outcomes``). ``drained`` is False
    when the run hit its timeout with bursts still inside the receiver
    (``stop_reason`` says how many); those frames are then counted as
    undetected, outcome ``"in flight at timeout"``."""
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
    frames_undetected: int = 0
    #: one outcome per transmitted frame, in order: "ok", "crc", "undetected" or "dropped: <reason>"
    frame_outcomes: list = field(default_factory=list)
    drained: bool = True
    stop_reason: str = "drained"

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("received")
        outcomes = d.pop("frame_outcomes")
        d["outcome_counts"] = {k: outcomes.count(k) for k in sorted(set(outcomes))}
        return d


def link_timeout(n_frames: int, spec) -> float:
    """Upper bound on one link run, from the amount sent: 20 s of set-up and
    tail plus 0.5 s per frame (measured cost per frame on one loaded core of
    the slowest receiver path, gr-fec LDPC at 16QAM: about 0.05 s; the bound
    is ten times that, so only a stalled receiver reaches it)."""
    return 20.0 + 0.5 * n_frames * max(1, getattr(spec, "codewords", 1))


def tx_layout(spec, tx, n_frames: int) -> tuple[list[tuple[int, int]], int]:
    """(start, end) sample offsets of each burst at the TX output, and the
    total number of samples the TX puts out for one PDU. pdu_to_stream_c
    sends nothing while idle, so its bursts lie back to back: burst k starts
    at k burst lengths, and the PDU's last burst carries the idle tail the
    transmitters append."""
    if isinstance(spec, OfdmSpec):
        length, tail = spec.burst_samples, tx.tail.tail
    else:
        length, tail = spec.burst_samples, spec.flush_symbols * spec.sps
    bursts = [(k * length, (k + 1) * length) for k in range(n_frames)]
    return bursts, n_frames * length + tail


def account_frames(tx_bursts: list, frames: list, drops: list, tolerance: float) -> tuple[list, int]:
    """Give every transmitted burst one outcome from the receiver's reports
    (frame events with ``offset`` and, when good, ``seg_index``; burst drops
    with ``offset`` and ``reason``). Offsets of the receiver's stream are the
    TX offsets plus a constant delay (filters, channel), estimated from the
    good frames; a report farther than ``tolerance`` samples from every
    burst is a false alarm. Returns (outcomes, false_alarms)."""
    n = len(tx_bursts)
    starts = np.array([b[0] for b in tx_bursts], float)
    delays = [f["offset"] - starts[f["seg_index"]] for f in frames
              if f.get("crc_ok") and f.get("seg_index", n) < n and np.isfinite(f.get("offset", np.nan))]
    delay = float(np.median(delays)) if delays else 0.0
    rank = {"ok": 3, "crc": 2, "dropped": 1}
    outcomes = ["undetected"] * n
    false_alarms = 0

    def nearest(off):
        if n == 0 or not np.isfinite(off):
            return None
        i = int(np.argmin(np.abs(starts + delay - off)))
        return i if abs(starts[i] + delay - off) <= tolerance else None

    for f in frames:
        i = f["seg_index"] if f.get("crc_ok") and f.get("seg_index", n) < n else nearest(f.get("offset", np.nan))
        if i is None:
            false_alarms += 1
            continue
        new = "ok" if f.get("crc_ok") else "crc"
        if rank[new] > rank.get(outcomes[i], 0):  # drops are assigned after all frames
            outcomes[i] = new
    for d in drops:
        i = nearest(d.get("offset", np.nan))
        if i is None:
            false_alarms += 1
        elif outcomes[i] == "undetected":
            outcomes[i] = f"dropped: {d.get('reason', '?')}"
    return outcomes, false_alarms


def hold_back(rx, chan: ChannelSpec) -> int:
    """Samples a receiver's burst capture never reads of what the TX sent:
    what blocks with history keep at the end of a stream that pauses (the
    correlator its sync word's length, measured 45-57 samples for the
    64-sample word; the channel's FIRs about 14, 64 allowed; static taps;
    the single-carrier matched filter's FFT block)."""
    mf = getattr(rx, "mf", None)  # the FFT matched filter works in blocks of output_multiple()
    return rx.corr.delay_samples + 64 + 2 * len(chan.static_taps or []) + (mf.output_multiple() - 1 if mf else 0)


def wait_drained(rx, needed: float, deadline: float) -> bool:
    """Until ``deadline`` (monotonic): wait for the receiver's burst capture to
    have read ``needed`` samples with no burst left inside the receiver
    (asked twice, 20 ms apart: each stage counts a burst before passing it
    on). True when drained, False at the deadline."""
    while time.monotonic() < deadline:
        if rx.stream_position() >= needed and rx.in_flight() == 0:
            time.sleep(0.02)
            if rx.in_flight() == 0:
                return True
        time.sleep(0.01)
    return False


def _wait_for(cond, limit: float = 5.0) -> bool:
    """Poll ``cond`` until it holds (messages already published on their way
    to a collector's queue) or ``limit`` seconds pass."""
    t = time.monotonic()
    while not cond():
        if time.monotonic() - t > limit:
            return False
        time.sleep(0.002)
    return True


def _wait_progress(block, cond, stall: float) -> bool:
    """Poll ``cond`` until it holds, as long as ``block`` keeps working: the
    wait ends after ``stall`` seconds in which it finished no item and
    published nothing (an encoder's rate search takes as long as the machine
    makes it; a hung one does not hold the run forever)."""
    def mark():
        return block.items_done, sum(block.published.values())

    last, t = mark(), time.monotonic()
    while not cond():
        now = mark()
        if now != last:
            last, t = now, time.monotonic()
        elif time.monotonic() - t > stall:
            return False
        time.sleep(0.01)
    return True


def _feed(encoder, inputs: list, encode_timeout: float) -> None:
    """Post the input PDUs to a running encoder block, end its input once all
    are queued (message delivery is asynchronous) and wait until it has worked
    them off (:func:`_wait_progress`)."""
    for meta, data in inputs:
        encoder._post(pmt.intern("in"), make_pdu(meta, np.frombuffer(bytes(data), np.uint8)))
    _wait_for(lambda: encoder.items_in >= len(inputs), 30.0)
    encoder.finish()
    _wait_progress(encoder, lambda: encoder.items_in >= len(inputs) and encoder.settled(), encode_timeout)


def run_link(data: bytes, spec: FrameSpec | OfdmSpec, chan: ChannelSpec, timeout: float | None = None,
             rx_threshold: float | None = None, genie_csi: bool = False, payload_type: int = 0,
             ldpc_decoder: str = "spa") -> LinkResult:
    """Send ``data`` as one PDU and run until every transmitted frame is
    accounted for: the receiver's burst capture has read every sample the TX
    sent for it (:func:`tx_layout`, less :func:`hold_back`), and no burst is
    left inside the receiver (captured, demodulated or decoded but not yet
    judged by the frame decoder). Then the reassembler
    is flushed. ``timeout`` (default :func:`link_timeout` of the amount
    sent) only ends a run whose receiver has stalled; the result then says
    so (``drained`` False). Nothing here depends on how fast the machine is."""
    n_frames = framing.frame_count(len(data), spec.capacity) if data else 0
    timeout = link_timeout(n_frames, spec) if timeout is None else float(timeout)
    tb = gr.top_block("semcom_link")
    # the receiver's own reassembly timeout is not used: this runner flushes it once drained
    tx, ch, rx = make_link_blocks(spec, chan, rx_threshold, 0.0, genie_csi, ldpc_decoder)
    out, status, hard, sent = _collector("out"), _collector("status"), _collector("bits"), _collector("sent")
    tb.connect(tx, ch, rx)
    if genie_csi:
        tb.connect((ch, 1), (rx, 1))
    tb.msg_connect(rx, "out", out, "in")
    tb.msg_connect(rx, "status", status, "in")
    tb.msg_connect(rx, "bits", hard, "in")
    tb.msg_connect(tx.encoder if spec.code.alist is not None else tx.framer, "out", sent, "in")
    # the burst capture reads what the TX sent (rescaled by the channel's SRO)
    # but for what blocks with history hold back; the idle tail after the last
    # burst (278 samples single carrier, 1280 OFDM) still completes the last
    # capture within what arrives
    bursts, total = tx_layout(spec, tx, n_frames)
    needed = total * (1 - abs(chan.sro_ppm) * 1e-6) - hold_back(rx, chan)
    t0 = time.monotonic()
    tb.start()
    try:
        tx.framer._post(pmt.intern("in"), make_pdu({"payload_type": payload_type}, data))
        drained = wait_drained(rx, needed, t0 + timeout)
        if drained:
            stop_reason = "drained"
        else:
            stop_reason = (f"timeout after {timeout:.0f} s: receiver read {rx.stream_position()} of {total} "
                           f"samples, {rx.in_flight()} bursts inside it")
        # every report published so far reaches the collectors (message delivery
        # is asynchronous): one status event per judged frame and per drop
        dec = getattr(rx, "decoder", None)
        reports = rx.deframer.judged + rx.demod.dropped + getattr(dec, "rejected", 0)
        _wait_for(lambda: len(status.items) >= reports)
        n_status = len(status.items)
        rx.deframer.flush()
        # the flush publishes on ``out``; wait for the message to be delivered
        _wait_for(lambda: len(out.items) >= rx.deframer.pdus_out)
    finally:
        tb.stop()
        tb.wait()
    seconds = time.monotonic() - t0
    received, complete, missing = None, False, [(0, len(data))] if data else []  # nothing came: all missing
    if out.items:
        meta, arr = pdu_parts(out.items[0])
        received = arr.tobytes()
        complete = bool(meta.get("complete"))
        missing = [tuple(m) for m in (meta.get("missing") or [])]
    sts = [pmt.to_python(m) for m in status.items[:n_status]]
    frames = [s for s in sts if isinstance(s, dict) and s.get("event") == "frame"]
    drops = [s for s in sts if isinstance(s, dict) and s.get("event") == "burst_drop"]
    burst_len = float(bursts[0][1] - bursts[0][0]) if bursts else 1.0
    outcomes, false_alarms = account_frames(bursts, frames, drops, tolerance=burst_len / 2)
    if not drained:
        outcomes = [o if o in ("ok", "crc") else "in flight at timeout" for o in outcomes]
    tx_bits = np.array([pdu_parts(m)[1] for m in sent.items]) if sent.items else np.zeros((0, 0))
    errs, nbits = 0, 0
    for m in hard.items:
        rb = pdu_parts(m)[1]
        if tx_bits.size:
            d = (tx_bits[:, : rb.size] != rb[None, :]).sum(1)
            errs += int(d.min())
            nbits += rb.size
    snrs = [f["snr_db"] for f in frames if f.get("snr_db") is not None and np.isfinite(f["snr_db"])]
    bps = spec.constellation.bits_per_symbol
    n_ok, n_crc = outcomes.count("ok"), outcomes.count("crc")
    return LinkResult(
        received=received, complete=complete, missing=missing,
        frames_sent=n_frames, frames_ok=n_ok, frames_crc_fail=n_crc,
        bursts_detected=len(hard.items), false_alarms=false_alarms,
        coded_ber=errs / nbits if nbits else float("nan"), coded_bits=nbits,
        mean_snr_db=float(np.mean(snrs)) if snrs else float("nan"), seconds=seconds,
        esn0_db=chan.esn0_db, ebn0_db=esn0_to_ebn0(chan.esn0_db, bps, spec.code.rate),
        lost_segments=[i for i, o in enumerate(outcomes) if o != "ok"],
        frame=spec.describe(), frames_undetected=n_frames - n_ok - n_crc, frame_outcomes=outcomes,
        drained=drained, stop_reason=stop_reason)


@dataclass
class AnalogResult:
    symbols: np.ndarray | None  # equalised received symbols (None: burst lost)
    snr_db: float
    seconds: float
    bursts_dropped: int


def run_analog(symbols: np.ndarray, chan: ChannelSpec, spec: FrameSpec | None = None,
               timeout: float = 20.0, rx_threshold: float = 0.3) -> AnalogResult:
    """Send complex JSCC symbols as one uncoded burst (blocks/analog.py)
    through the channel; run until the receiver has read the whole burst and
    its idle tail and holds nothing still being demodulated (the same
    drain rule as :func:`run_link`), or ``timeout`` if it stalls."""
    from ..blocks.analog import analog_rx, analog_spec, analog_tx

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
    total = spec.burst_samples + spec.flush_symbols * spec.sps
    needed = total * (1 - abs(chan.sro_ppm) * 1e-6) - hold_back(rx, chan)
    t0 = time.monotonic()
    tb.start()
    try:
        tx.mapper._post(pmt.intern("in"), make_pdu({}, x))
        wait_drained(rx, needed, t0 + timeout)
        _wait_for(lambda: len(out.items) >= rx.deframer.judged)
        _wait_for(lambda: len(status.items) >= rx.demod.dropped)
    finally:
        tb.stop()
        tb.wait()
    drops = sum(1 for m in status.items if (pmt.to_python(m) or {}).get("event") == "burst_drop")
    if not out.items:
        return AnalogResult(None, float("nan"), time.monotonic() - t0, drops)
    meta, y = pdu_parts(out.items[0])
    return AnalogResult(np.asarray(y, np.complex64), float(meta.get("snr_db", float("nan"))),
                        time.monotonic() - t0, drops)


def link_columns(r) -> dict:
    """The PHY columns of a sweep row from one ``sim.LinkResult`` (or None:
    nothing was sent): frames sent / ok; BLER = 1 - ok / sent (after LDPC
    decoding and CRC); ``channel_ber``, the raw BER of the coded bits
    (hard decisions on the demapper's LLRs, before decoding) over the
    bursts the receiver detected (undetected bursts count in BLER only);
    ``erased_fraction``, the share of the PDU's bytes that arrived as
    erasures (a CRC-checked PHY delivers the rest exactly)."""
    if r is None:
        return {"frames_sent": 0, "frames_ok": 0, "bler": float("nan"), "channel_ber": float("nan"),
                "channel_bits": 0, "erased_fraction": float("nan")}
    n = len(r.received) if r.received is not None else 0
    lost = sum(b - a for a, b in r.missing) if r.received is not None else 0
    return {"frames_sent": r.frames_sent, "frames_ok": r.frames_ok,
            "bler": 1 - r.frames_ok / r.frames_sent if r.frames_sent else float("nan"),
            "channel_ber": r.coded_ber, "channel_bits": r.coded_bits,
            "erased_fraction": min(1.0, lost / n) if n else 1.0}


@dataclass
class BlocksRun:
    """One run of a system's own encoder and decoder blocks around the PHY
    (:func:`run_blocks`). ``sent``: the PDUs the encoder block put out, in
    order (PDU k has the frame header's ``msg_id`` k); ``received``: the
    receiver's reassembled PDUs by ``msg_id`` (metadata with ``missing``
    byte ranges); ``decoded``: the decoder block's outputs, in order;
    ``pdu_links``: one :class:`LinkResult` per sent PDU (its frames'
    outcomes); ``link``: the whole run (every frame accounted for);
    ``events``: the status messages of the encoder and decoder blocks."""
    sent: list
    received: dict
    decoded: list
    pdu_links: list
    link: LinkResult
    events: list
    seconds: float
    analog_sent: list = field(default_factory=list)
    analog_received: list = field(default_factory=list)


def run_blocks(encoder, decoder, inputs: list, spec: FrameSpec, chan: ChannelSpec, timeout: float | None = None,
               rx_threshold: float | None = None, ldpc_decoder: str = "spa", encode_timeout: float = 900.0,
               analog: tuple | None = None, ports: tuple = ("out", "in")) -> BlocksRun:
    """A system's flowgraph, as a GRC user builds it: input PDUs -> the
    system's encoder block -> ``phy_tx`` -> channel -> ``phy_rx`` -> the
    system's decoder block. ``inputs``: (metadata, u8 array) PDUs as
    ``image_source`` makes them. Runs until the encoder has worked off every
    input (:meth:`finish` ends a partial batch), every frame it caused is
    accounted for (the drain rule of :func:`run_link`, over all PDUs back to
    back) and the decoder has worked off every reassembled PDU.
    ``encode_timeout``: seconds the encoder may go without finishing an
    input or publishing (Seb's rate search of a whole set counts as one
    step: about a minute per four images on one core, more on a busy one).
    ``analog``: (encoder port, decoder port, analog burst spec) of a second
    chain, ``analog_tx`` -> its own channel (same model and Es/N0, another
    seed) -> ``analog_rx``, drained the same way (Multi-SC's captions).
    ``ports``: the encoder's output (or a tuple of outputs, all into the one
    ``phy_tx``, e.g. Multi-SC's slice and its digital captions) and the
    decoder's input on the digital chain."""
    from ..blocks.analog import analog_rx, analog_tx

    tb = gr.top_block("semcom_system")
    tx, ch, rx = make_link_blocks(spec, chan, rx_threshold, 0.0, False, ldpc_decoder)
    asent, arecv = _collector("analog_sent"), _collector("analog_recv")
    if analog is not None:
        a_out, a_in, aspec = analog
        achan = replace(chan, seed=chan.seed + 7919)
        atx, arx = analog_tx(aspec), analog_rx(aspec, n_symbols=0, threshold=rx_threshold or 0.3)
        tb.connect(atx, make_channel(achan, aspec.sps), arx)
        tb.msg_connect(encoder, a_out, atx, "in")
        tb.msg_connect(encoder, a_out, asent, "in")
        tb.msg_connect(arx, "out", decoder, a_in)
        tb.msg_connect(arx, "out", arecv, "in")
    sent, recv, dec, status, events, hard, coded = (_collector(n) for n in
                                                    ("sent", "recv", "dec", "status", "events", "bits", "coded"))
    tb.connect(tx, ch, rx)
    out_ports = (ports[0],) if isinstance(ports[0], str) else tuple(ports[0])
    for port in out_ports:
        tb.msg_connect(encoder, port, tx, "in")
        tb.msg_connect(encoder, port, sent, "in")
    tb.msg_connect(rx, "out", decoder, ports[1])
    tb.msg_connect(rx, "out", recv, "in")
    tb.msg_connect(decoder, "out", dec, "in")
    tb.msg_connect(rx, "status", status, "in")
    tb.msg_connect(rx, "bits", hard, "in")
    tb.msg_connect(encoder, "status", events, "in")
    tb.msg_connect(decoder, "status", events, "in")
    tb.msg_connect(tx.encoder if spec.code.alist is not None else tx.framer, "out", coded, "in")
    t0 = time.monotonic()
    tb.start()
    try:
        _feed(encoder, inputs, encode_timeout)
        # what the encoder published reaches the TX (and our tap) in order
        n_pub = sum(encoder.published.get(port, 0) for port in out_ports)
        _wait_for(lambda: len(sent.items) >= n_pub and tx.framer.msg_id >= n_pub, 10.0)
        pdus = [pdu_parts(m) for m in sent.items]
        counts = [framing.frame_count(d.size, spec.capacity) if d.size else 0 for _, d in pdus]
        n_frames = sum(counts)
        timeout = link_timeout(n_frames, spec) if timeout is None else float(timeout)
        bursts, total, first = [], 0, []
        for c in counts:
            first.append(len(bursts))
            b, n = tx_layout(spec, tx, c) if c else ([], 0)
            bursts += [(total + s, total + e) for s, e in b]
            total += n
        needed = total * (1 - abs(chan.sro_ppm) * 1e-6) - hold_back(rx, chan)
        t_link = time.monotonic()
        drained = wait_drained(rx, needed, t_link + timeout)
        if analog is not None:  # every analog burst through its receiver (one burst + idle tail per PDU)
            _wait_for(lambda: len(asent.items) >= encoder.published.get(a_out, 0), 10.0)
            a_total = len(asent.items) * (aspec.burst_samples + aspec.flush_symbols * aspec.sps)
            a_needed = a_total * (1 - abs(chan.sro_ppm) * 1e-6) - hold_back(arx, achan)
            drained &= wait_drained(arx, a_needed, t_link + timeout)
            _wait_for(lambda: len(arecv.items) >= arx.deframer.judged)
            # and every one of them is queued inside the decoder: its handler runs on its own thread, after our
            # tap's may have (a caption whose slice was lost was dropped when the run stopped before it arrived)
            _wait_for(lambda: getattr(decoder, "analog_in", len(arecv.items)) >= len(arecv.items))
        stop_reason = "drained" if drained else (
            f"timeout after {timeout:.0f} s: receiver read {rx.stream_position()} of {total} samples, "
            f"{rx.in_flight()} bursts inside it")
        reports = rx.deframer.judged + rx.demod.dropped + getattr(getattr(rx, "decoder", None), "rejected", 0)
        _wait_for(lambda: len(status.items) >= reports)
        n_status = len(status.items)
        rx.deframer.flush()
        _wait_for(lambda: len(recv.items) >= rx.deframer.pdus_out)
        # the decoder has every reassembled PDU (blocks pairing two inputs count their digital one) and is idle
        arrived = (lambda: decoder.digital_in) if hasattr(decoder, "digital_in") else (lambda: decoder.items_in)
        _wait_for(lambda: arrived() >= len(recv.items) and decoder.settled(), 120.0)
        _wait_for(lambda: len(dec.items) >= decoder.published.get("out", 0), 10.0)
    finally:
        tb.stop()
        tb.wait()
    seconds = time.monotonic() - t0
    sts = [pmt.to_python(m) for m in status.items[:n_status]]
    frames = [dict(s) for s in sts if isinstance(s, dict) and s.get("event") == "frame"]
    for f in frames:  # frame index over the whole run: the PDU's first frame + its segment index
        if f.get("crc_ok") and f.get("msg_id") is not None and f["msg_id"] < len(first):
            f["seg_index"] = first[f["msg_id"]] + f.get("seg_index", 0)
        else:
            f["seg_index"] = n_frames
    drops = [s for s in sts if isinstance(s, dict) and s.get("event") == "burst_drop"]
    burst_len = float(bursts[0][1] - bursts[0][0]) if bursts else 1.0
    outcomes, false_alarms = account_frames(bursts, frames, drops, tolerance=burst_len / 2)
    if not drained:
        outcomes = [o if o in ("ok", "crc") else "in flight at timeout" for o in outcomes]
    received = {}
    for m in recv.items:
        meta, arr = pdu_parts(m)
        received[int(meta.get("msg_id", -1))] = (meta, arr.tobytes())
    bps = spec.constellation.bits_per_symbol
    snrs = [f["snr_db"] for f in frames if f.get("snr_db") is not None and np.isfinite(f["snr_db"])]
    coded_bits = np.array([pdu_parts(m)[1] for m in coded.items]) if coded.items else np.zeros((0, 0))
    errs, nbits = 0, 0
    for m in hard.items:
        rb = pdu_parts(m)[1]
        if coded_bits.size:
            errs += int((coded_bits[:, : rb.size] != rb[None, :]).sum(1).min())
            nbits += rb.size

    def result(k_out: list, data: bytes | None, meta: dict | None, n: int, nbytes: int = 0) -> LinkResult:
        ok, crc = k_out.count("ok"), k_out.count("crc")
        return LinkResult(
            received=data, complete=bool(meta.get("complete")) if meta else False,
            # a PDU that never came out: every byte of it missing
            missing=[tuple(x) for x in (meta.get("missing") or [])] if meta else ([(0, nbytes)] if nbytes else []),
            frames_sent=n, frames_ok=ok, frames_crc_fail=crc, bursts_detected=len(hard.items),
            false_alarms=false_alarms, coded_ber=errs / nbits if nbits else float("nan"), coded_bits=nbits,
            mean_snr_db=float(np.mean(snrs)) if snrs else float("nan"), seconds=seconds, esn0_db=chan.esn0_db,
            ebn0_db=esn0_to_ebn0(chan.esn0_db, bps, spec.code.rate),
            lost_segments=[i for i, o in enumerate(k_out) if o != "ok"], frame=spec.describe(),
            frames_undetected=n - ok - crc, frame_outcomes=k_out, drained=drained, stop_reason=stop_reason)

    pdu_links = []
    for k, c in enumerate(counts):
        meta, data = received.get(k, (None, None))
        pdu_links.append(result(outcomes[first[k]:first[k] + c], data, meta, c, int(pdus[k][1].size)))
    whole = result(outcomes, None, None, n_frames)
    decoded = [pdu_parts(m) for m in dec.items]
    evs = [pmt.to_python(m) for m in events.items]
    return BlocksRun(sent=[(meta, d.tobytes()) for meta, d in pdus], received=received,
                     decoded=[(meta, d.tobytes()) for meta, d in decoded], pdu_links=pdu_links, link=whole,
                     events=[e for e in evs if isinstance(e, dict)], seconds=seconds,
                     analog_sent=[pdu_parts(m) for m in asent.items], analog_received=[pdu_parts(m) for m in arecv.items])


def payload_manifest(pdus: list) -> list[dict]:
    """What crossed the PHY, one entry per PDU in order: (metadata, bytes)
    pairs -> {index, name, kind, payload_type, bytes, sha256}. ``semcom
    transmit`` writes it as payloads.json; a GRC run's encoder output gives
    the same list for the same options and images."""
    import hashlib

    out = []
    for k, (meta, data) in enumerate(pdus):
        data = bytes(data)
        out.append({"index": k, "name": str(meta.get("name", "")), "kind": str(meta.get("kind", "")),
                    "payload_type": int(meta.get("payload_type", 0)), "bytes": len(data),
                    "sha256": hashlib.sha256(data).hexdigest()})
    return out


def run_analog_blocks(encoder, decoder, inputs: list, spec: FrameSpec, chan: ChannelSpec,
                      timeout: float = 60.0, rx_threshold: float = 0.3, encode_timeout: float = 900.0) -> BlocksRun:
    """An analog system's flowgraph (DeepJSCC): input PDUs -> encoder block ->
    ``analog_tx`` -> channel -> ``analog_rx`` -> decoder block, drained as
    :func:`run_analog` (every burst and its idle tail read, nothing left in
    the receiver), then the decoder worked off. ``spec``: the analog burst
    layout of ``analog_tx`` / ``analog_rx``."""
    from ..blocks.analog import analog_rx, analog_tx

    tb = gr.top_block("semcom_analog_system")
    tx, rx = analog_tx(spec), analog_rx(spec, n_symbols=0, threshold=rx_threshold)
    sent, recv, dec, events = (_collector(n) for n in ("sent", "recv", "dec", "events"))
    tb.connect(tx, make_channel(chan, spec.sps), rx)
    tb.msg_connect(encoder, "out", tx, "in")
    tb.msg_connect(encoder, "out", sent, "in")
    tb.msg_connect(rx, "out", decoder, "in")
    tb.msg_connect(rx, "out", recv, "in")
    tb.msg_connect(decoder, "out", dec, "in")
    tb.msg_connect(encoder, "status", events, "in")
    tb.msg_connect(decoder, "status", events, "in")
    t0 = time.monotonic()
    tb.start()
    try:
        _feed(encoder, inputs, encode_timeout)
        _wait_for(lambda: len(sent.items) >= encoder.published.get("out", 0), 10.0)
        total = len(sent.items) * (spec.burst_samples + spec.flush_symbols * spec.sps)
        needed = total * (1 - abs(chan.sro_ppm) * 1e-6) - hold_back(rx, chan)
        drained = wait_drained(rx, needed, time.monotonic() + timeout)
        _wait_for(lambda: len(recv.items) >= rx.deframer.judged)
        _wait_for(lambda: decoder.items_in >= len(recv.items) and decoder.settled(), 120.0)
        _wait_for(lambda: len(dec.items) >= decoder.published.get("out", 0), 10.0)
    finally:
        tb.stop()
        tb.wait()
    evs = [pmt.to_python(m) for m in events.items]
    whole = LinkResult(received=None, complete=drained, missing=[], frames_sent=len(sent.items),
                       frames_ok=len(recv.items), frames_crc_fail=0, bursts_detected=len(recv.items),
                       false_alarms=0, coded_ber=float("nan"), coded_bits=0, mean_snr_db=float("nan"),
                       seconds=time.monotonic() - t0, esn0_db=chan.esn0_db, ebn0_db=float("nan"),
                       drained=drained, stop_reason="drained" if drained else f"timeout after {timeout:.0f} s")
    return BlocksRun(sent=[(m, d.tobytes()) for m, d in (pdu_parts(x) for x in sent.items)], received={},
                     decoded=[(m, d.tobytes()) for m, d in (pdu_parts(x) for x in dec.items)], pdu_links=[],
                     link=whole, events=[e for e in evs if isinstance(e, dict)], seconds=whole.seconds,
                     analog_sent=[pdu_parts(x) for x in sent.items], analog_received=[pdu_parts(x) for x in recv.items])
