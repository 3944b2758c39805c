"""Gateway between GNU Radio's stock ZeroMQ message blocks and the generator
server, so a GRC user can reach the server without our client block.

GNU Radio's ``ZMQ PUSH Message Sink`` / ``ZMQ PULL Message Source`` carry one
ZeroMQ frame per message: ``pmt.serialize_str(msg)``. The server speaks JSON +
raw frames (it needs no GNU Radio on the GPU machine), so this small process,
run where GNU Radio is installed, translates::

    flowgraph: [fields PDU] -> ZMQ PUSH Message Sink (bind tcp://127.0.0.1:5560)
    gateway:   PULL connect :5560 -> GenerateRequest -> server (DEALER)
               -> reply PDU -> PUSH connect :5561
    flowgraph: ZMQ PULL Message Source (bind tcp://127.0.0.1:5561) -> [image PDU]

Request PDU: the same fields as our ``generator_client`` block (metadata
``captions``, ``seed``, ``steps``, ``width``, ``height``, ``control_shape``,
``image_prompt_png``; u8 data = control map), e.g. straight from the ULBSC
decoder. Reply PDU: the same as the client block's (request fields + ``id``,
``pipeline``, ``round_trip``, ``seconds``, ``shape``; data = PNG bytes). Failures (timeout, server error, malformed
message) are PDUs with metadata ``error`` and ``detail`` and empty data, so
the flowgraph sees them in order. A message that is not a serialised PMT is
answered the same way, never crashes the gateway.

    semcom gateway --server tcp://gpu-host:5555 --pull tcp://127.0.0.1:5560 --push tcp://127.0.0.1:5561
"""
from __future__ import annotations

import logging
import threading

import numpy as np
import zmq

log = logging.getLogger("gr_semcom.gateway")


class GrGateway:
    def __init__(self, server: str, pull: str, push: str, timeout: float = 60.0,
                 context: zmq.Context | None = None):
        self.server, self.pull_addr, self.push_addr, self.timeout = server, pull, push, timeout
        self.ctx = context or zmq.Context.instance()
        self.handled = 0
        self.errors = 0
        self._stop = threading.Event()

    def handle(self, raw: bytes, client) -> bytes:
        """One serialised PMT request -> one serialised PMT reply."""
        import pmt

        from ..blocks.generator_blocks import reply_pdu, request_from_pdu
        from ..blocks.pdu_util import make_pdu, pdu_parts
        from .client import BridgeError

        meta: dict = {}
        try:
            msg = pmt.deserialize_str(raw)
            meta, data = pdu_parts(msg)
            req = request_from_pdu(meta, np.asarray(data))
        except Exception as exc:  # pmt raises RuntimeError on garbage
            self.errors += 1
            return pmt.serialize_str(make_pdu({"error": "bad_input", "detail": str(exc)[:300]}, b""))
        try:
            rep = client.generate(req)
        except BridgeError as exc:
            self.errors += 1
            out = {k: v for k, v in meta.items() if k != "image_prompt_png"}
            out.update(error=exc.code, detail=exc.detail)
            return pmt.serialize_str(make_pdu(out, b""))
        self.handled += 1
        return pmt.serialize_str(reply_pdu(meta, rep))

    def serve_forever(self) -> None:
        from .client import GeneratorClient

        pull = self.ctx.socket(zmq.PULL)
        push = self.ctx.socket(zmq.PUSH)
        pull.connect(self.pull_addr)
        push.connect(self.push_addr)
        client = GeneratorClient(self.server, timeout=self.timeout, context=self.ctx)
        poller = zmq.Poller()
        poller.register(pull, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if not dict(poller.poll(100)):
                    continue
                frames = pull.recv_multipart()
                push.send(self.handle(frames[-1], client))
        finally:
            client.close()
            pull.close(0)
            push.close(0)

    def stop(self) -> None:
        self._stop.set()
