"""Message gateway in front of the generator server, without GNU Radio.

A PULL socket takes one-frame requests, a codec turns each into a
:class:`~.protocol.GenerateRequest`, :class:`~.client.GeneratorClient`
(CURVE keys included) sends it to the server, and the codec turns the reply
(or the error) into one frame for a PUSH socket, in order. The GNU Radio codec
(``pmt.serialize_str`` PDUs, for the stock ZMQ PUSH/PULL Message blocks)
lives in ``gr_semcom.blocks.generator_gateway``: this module runs where GNU
Radio is absent (layering: bridge/ imports nothing of blocks/).

A codec is any object with::

    decode(raw: bytes) -> (meta, GenerateRequest)    # raises on bad input
    reply(meta, Reply) -> bytes
    error(meta, code, detail) -> bytes
"""
from __future__ import annotations

import logging
import threading

import zmq

from .auth import CurveOptions, load_key
from .client import BridgeError, GeneratorClient

log = logging.getLogger("gr_semcom.gateway")


class Gateway:
    def __init__(self, codec, server: str, pull: str, push: str, timeout: float = 60.0,
                 context: zmq.Context | None = None, curve: CurveOptions | None = None):
        self.codec = codec
        self.server, self.pull_addr, self.push_addr, self.timeout = server, pull, push, timeout
        self.ctx = context or zmq.Context.instance()
        self.curve = curve
        if curve is not None and curve.client_enabled():  # bad key files: a clear error now, not at the first PDU
            load_key(curve.server_key, need_secret=False)
            load_key(curve.client_key, need_secret=True)
        self.handled = 0
        self.errors = 0
        self._stop = threading.Event()

    def handle(self, raw: bytes, client) -> bytes:
        """One request frame -> one reply frame; never raises for bad input or a server error."""
        meta: dict = {}
        try:
            meta, req = self.codec.decode(raw)
        except Exception as exc:  # the codec's parser raises many types on garbage
            self.errors += 1
            return self.codec.error({}, "bad_input", str(exc)[:300])
        try:
            rep = client.generate(req)
        except BridgeError as exc:
            self.errors += 1
            return self.codec.error(meta, exc.code, exc.detail)
        self.handled += 1
        return self.codec.reply(meta, rep)

    def serve_forever(self) -> None:
        client = GeneratorClient(self.server, timeout=self.timeout, context=self.ctx, curve=self.curve)
        pull = self.ctx.socket(zmq.PULL)
        push = self.ctx.socket(zmq.PUSH)
        pull.connect(self.pull_addr)
        push.connect(self.push_addr)
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
