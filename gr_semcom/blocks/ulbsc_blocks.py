"""ULBSC as GNU Radio message blocks: thin wrappers over
:class:`gr_semcom.semantic.ulbsc.codec.UlbscCodec` (the same object the CLI
and the tests use). Model work runs on each block's own worker thread, never
on GNU Radio's scheduler thread.

* ``image_source``: a file or every image of a directory -> PDUs (metadata
  ``path``, ``name``; data = the file's bytes). Unreadable files are reported
  on ``status`` and skipped.
* ``ulbsc_encoder``: image PDU -> ``out``: u8 PDU of the ULBSC payload
  (metadata ``scheme``, ``fields`` = [{name, offset, length, ..}], sizes,
  the sent caption) for ``phy_tx``; ``analog``: c32 PDU of DeepSC symbols
  (analog caption mode) for ``analog_tx``; ``status``: errors.
* ``ulbsc_decoder``: ``in`` = reassembled PDUs from ``phy_rx`` (their
  ``missing`` byte ranges are erasures), ``analog`` = symbols from
  ``analog_rx`` -> ``out``: PDU with metadata ``captions``, ``caption``,
  ``control_shape``, ``saliency_erased``, ``caption_erased``, ``indices``
  and data = the saliency map as u8 HxW: exactly what ``generator_client``
  takes, so the decoder feeds the generator bridge directly.
* ``semantic_image_sink``: decoder PDUs -> ``<prefix>_<n>_saliency.png`` +
  ``<prefix>_<n>.json`` of the received fields.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path

import numpy as np
import pmt
from gnuradio import gr

from .pdu_util import make_pdu, numbered_file_sink, pdu_parts
from .phy_blocks import IN as _IN, OUT as _OUT, STATUS as _STATUS, _status
from ..common import PayloadType

log = logging.getLogger("gr_semcom.ulbsc")
_ANALOG = pmt.intern("analog")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")


class _threaded_block(gr.basic_block):
    """A message block whose ``_run`` runs on its own thread from flowgraph
    start; ``stop`` waits up to ``join_timeout`` s for it (a daemon thread
    killed inside native model code at interpreter exit aborts the process)."""

    join_timeout = 60.0

    def __init__(self, name: str):
        gr.basic_block.__init__(self, name, None, None)
        self._stop = threading.Event()
        self._thread = None
        self.message_port_register_out(_STATUS)

    def start(self):
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True, name=self.name())
        self._thread.start()
        return True

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.join_timeout)
        return True


class image_source(_threaded_block):
    """Emits each image file (sorted, if a directory) once, ``interval`` s apart,
    starting when the flowgraph starts; ``repeat`` cycles forever."""

    join_timeout = 5.0

    def __init__(self, path: str = "examples", interval: float = 1.0, repeat: bool = False):
        _threaded_block.__init__(self, "semcom_image_source")
        self.path = Path(path)
        self.interval = float(interval)
        self.repeat = bool(repeat)
        self.sent = 0
        self.message_port_register_out(_OUT)

    def files(self) -> list[Path]:
        if self.path.is_dir():
            return sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        return [self.path]

    def _run(self):
        while not self._stop.is_set():
            for p in self.files():
                if self._stop.is_set():
                    return
                try:
                    data = p.read_bytes()
                    if not data:
                        raise OSError("empty file")
                except OSError as exc:
                    self.message_port_pub(_STATUS, _status(event="source_error", path=str(p), error=str(exc)))
                    continue
                self.message_port_pub(_OUT, make_pdu({"path": str(p), "name": p.name}, data))
                self.sent += 1
                self._stop.wait(self.interval)
            if not self.repeat:
                self.message_port_pub(_STATUS, _status(event="source_done", images=self.sent))
                return


def image_from_pdu(msg) -> tuple[dict, np.ndarray]:
    """(metadata, HxWx3 uint8 image) of an image PDU (the file's bytes, as
    ``image_source`` sends them); ValueError / ImageError for anything else."""
    from ..semantic.images import load_image

    meta, data = pdu_parts(msg)
    if data.dtype != np.uint8:
        raise ValueError("image PDUs carry the file's bytes (u8)")
    return meta, load_image(data.tobytes())


class _worker_block(_threaded_block):
    """Queue + worker thread: ``work_item(*item)`` runs off the scheduler;
    ``idle()`` after every item and every 0.1 s without one."""

    def __init__(self, name: str, max_pending: int = 16):
        _threaded_block.__init__(self, name)
        self._q: queue.Queue = queue.Queue(max_pending)
        self._lock = threading.Lock()
        # items queued / finished (work_item and the idle() after it done): a runner that
        # fed the block N items knows it is through with them (:meth:`settled`)
        self.items_in = 0
        self.items_done = 0
        self._finishing = False
        self.published: dict = {}  # port name -> messages published through :meth:`publish`

    def _arrive(self, lst, msg):
        """A decoder input: queue (arrival time, metadata, data) on ``lst`` and wake the worker."""
        try:
            meta, data = pdu_parts(msg)
        except ValueError as exc:
            self.message_port_pub(_STATUS, _status(event="decode_error", error=str(exc)))
            return
        with self._lock:
            lst.append((time.monotonic(), meta, data))
        self.enqueue(("poll",))

    def image_input(self, msg):
        """(metadata, image) of an image PDU, or None after reporting an image
        that does not decode on ``status`` (the flowgraph goes on)."""
        from ..semantic.images import ImageError

        meta: dict = {}
        try:
            return image_from_pdu(msg)
        except (ImageError, ValueError) as exc:
            try:
                meta = pdu_parts(msg)[0]
            except ValueError:
                pass
            self.message_port_pub(_STATUS, _status(event="encode_error", name=str(meta.get("name", "")),
                                                   error=str(exc)))
            return None

    def received(self, msg):
        """(metadata, bytes, missing byte ranges) of a reassembled PDU from
        ``phy_rx``, or None after reporting a malformed message on ``status``."""
        try:
            meta, arr = pdu_parts(msg)
        except ValueError as exc:
            self.message_port_pub(_STATUS, _status(event="decode_error", error=str(exc)))
            return None
        return meta, np.asarray(arr, np.uint8).tobytes(), [tuple(m) for m in (meta.get("missing") or [])]

    def handle(self, msg):
        """Default ``in`` handler: the message is one work item."""
        self.enqueue((msg,))

    def enqueue(self, item):
        try:
            self._q.put_nowait(item)
            self.items_in += 1
        except queue.Full:
            self.message_port_pub(_STATUS, _status(event="busy", block=self.name()))

    def publish(self, port, msg) -> None:
        """``message_port_pub`` that counts first: a runner that sees the count
        knows how many messages are (or are about to be) on their way."""
        name = pmt.symbol_to_string(port)
        self.published[name] = self.published.get(name, 0) + 1
        self.message_port_pub(port, msg)

    def finish(self):
        """End of input: work held back for more input (a partial image set)
        is done now instead of after its timeout."""
        self._finishing = True

    def holding(self) -> bool:
        """Whether input is held back waiting for more (blocks that batch)."""
        return False

    def settled(self) -> bool:
        """Every queued item worked off, its output published, nothing held."""
        return self.items_done >= self.items_in and not self.holding()

    def _run(self):
        while not self._stop.is_set():
            try:
                item = self._q.get(timeout=0.1)
            except queue.Empty:
                item = None
            try:
                if item is not None:
                    self.work_item(*item)
                self.idle()
            except Exception as exc:  # report, keep the flowgraph alive
                log.error("%s: %s", self.name(), exc)
                self.message_port_pub(_STATUS, _status(event="error", block=self.name(),
                                                       error=f"{type(exc).__name__}: {exc}"))
            finally:
                if item is not None:
                    self.items_done += 1

    def idle(self):
        pass


class _pdu_block(_worker_block):
    """A worker block with one ``in`` and one ``out`` message port: each input
    PDU is a work item."""

    def __init__(self, name: str):
        _worker_block.__init__(self, name)
        self.message_port_register_in(_IN)
        self.message_port_register_out(_OUT)
        self.set_msg_handler(_IN, self.handle)


def make_codec(vq: str = "", deepsc: str = "", caption_mode: str = "digital", saliency: str = "auto",
               captioner: str = "auto", blip_model: str = "", caption: str = "", fields: str = "all"):
    from ..semantic.captioner import DEFAULT_BLIP, make_captioner
    from ..semantic.saliency import make_detector
    from ..semantic.ulbsc.codec import DEFAULT_DEEPSC, DEFAULT_VQ, UlbscCodec

    det = make_detector(saliency) if saliency else None
    cap = None
    if caption or captioner == "blip":
        cap = make_captioner(captioner, None, caption or None, blip_model or DEFAULT_BLIP)
    return UlbscCodec.from_files(vq or DEFAULT_VQ, deepsc or DEFAULT_DEEPSC, caption_mode, det, cap, fields)


class ulbsc_encoder(_worker_block):
    def __init__(self, vq: str = "", deepsc: str = "", caption_mode: str = "digital", saliency: str = "auto",
                 captioner: str = "auto", blip_model: str = "", caption: str = "", fields: str = "all",
                 codec=None):
        from ..semantic.captioner import DEFAULT_BLIP

        _worker_block.__init__(self, "semcom_ulbsc_encoder")
        self.codec = codec if codec is not None else make_codec(vq, deepsc, caption_mode, saliency, captioner,
                                                                 blip_model, caption, fields)
        self.captioner_kind, self.blip_model = captioner, blip_model or DEFAULT_BLIP
        self.encoded = 0
        self.message_port_register_in(_IN)
        self.message_port_register_out(_OUT)
        self.message_port_register_out(_ANALOG)
        self.set_msg_handler(_IN, self.handle)

    def work_item(self, msg):
        from ..semantic.captioner import make_captioner
        from ..semantic.images import ImageError

        meta: dict = {}
        try:
            meta, img = image_from_pdu(msg)
            cap = meta.get("caption")
            if cap is None and self.codec.captioner is None:
                self.codec.captioner = make_captioner(self.captioner_kind, meta.get("path"), None, self.blip_model)
            elif cap is None and meta.get("path") and self.codec.captioner.name == "sidecar":
                self.codec.captioner = make_captioner("sidecar", meta.get("path"))
            t = time.perf_counter()
            p = self.codec.encode(img, caption=cap)
            seconds = time.perf_counter() - t
        except (ImageError, ValueError, FileNotFoundError) as exc:
            self.message_port_pub(_STATUS, _status(event="encode_error", name=str(meta.get("name", "")),
                                                   error=str(exc)))
            return
        out = p.meta()
        ptype = PayloadType.CAPTION if self.codec.fields == "caption" else PayloadType.ULBSC
        out.update(name=meta.get("name", ""), caption=p.caption, encode_seconds=seconds, payload_type=int(ptype))
        self.publish(_OUT, make_pdu(out, p.data))
        if p.symbols is not None:
            self.publish(_ANALOG, make_pdu({"name": meta.get("name", ""), "scheme": "ulbsc"},
                                                    p.symbols.astype(np.complex64)))
        self.encoded += 1


class ulbsc_decoder(_worker_block):
    """Digital PDU (+ analog symbols in analog caption mode) -> fields PDU.
    In analog mode a digital PDU waits up to ``pair_timeout`` s for its
    symbols (and vice versa); unpaired halves decode as erasures."""

    def __init__(self, vq: str = "", deepsc: str = "", caption_mode: str = "digital", pair_timeout: float = 2.0,
                 fields: str = "all", codec=None):
        _worker_block.__init__(self, "semcom_ulbsc_decoder")
        self.codec = codec if codec is not None else make_codec(vq, deepsc, caption_mode, saliency="",
                                                                 captioner="none", fields=fields)
        self.pair_timeout = pair_timeout
        self.decoded = 0
        self.digital_in = 0  # digital PDUs arrived
        self.analog_in = 0  # analog PDUs arrived
        self._busy = False
        self._digital: list = []
        self._analog: list = []
        self.message_port_register_in(_IN)
        self.message_port_register_in(_ANALOG)
        self.message_port_register_out(_OUT)
        self.set_msg_handler(_IN, self.handle_digital)
        self.set_msg_handler(_ANALOG, self.handle_analog)

    def handle_digital(self, msg):
        self._arrive(self._digital, msg)
        self.digital_in += 1  # after it is queued: a runner waiting on it sees the PDU pending

    def handle_analog(self, msg):
        self._arrive(self._analog, msg)
        self.analog_in += 1  # after it is queued (see digital_in)

    def _run(self):
        # the worker also polls, so unpaired halves time out
        while not self._stop.is_set():
            try:
                self._q.get(timeout=0.1)
            except queue.Empty:
                pass
            try:
                self._busy = True
                self._pair()
            except Exception as exc:
                log.error("ulbsc_decoder: %s", exc)
                self.message_port_pub(_STATUS, _status(event="error", error=f"{type(exc).__name__}: {exc}"))
            finally:
                self._busy = False

    def _pair(self):
        analog = self.codec.caption_mode == "analog"
        now = time.monotonic()
        while True:
            with self._lock:
                if self._digital and (not analog or self._analog):
                    d = self._digital.pop(0)
                    a = self._analog.pop(0) if analog else None
                elif self._digital and now - self._digital[0][0] > self.pair_timeout:
                    d, a = self._digital.pop(0), None
                elif self._analog and now - self._analog[0][0] > self.pair_timeout:
                    d, a = None, self._analog.pop(0)
                else:
                    return
            self.decode_one(d, a)

    def settled(self) -> bool:
        with self._lock:
            return not self._digital and not self._analog and not self._busy

    def decode_one(self, d, a):
        data, missing, meta = b"", [], {}
        if d is not None:
            _, meta, arr = d
            data = np.asarray(arr, np.uint8).tobytes()
            missing = [tuple(m) for m in (meta.get("missing") or [])]
        symbols = None if a is None else np.asarray(a[2], np.complex64)
        rec = self.codec.decode(data if d is not None else None, missing, symbols)
        out = rec.meta()
        link_complete = d is not None and bool(meta.get("complete", True))
        out.update(captions=[rec.caption], control_shape=list(rec.saliency.shape), link_complete=link_complete,
                   complete=link_complete and not rec.saliency_erased and not rec.caption_erased,
                   analog_snr_db=None if a is None else a[1].get("snr_db"))
        m8 = (np.clip(rec.saliency, 0, 1) * 255).round().astype(np.uint8)
        self.publish(_OUT, make_pdu(out, m8))
        self.decoded += 1


class semantic_image_sink(gr.basic_block, numbered_file_sink):
    """Decoder PDUs -> ``<dir>/<prefix>_<n>_saliency.png`` + ``<prefix>_<n>.json``."""

    def __init__(self, directory: str = "out/ulbsc", prefix: str = "rx"):
        gr.basic_block.__init__(self, "semcom_semantic_image_sink", None, None)
        self._init_files(directory, prefix)
        self.message_port_register_in(_IN)
        self.set_msg_handler(_IN, self.handle)

    def handle(self, msg):
        from ..semantic.images import png_bytes

        try:
            meta, data = pdu_parts(msg)
            shape = [int(v) for v in meta.get("control_shape", [])]
            if len(shape) != 2 or int(np.prod(shape)) != data.size:
                raise ValueError(f"control_shape {shape} does not match {data.size} bytes")
        except ValueError as exc:
            log.error("semantic_image_sink: %s", exc)
            return
        self.write_files(meta, {"_saliency.png": png_bytes(np.asarray(data, np.uint8).reshape(shape))})
