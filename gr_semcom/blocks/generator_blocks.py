"""GNU Radio side of the generator bridge.

``generator_client``: message block. In: a PDU whose metadata holds the
decoded semantic fields and whose u8 data is the control map (or empty)::

    {"captions": ["..", ..], "seed": 0, "steps": 20, "width": 512, "height": 512,
     "control_shape": [h, w],            # the u8 data is that map, row-major
     "image_prompt_png": <u8vector>,     # optional (Multi-SC object slice)
     "pipeline": "controlnet", ...}

Out on ``out``: PDU (metadata: request fields, ``id``, ``seconds``,
``pipeline``; data: PNG bytes of the generated image). On ``error``: a dict
``{"error": code, "detail": .., "captions": ..}`` for a timeout, a server
error or a malformed input. Requests run on the block's own worker thread,
so a slow or absent server never blocks GNU Radio's scheduler; at most
``max_pending`` requests wait (more are answered on ``error`` with ``busy``).
``client_key`` / ``server_key``: CURVE key files (this client's
``.key_secret``, the server's ``.key``; ``semcom keys``, docs/lab_network.md);
empty = $SEMCOM_CLIENT_KEY / $SEMCOM_SERVER_KEY, else no CURVE. A bad key file
stops the flowgraph at start with a message naming it; a key the server
refuses shows up as ``timeout`` on ``error``.

``png_file_sink``: writes each image PDU as ``<prefix>_<n>.png`` plus a
``.json`` of its metadata.
"""
from __future__ import annotations

import logging
import queue
import threading

import numpy as np
import pmt
from gnuradio import gr

from ..bridge import protocol as P
from ..bridge.auth import CurveOptions
from ..bridge.client import BridgeError, GeneratorClient
from .pdu_util import make_pdu, numbered_file_sink, pdu_parts

log = logging.getLogger("gr_semcom.generator")
_IN, _OUT, _ERR = pmt.intern("in"), pmt.intern("out"), pmt.intern("error")


def request_from_pdu(meta: dict, data: np.ndarray) -> P.GenerateRequest:
    """PDU fields -> GenerateRequest (raises ValueError with a clear message)."""
    caps = meta.get("captions", meta.get("caption", []))
    if isinstance(caps, str):
        caps = [caps]
    if not isinstance(caps, (list, tuple)) or not all(isinstance(c, str) for c in caps):
        raise ValueError("'captions' must be a string or a list of strings")
    control = None
    shape = meta.get("control_shape")
    if shape is not None:
        shape = [int(v) for v in shape]
        if int(np.prod(shape)) != data.size:
            raise ValueError(f"control_shape {shape} does not match {data.size} data bytes")
        control = np.asarray(data, dtype=np.uint8).reshape(shape)
    elif data.size:
        raise ValueError("PDU data given without 'control_shape'")
    prompt = None
    if meta.get("image_prompt_png") is not None:
        prompt = P.png_decode(bytes(np.asarray(meta["image_prompt_png"], dtype=np.uint8)))
    extra = {k: meta[k] for k in ("seed", "steps", "width", "height", "guidance", "ip_adapter_scale", "pipeline")
             if k in meta}
    hdr = {"id": 0, "captions": list(caps), **extra}
    try:
        req = P.GenerateRequest.from_message(hdr, {})
    except P.ProtocolError as exc:
        raise ValueError(exc.detail) from None
    req.control, req.image_prompt = control, prompt
    return req


def reply_pdu(meta: dict, rep):
    """Generated-image PDU: the request fields (less the image prompt) +
    ``id``, ``pipeline``, ``round_trip``, server ``seconds``, ``shape``; data =
    PNG bytes. Shared by the client block and ``semcom gateway``."""
    out = {k: v for k, v in meta.items() if k != "image_prompt_png"}
    out.update(id=rep.header.get("id"), pipeline=rep.header.get("pipeline"), round_trip=rep.seconds,
               seconds=rep.header.get("seconds", {}), shape=rep.header.get("shape"))
    return make_pdu(out, np.frombuffer(rep.png, dtype=np.uint8))


class generator_client(gr.basic_block):
    def __init__(self, endpoint: str = "tcp://127.0.0.1:5555", timeout: float = 60.0, max_pending: int = 8,
                 client_key: str = "", server_key: str = ""):
        gr.basic_block.__init__(self, "semcom_generator_client", None, None)
        self.endpoint, self.timeout = endpoint, float(timeout)
        self.curve = CurveOptions(client_key=client_key or None, server_key=server_key or None) \
            if (client_key or server_key) else None
        # key files checked now (a clear error when the flowgraph is built), not on the worker thread
        GeneratorClient(endpoint, timeout=self.timeout, curve=self.curve).close()
        self.q: queue.Queue = queue.Queue(maxsize=max_pending)
        self.sent = self.ok = self.failed = 0
        self.message_port_register_in(_IN)
        self.message_port_register_out(_OUT)
        self.message_port_register_out(_ERR)
        self.set_msg_handler(_IN, self.handle)
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._run, name="semcom-generator-client", daemon=True)
        self._thread.start()
        return True

    def stop(self):
        self.q.put(None)
        if self._thread:
            self._thread.join(timeout=self.timeout + 2)
        return True

    def _error(self, code, detail, meta=None):
        self.failed += 1
        d = {"error": code, "detail": detail}
        if meta:
            d["captions"] = meta.get("captions")
        self.message_port_pub(_ERR, pmt.to_pmt(d))

    def handle(self, msg):
        try:
            meta, data = pdu_parts(msg)
            req = request_from_pdu(meta, np.asarray(data))
        except ValueError as exc:
            self._error("bad_input", str(exc))
            return
        try:
            self.q.put_nowait((meta, req))
        except queue.Full:
            self._error("busy", f"{self.q.maxsize} generation requests pending", meta)

    def _run(self):
        client = GeneratorClient(self.endpoint, timeout=self.timeout, curve=self.curve)
        try:
            while True:
                item = self.q.get()
                if item is None:
                    return
                meta, req = item
                self.sent += 1
                try:
                    r = client.generate(req)
                except BridgeError as exc:  # timeouts reset the socket: the next request reconnects
                    self._error(exc.code, exc.detail, meta)
                    continue
                self.ok += 1
                self.message_port_pub(_OUT, reply_pdu(meta, r))
        finally:
            client.close()


class png_file_sink(gr.basic_block, numbered_file_sink):
    """Image PDUs (PNG bytes) -> ``<dir>/<prefix>_<n>.png`` + ``.json`` metadata."""

    def __init__(self, directory: str = "out/images", prefix: str = "rx"):
        gr.basic_block.__init__(self, "semcom_png_file_sink", None, None)
        self._init_files(directory, prefix)
        self.message_port_register_in(_IN)
        self.set_msg_handler(_IN, self.handle)

    def handle(self, msg):
        try:
            meta, data = pdu_parts(msg)
            png = bytes(np.asarray(data, dtype=np.uint8))
            P.png_decode(png)  # refuse to write something that is not a PNG
        except (ValueError, P.ProtocolError) as exc:
            log.error("png_file_sink: %s", exc)
            return
        self.write_files(meta, {".png": png})
