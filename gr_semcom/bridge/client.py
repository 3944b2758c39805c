"""Client side of the generator bridge (used by the GNU Radio block, the CLI
and the benchmarks).

A DEALER socket; every request carries a fresh ``id`` and only the reply
with that id is accepted (stale replies of timed-out requests are dropped).
On a timeout the socket is closed and reopened ("lazy pirate"), so the next
request goes out on a fresh connection and a restarted server is picked up.
One client per thread.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import numpy as np
import zmq

from . import protocol as P


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


class GeneratorClient:
    def __init__(self, endpoint: str, timeout: float = 60.0, context: zmq.Context | None = None):
        self.endpoint = endpoint
        self.timeout = timeout
        self.ctx = context or zmq.Context.instance()
        self.sock = None
        self.stale = 0
        self.reconnects = 0
        self._open()

    def _open(self):
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.connect(self.endpoint)

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
        self.sock.send_multipart(frames, copy=False)
        deadline = t0 + timeout
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
