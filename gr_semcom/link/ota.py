"""Over-the-air support without radios: record what the transmitter sends as
SigMF, put it through an impaired channel model like a real radio link, and
replay recordings into the receiver.

* :func:`tx_baseband`: PDUs -> the samples ``phy_tx`` (the GNU Radio TX)
  produces, with the idle stretches between bursts cut to a fixed gap (the
  TX emits zeros between bursts; zeros carry nothing, so the cut loses no
  signal) and the burst positions.
* :func:`apply_channel`: samples -> gr-channels (make_channel: multipath,
  CFO, sample-rate offset, phase noise, noise, IQ imbalance, DC offset).
* :func:`record`: both, written as SigMF with the receiver settings, the
  scheme and each payload's SHA-256 in the ``semcom:`` fields.
* :func:`replay`: a recording -> sigmf_source -> phy_rx (-> seb_decoder for
  Seb recordings) -> the PDUs, frame statuses and decoded images.
* :func:`false_alarms`: the receiver on pure noise, how often it fires.

``HACKRF_LIKE`` is the impairment set the shipped recordings in
``hardware/recordings`` went through (values in hardware/README.md).
"""
from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pmt
from gnuradio import blocks, gr

from ..blocks.pdu_util import make_pdu, pdu_parts
from ..phy.channel import ChannelSpec, make_channel
from ..phy.frame import FrameSpec
from ..phy.recording import channel_meta, frame_fields, frame_spec, write_recording
from ..common import PayloadType

#: a HackRF-to-HackRF conducted link after ppm calibration: residual CFO,
#: 20 ppm sample-clock offset, a short static multipath (taps at 0, 0.5 and
#: 1 symbol at sps = 2), phase noise, 0.5 dB / 3 degree IQ imbalance and LO
#: leakage (a DC offset of -20 dB relative to the signal).
HACKRF_LIKE = ChannelSpec(model="awgn", esn0_db=15.0, cfo=0.004, timing_offset=0.37, sro_ppm=20.0,
                          phase_noise=0.002, static_taps=[1.0, 0.25 - 0.1j, 0.08j], dc_offset=0.08 + 0.06j,
                          iq_imbalance_db=0.5, iq_phase_deg=3.0, seed=11)
CHANNEL_PRESETS = {"hackrf": HACKRF_LIKE, "clean": None}


def _bursts(x: np.ndarray, min_gap: int) -> list[tuple[int, int]]:
    """(start, stop) of the non-zero runs of ``x`` separated by at least
    ``min_gap`` exact zeros."""
    nz = np.flatnonzero(x != 0)
    if nz.size == 0:
        return []
    cut = np.flatnonzero(np.diff(nz) > min_gap)
    starts = np.concatenate([[nz[0]], nz[cut + 1]])
    stops = np.concatenate([nz[cut] + 1, [nz[-1] + 1]])
    return list(zip(starts.tolist(), stops.tolist()))


def tx_baseband(pdus: list[tuple[dict, bytes]], spec: FrameSpec, lead: int = 4000, gap: int = 2000,
                tail: int = 4000, timeout: float = 60.0) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The TX samples of ``pdus`` ((metadata, payload) pairs, metadata with
    at least ``payload_type``) and the [start, stop) of each burst in them."""
    from ..blocks.phy_hier import phy_tx
    from .sim import _collector

    with tempfile.TemporaryDirectory() as td:
        path = str(Path(td) / "tx.cf32")
        tb = gr.top_block("semcom_tx_record")
        tx = phy_tx(spec)
        # the TX stream never ends (zeros between bursts): pace it so the file
        # stays small while we wait for the last burst
        thr = blocks.throttle(gr.sizeof_gr_complex, 20e6, True)
        fs = blocks.file_sink(gr.sizeof_gr_complex, path, False)
        fs.set_unbuffered(True)
        sent = _collector("sent")
        tb.connect(tx, thr, fs)
        tb.msg_connect(tx.encoder if spec.code.alist is not None else tx.framer, "out", sent, "in")
        tb.start()
        try:
            for meta, data in pdus:
                tx.framer._post(pmt.intern("in"), make_pdu(dict(meta), np.frombuffer(bytes(data), np.uint8)))
            t0, stable_at, n_seen, found = time.monotonic(), time.monotonic(), -1, []
            min_gap = (spec.guard - spec.rrc_span) * spec.sps // 2
            while time.monotonic() - t0 < timeout:
                time.sleep(0.1)
                if len(sent.items) != n_seen:
                    n_seen, stable_at = len(sent.items), time.monotonic()
                    continue
                if n_seen <= 0 or time.monotonic() - stable_at < 0.2:
                    continue
                x = np.fromfile(path, np.complex64)
                found = _bursts(x, min_gap)
                # every frame is out and the stream has moved past the last burst
                if len(found) >= n_seen and x.size - found[-1][1] > 4 * spec.sps * spec.rrc_span:
                    break
            else:
                raise TimeoutError(f"the TX produced {len(found)} of {n_seen} bursts in {timeout:g} s")
        finally:
            tb.stop()
            tb.wait()
        x = np.fromfile(path, np.complex64)
    found = _bursts(x, min_gap)
    pad = spec.sps * spec.rrc_span  # keep the zeros around each run: exact waveform
    parts, pos, spans = [np.zeros(lead, np.complex64)], lead, []
    for k, (a, b) in enumerate(found):
        seg = x[max(a - pad, 0): b + pad]
        parts.append(seg)
        spans.append((pos + min(pad, a), pos + min(pad, a) + (b - a)))
        pos += seg.size
        parts.append(np.zeros(gap if k < len(found) - 1 else tail, np.complex64))
        pos += parts[-1].size
    return np.concatenate(parts), spans


def apply_channel(x: np.ndarray, chan: ChannelSpec, sps: int) -> np.ndarray:
    """``x`` through gr-channels (:func:`make_channel`), same length out."""
    tb = gr.top_block("semcom_channel_only")
    src = blocks.vector_source_c(np.asarray(x, np.complex64).tolist(), False)
    ch = make_channel(chan, sps)
    snk = blocks.vector_sink_c()
    tb.connect(src, ch, snk)
    tb.run()
    y = np.asarray(snk.data(), np.complex64)
    return y[: len(x)]


def record(path, pdus: list[tuple[dict, bytes]], spec: FrameSpec, chan: ChannelSpec | None = None,
           sample_rate: float = 1e6, center_freq: float = 915e6, scheme: str = "file",
           description: str = "", extra: dict | None = None):
    """Write a SigMF recording of ``pdus`` sent by the GNU Radio TX, through
    ``chan`` (None: the clean TX baseband). Returns the meta path."""
    x, spans = tx_baseband(pdus, spec)
    y = x if chan is None else apply_channel(x, chan, spec.sps)
    payloads = [{"payload_type": int(m.get("payload_type", 0)), "bytes": len(d),
                 "sha256": hashlib.sha256(bytes(d)).hexdigest(),
                 **{k: v for k, v in m.items() if k in ("kind", "name", "set_id")}} for m, d in pdus]
    ex = {"frame": frame_fields(spec), "scheme": scheme, "channel": channel_meta(chan), "payloads": payloads,
          "sps": spec.sps, "symbol_rate": sample_rate / spec.sps}
    ex.update(extra or {})
    ann = [(a, b - a, "burst", {"semcom:burst": i}) for i, (a, b) in enumerate(spans)]
    desc = description or (f"gr_semcom {scheme} over {'a simulated channel' if chan else 'no channel (TX baseband)'}"
                           f", {spec.modulation} LDPC {spec.code_rate}")
    return write_recording(path, y, sample_rate, center_freq, desc, ex, ann)


@dataclass
class ReplayResult:
    pdus: list = field(default_factory=list)  # (metadata, bytes) of each reassembled PDU
    images: list = field(default_factory=list)  # (metadata, PNG bytes) from seb_decoder
    frames_ok: int = 0
    frames_crc_fail: int = 0
    bursts_dropped: int = 0
    snr_db: list = field(default_factory=list)
    cfo: list = field(default_factory=list)
    samples: int = 0
    seconds: float = 0.0
    checked: list = field(default_factory=list)  # per recorded payload: received intact?

    def summary(self) -> dict:
        return {"pdus": len(self.pdus), "complete": sum(bool(m.get("complete")) for m, _ in self.pdus),
                "images": len(self.images), "frames_ok": self.frames_ok, "frames_crc_fail": self.frames_crc_fail,
                "bursts_dropped": self.bursts_dropped,
                "mean_snr_db": round(float(np.mean(self.snr_db)), 2) if self.snr_db else None,
                "samples": self.samples, "seconds": round(self.seconds, 3), "payloads_intact": self.checked}


def replay(path, spec: FrameSpec | None = None, threshold: float = 0.3, dc_block: int = 256,
           decode: bool = True, models: str = "", timeout: float = 120.0) -> ReplayResult:
    """Feed a recording into the receiver as fast as it runs. ``spec``
    defaults to the recording's ``semcom:frame``; Seb recordings also go
    through ``seb_decoder`` when ``decode``."""
    from ..blocks.phy_hier import phy_rx
    from ..blocks.sigmf_blocks import sigmf_source
    from .sim import _collector, _wait_for, wait_drained

    src = sigmf_source(str(path))
    spec = spec or frame_spec(src.meta)
    scheme = src.meta.get("semcom:scheme", "file")
    tb = gr.top_block("semcom_replay")
    rx = phy_rx(spec, threshold=threshold, timeout=1.0, dc_block=dc_block)
    out, status, imgs = _collector("out"), _collector("status"), _collector("images")
    # the recording, then zeros: a stream that ends would mark the message
    # blocks done and drop the last frames' PDUs still in flight
    n_samples = Path(src.meta["data_path"]).stat().st_size // {"cf32_le": 8, "ci16_le": 4}.get(
        src.meta["core:datatype"], 2)
    mux = blocks.stream_mux(gr.sizeof_gr_complex, [int(n_samples), (1 << 31) - 1])
    tb.connect(src, (mux, 0))
    tb.connect(blocks.null_source(gr.sizeof_gr_complex), (mux, 1))
    tb.connect(mux, rx)
    tb.msg_connect(rx, "out", out, "in")
    tb.msg_connect(rx, "status", status, "in")
    dec = None
    if decode and scheme in ("seb", "hyperprior"):
        from ..blocks.seb_blocks import seb_decoder

        dec = seb_decoder(models, scheme)
        tb.msg_connect(rx, "out", dec, "in")
        tb.msg_connect(dec, "out", imgs, "in")
    t0 = time.monotonic()
    tb.start()
    try:
        # drained: the receiver has read the whole recording and the zeros
        # after it that complete its last capture, and holds no burst still
        # being demodulated or decoded (no wall-clock idleness involved)
        wait_drained(rx, n_samples + rx.burst.length + rx.corr.delay_samples + 64, t0 + timeout)
        rx.deframer.flush()
        _wait_for(lambda: len(out.items) >= rx.deframer.pdus_out)
        if dec is not None:  # let the decoder finish what it got
            t1 = time.monotonic()
            while len(imgs.items) < sum(1 for m in out.items if pdu_parts(m)[0].get("payload_type") == PayloadType.SEB_IMAGE) \
                    and time.monotonic() - t1 < 30:
                time.sleep(0.05)
    finally:
        tb.stop()
        tb.wait()
    res = ReplayResult(samples=int(n_samples), seconds=time.monotonic() - t0)
    for m in out.items:
        meta, arr = pdu_parts(m)
        res.pdus.append((meta, np.asarray(arr, np.uint8).tobytes()))
    for m in imgs.items:
        meta, arr = pdu_parts(m)
        res.images.append((meta, np.asarray(arr, np.uint8).tobytes()))
    for s in (pmt.to_python(m) for m in status.items):
        if not isinstance(s, dict):
            continue
        if s.get("event") == "frame":
            res.frames_ok += bool(s.get("crc_ok"))
            res.frames_crc_fail += not s.get("crc_ok")
            if s.get("snr_db") is not None:
                res.snr_db.append(float(s["snr_db"]))
        elif s.get("event") == "burst_drop":
            res.bursts_dropped += 1
    got = {hashlib.sha256(d).hexdigest() for m, d in res.pdus if m.get("complete")}
    res.checked = [p.get("sha256") in got for p in src.meta.get("semcom:payloads", [])]
    return res


def false_alarms(spec: FrameSpec, seconds_of_samples: float = 1.0, sample_rate: float = 1e6,
                 threshold: float = 0.3, seed: int = 0) -> dict:
    """Complex white noise (unit power) into phy_rx: how many times the
    detector fires (``corr_start`` tags: the burst demodulator runs) and how
    many of those reach the decoder (bursts not rejected by the preamble /
    pilot checks) or pass CRC (must be none)."""
    from ..blocks.phy_hier import phy_rx
    from .sim import _collector

    n = int(seconds_of_samples * sample_rate)
    tb = gr.top_block("semcom_false_alarm")
    from gnuradio import analog

    src = analog.noise_source_c(analog.GR_GAUSSIAN, 1.0, seed)
    head = blocks.head(gr.sizeof_gr_complex, n)
    rx = phy_rx(spec, threshold=threshold, timeout=1.0)
    status, out, bits = _collector("status"), _collector("out"), _collector("bits")
    # a second detector with the receiver's settings on the same samples (a
    # hier block's inner blocks cannot be tapped): its tags are the detections
    from ..blocks.phy_hier import preamble_detector, sync_waveform
    from gnuradio import filter as gr_filter

    mf = gr_filter.fir_filter_ccf(1, spec.rrc.tolist())
    det = preamble_detector(sync_waveform(spec), spec.sps, rho2=threshold)
    tag_probe = blocks.tag_debug(gr.sizeof_gr_complex, "fa", "corr_start")
    tag_probe.set_display(False)
    tb.connect(src, head, rx)
    tb.connect(head, mf, det, tag_probe)
    tb.msg_connect(rx, "status", status, "in")
    tb.msg_connect(rx, "out", out, "in")
    tb.msg_connect(rx, "bits", bits, "in")
    t0 = time.monotonic()
    tb.run()
    time.sleep(0.3)
    sts = [pmt.to_python(m) for m in status.items]
    frames = [s for s in sts if isinstance(s, dict) and s.get("event") == "frame"]
    return {"samples": n, "threshold": threshold, "detections": int(tag_probe.num_tags()),
            "bursts_demodulated": len(bits.items),
            "frames_crc_ok": sum(bool(f.get("crc_ok")) for f in frames), "pdus": len(out.items),
            "detections_per_msample": int(tag_probe.num_tags()) / (n / 1e6),
            "seconds": round(time.monotonic() - t0, 2)}


def shifted(chan: ChannelSpec | None, **kw) -> ChannelSpec:
    return replace(chan or ChannelSpec(), **kw)


class _pdu_file_sink(gr.basic_block):
    """Reassembled PDUs -> ``<dir>/pdu_<n>.bin`` + ``.json`` (file scheme)."""

    def __init__(self, directory: str):
        from ..blocks.pdu_util import numbered_file_sink

        gr.basic_block.__init__(self, "semcom_pdu_file_sink", None, None)
        self.files = numbered_file_sink()
        self.files._init_files(directory, "pdu")
        self.message_port_register_in(pmt.intern("in"))
        self.set_msg_handler(pmt.intern("in"), self.handle)

    def handle(self, msg):
        meta, arr = pdu_parts(msg)
        self.files.write_files(meta, {".bin": np.asarray(arr, np.uint8).tobytes()})


def build_ota_tx(sink, input_path: str, scheme: str, spec: FrameSpec, cbr: float = 1 / 30, set_size: int = 2,
                 interval: float = 2.0, repeat: bool = True, record_path: str = "", sample_rate: float = 1e6,
                 center_freq: float = 0.0, models: str = ""):
    """images (seb/hyperprior) or a file's bytes -> phy_tx -> ``sink`` (a
    radio_sink, or any complex sink), optionally also recorded as SigMF."""
    from ..blocks.phy_hier import phy_tx
    from ..blocks.sigmf_blocks import sigmf_sink

    tb = gr.top_block("semcom_ota_tx")
    tx = phy_tx(spec)
    if scheme in ("seb", "hyperprior"):
        from ..blocks.seb_blocks import seb_encoder
        from ..blocks.ulbsc_blocks import image_source

        tb.src = image_source(input_path, interval, repeat)
        tb.enc = seb_encoder(models, scheme, set_size, 2.0, cbr, spec.modulation, spec.code_rate, spec.codewords)
        tb.msg_connect(tb.src, "out", tb.enc, "in")
        tb.msg_connect(tb.enc, "out", tx, "in")
    elif scheme == "file":
        data = Path(input_path).read_bytes()
        if not data:
            raise ValueError(f"{input_path} is empty")
        tb.src = blocks.message_strobe(make_pdu({"payload_type": int(PayloadType.FILE)}, np.frombuffer(data, np.uint8)),
                                       int(interval * 1000))
        tb.msg_connect(tb.src, "strobe", tx, "in")
    else:
        raise ValueError(f"scheme {scheme!r}: OTA supports file, seb, hyperprior")
    tb.connect(tx, sink)
    if record_path:
        tb.rec = sigmf_sink(record_path, sample_rate, center_freq, f"gr_semcom {scheme} TX baseband",
                            extra_json="", frame=frame_fields(spec))
        tb.connect(tx, tb.rec)
    tb.tx = tx
    return tb


def build_ota_rx(source, out_dir: str, scheme: str, spec: FrameSpec, threshold: float = 0.3,
                 dc_block: int = 256, record_path: str = "", sample_rate: float = 1e6, center_freq: float = 0.0,
                 models: str = "", hw: str = ""):
    """``source`` (radio_source or any complex source) -> phy_rx -> decoded
    images (PNG) or payload files in ``out_dir``, optionally recording what
    the radio got as SigMF."""
    from ..blocks.generator_blocks import png_file_sink
    from ..blocks.phy_hier import phy_rx
    from ..blocks.sigmf_blocks import sigmf_sink
    from .sim import _collector

    tb = gr.top_block("semcom_ota_rx")
    rx = phy_rx(spec, threshold=threshold, dc_block=dc_block)
    tb.connect(source, rx)
    tb.status = _collector("status")
    tb.msg_connect(rx, "status", tb.status, "in")
    if scheme in ("seb", "hyperprior"):
        from ..blocks.seb_blocks import seb_decoder

        tb.dec = seb_decoder(models, scheme)
        tb.sink = png_file_sink(out_dir, "rx")
        tb.msg_connect(rx, "out", tb.dec, "in")
        tb.msg_connect(tb.dec, "out", tb.sink, "in")
    else:
        tb.sink = _pdu_file_sink(out_dir)
        tb.msg_connect(rx, "out", tb.sink, "in")
    if record_path:
        tb.rec = sigmf_sink(record_path, sample_rate, center_freq, f"gr_semcom {scheme} RX capture", hw=hw,
                            extra_json=json.dumps({"scheme": scheme}), frame=frame_fields(spec))
        tb.connect(source, tb.rec)
    tb.rx = rx
    return tb
