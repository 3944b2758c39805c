"""Client side of the generator bridge (used by the GNU Radio block, the CLI
and the benchmarks).

A DEALER socket; every request carries a fresh ``id`` and only the reply
with that id is accepted (stale replies of timed-out requests are dropped).
On a timeout the socket is closed and reopened ("lazy pirate"), so the next
request goes out on a fresh connection and a restarted server is picked up.
One client per thread.

CURVE (:mod:`auth`): ``curve=CurveOptions(client_key=..., server_key=...)``
(or $SEMCOM_CLIENT_KEY / $SEMCOM_SERVER_KEY when ``curve`` is None). A
server that refuses the key sends nothing: the request times out.
"""
from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass

import numpy as np
import zmq

from . import protocol as P
from .auth import CurveOptions, apply_client, endpoint_is_local


class BridgeError(RuntimeError):
    def __init__(self, code: str, detail: str, rid=None):
        super().__init__(f"{code}: {detail}")
        self.code, self.detail, self.id = code, detail, rid


class BridgeTimeout(BridgeError):
    pass


@dataclass
class Reply:
    header: dict
    data: bytes | np.ndarray | None  # PNG bytes as the server sent them, or the raw image
    seconds: float  # round trip seen by the client

    @property
    def image(self) -> np.ndarray | None:
        """Decoded lazily: a flowgraph forwarding PNG bytes never pays for it."""
        if self.data is None or isinstance(self.data, np.ndarray):
            return self.data
        return P.png_decode(self.data)

    @property
    def png(self) -> bytes | None:
        if self.data is None or isinstance(self.data, bytes):
            return self.data
        return P.png_encode(self.data)


_ids = itertools.count(1)
_warned: set = set()
log = logging.getLogger("gr_semcom.bridge.client")


class GeneratorClient:
    def __init__(self, endpoint: str, timeout: float = 60.0, context: zmq.Context | None = None,
                 curve: CurveOptions | None = None):
        """``curve``: this client's key pair + the server's public key (auth.CurveOptions);
        None takes them from the environment, if set there. Key-file problems raise
        auth.CurveConfigError at once (naming the file), not at the first request."""
        self.endpoint = endpoint
        self.timeout = timeout
        self.ctx = context or zmq.Context.instance()
        self.curve = curve if curve is not None else CurveOptions.from_env()
        self.curve_on = bool(self.curve and self.curve.client_enabled())
        self.sock = None
        self.stale = 0
        self.reconnects = 0
        if not self.curve_on and not endpoint_is_local(endpoint) and endpoint not in _warned:
            _warned.add(endpoint)
            log.warning("generator client: %s without CURVE keys: captions and images cross the network in "
                        "the clear, and a server started safely will refuse this client", endpoint)
        self._open()

    def _open(self):
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        try:
            apply_client(sock, self.curve)
        except Exception:
            sock.close(linger=0)
            raise
        sock.connect(self.endpoint)
        self.sock = sock

    def reset(self):
        if self.sock is not None:
            self.sock.close(linger=0)
        self.reconnects += 1
        self._open()

    def close(self):
        if self.sock is not None:
            self.sock.close(linger=0)
            self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_frames(self, frames: list[bytes], rid: int, timeout: float | None = None):
        """-> (header, arrays, seconds, raw frames)."""
        # Sends raw frames (tests use this for malformed messages), waits for the reply to ``rid``
        timeout = self.timeout if timeout is None else timeout
        t0 = time.perf_counter()
        deadline = t0 + timeout
        # never block in send: a DEALER without a live connection (server down, or a
        # refused CURVE handshake) would wait forever
        try:
            if not self.sock.poll(max(1, int(timeout * 1000)), zmq.POLLOUT):
                raise zmq.Again()
            self.sock.send_multipart(frames, copy=False, flags=zmq.NOBLOCK)
        except zmq.Again:
            self.reset()
            raise BridgeTimeout("timeout", f"could not send to {self.endpoint} in {timeout:.1f} s "
                                           "(no connection: server down, or refused our keys)", rid) from None
        while True:
            left = deadline - time.perf_counter()
            if left <= 0 or not self.sock.poll(int(left * 1000) + 1, zmq.POLLIN):
                if time.perf_counter() >= deadline:
                    self.reset()
                    raise BridgeTimeout("timeout", f"no reply from {self.endpoint} in {timeout:.1f} s", rid)
                continue
            msg = self.sock.recv_multipart()
            try:
                header, arrays = P.decode(msg, decode_png=False)
            except P.ProtocolError as exc:
                raise BridgeError("bad_reply", str(exc), rid) from None
            if header.get("id") != rid and header.get("id") is not None:
                self.stale += 1  # a late reply to an earlier, timed-out request
                continue
            return header, arrays, time.perf_counter() - t0, msg

    def generate(self, req: P.GenerateRequest, timeout: float | None = None) -> Reply:
        req.id = next(_ids)
        frames = req.to_frames()
        header, arrays, dt, msg = self.send_frames(frames, req.id, timeout)
        if not header.get("ok"):
            raise BridgeError(header.get("error", "error"), header.get("detail", ""), req.id)
        return Reply(header, arrays.get("image"), dt)

    def ping(self, timeout: float = 2.0) -> dict:
        rid = next(_ids)
        header, _, dt, _ = self.send_frames(P.encode({"op": "ping", "id": rid}), rid, timeout)
        header["rtt"] = dt
        return header
