"""The generator server: a ZeroMQ ROUTER in front of a pool of worker threads,
each owning one generator (one diffusers pipeline, loaded once).

One thread owns the ROUTER socket (ZeroMQ sockets are not thread-safe): it
validates every message (:mod:`protocol`, strict JSON), answers ``ping``
itself, queues ``generate`` requests and sends the replies that workers push
back over an inproc socket. A malformed message gets an error reply and never
reaches a worker; an exception in a generator becomes an error reply for that
request only.

Fit for a shared network (docs/lab_network.md):

* **CURVE** (:mod:`auth`): with ``CurveOptions(server_key=..., allowed_keys=DIR)``
  every connection is encrypted and only clients whose public key is in DIR
  get through the handshake; the others get nothing and each refusal is
  logged (rate-limited) and counted (``refused`` in ``ping``).
* **Loopback by default** (:data:`DEFAULT_ENDPOINT`): binding anything but
  loopback / ipc:// without CURVE raises :class:`InsecureBindError` before
  any model is loaded, unless ``insecure=True`` (a loud warning).
* **Fair queueing** (:class:`FairQueue`): one bounded queue per client
  identity (the CURVE public key, else the connection), workers take
  requests round robin across clients; a client over its own bound gets
  ``busy`` while the others are still admitted.

    semcom serve --endpoint tcp://0.0.0.0:5555 --server-key keys/server.key_secret --allowed-keys keys/allowed \
        --pipeline controlnet --model DIR --device cuda --workers 2
"""
from __future__ import annotations

import collections
import logging
import sys
import threading
import time
import uuid

import zmq

from . import protocol as P
from .auth import CurveOptions, RateLimitedLog, ServerCurve, endpoint_is_local

log = logging.getLogger("gr_semcom.bridge")

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"


class InsecureBindError(RuntimeError):
    """A network-reachable endpoint without CURVE (and without ``insecure=True``)."""


def check_bind(endpoints, curve_on: bool, insecure: bool) -> list:
    """Refuse (InsecureBindError) or warn about network endpoints without CURVE; -> those endpoints."""
    exposed = [ep for ep in endpoints if not endpoint_is_local(ep)]
    if exposed and not curve_on:
        if not insecure:
            raise InsecureBindError(
                f"refusing to bind {', '.join(exposed)} without CURVE: anyone who reaches the port would drive "
                "the generator and read every caption and image. Use a loopback endpoint "
                f"({DEFAULT_ENDPOINT}) or ipc://, or give --server-key SERVER.key_secret --allowed-keys DIR "
                "(semcom keys; docs/lab_network.md), or pass --insecure on a network you trust")
        msg = (f"INSECURE: generator server bound to {', '.join(exposed)} WITHOUT authentication or encryption "
               "(--insecure): anyone who reaches the port drives the GPU and reads every caption and image")
        bar = "!" * min(len(msg), 100)
        log.warning("%s", msg)
        print(f"{bar}\n{msg}\n{bar}", file=sys.stderr, flush=True)
    return exposed


class QueueFull(Exception):
    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class FairQueue:
    """Bounded per-client FIFOs, served round robin across clients.

    ``put(client, item)`` admits when the client has fewer than
    ``per_client`` items queued and the total is under ``total``; a client
    with nothing queued is admitted up to ``2 * total`` (so a crowd of
    flooders cannot lock a quiet client out), and while the queued payload
    bytes stay under ``max_bytes`` (arrays of up to 32 MiB each would
    otherwise let 128 queued requests hold gigabytes). ``get()`` takes the
    oldest item of the next client in turn. Thread-safe."""

    def __init__(self, per_client: int = 16, total: int = 64, max_bytes: int = 1 << 30):
        if per_client < 1 or total < 1 or max_bytes < 1:
            raise ValueError("queue bounds must be >= 1")
        self.per_client, self.total, self.max_bytes = per_client, total, max_bytes
        self._q: collections.OrderedDict = collections.OrderedDict()
        self._n = 0
        self._bytes = 0
        self._closed = False
        self._cv = threading.Condition()

    def qsize(self) -> int:
        return self._n

    def clients(self) -> int:
        return len(self._q)

    def put(self, client, item, nbytes: int = 0) -> None:
        with self._cv:
            dq = self._q.get(client)
            mine = len(dq) if dq else 0
            if mine >= self.per_client:
                raise QueueFull(f"{mine} of this client's requests queued (per-client bound {self.per_client})")
            if self._n >= (2 * self.total if mine == 0 else self.total):
                raise QueueFull(f"{self._n} requests queued (server bound {self.total})")
            if self._bytes + nbytes > self.max_bytes and self._n:
                raise QueueFull(f"{self._bytes / 2**20:.0f} MiB of requests queued (server bound "
                                f"{self.max_bytes / 2**20:.0f} MiB)")
            if dq is None:
                dq = self._q[client] = collections.deque()  # joins the end of the rotation
            dq.append((item, nbytes))
            self._n += 1
            self._bytes += nbytes
            self._cv.notify()

    def get(self, timeout: float | None = None):
        """Next item round robin, or None once closed (or on timeout)."""
        with self._cv:
            if not self._cv.wait_for(lambda: self._n or self._closed, timeout):
                return None
            if self._closed:
                return None
            client, dq = next(iter(self._q.items()))
            item, nbytes = dq.popleft()
            self._n -= 1
            self._bytes -= nbytes
            if dq:
                self._q.move_to_end(client)  # its next item waits for everyone else's turn
            else:
                del self._q[client]
            return item

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()


class GeneratorServer:
    def __init__(self, make_generator, endpoints=DEFAULT_ENDPOINT, workers: int = 1, queue_max: int = 64,
                 context: zmq.Context | None = None, name: str = "", curve: CurveOptions | None = None,
                 client_queue_max: int = 16, insecure: bool = False, queue_bytes_max: int = 1 << 30):
        """``make_generator()`` is called once per worker (each GPU worker holds its own pipeline).

        ``curve``: CurveOptions with ``server_key`` + ``allowed_keys`` turns CURVE on
        (key files are checked here, before any model loads). ``insecure`` (or
        ``curve.insecure``) allows a network endpoint without CURVE. Raises
        InsecureBindError / auth.CurveConfigError with a message naming the fix."""
        self.endpoints = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        if not self.endpoints:
            raise ValueError("no endpoint to bind")
        curve = curve or CurveOptions()
        self.curve_on = curve.server_enabled()
        self.exposed = check_bind(self.endpoints, self.curve_on, insecure or curve.insecure)
        self._curve_opts = curve
        # the ZAP handler is per context (inproc://zeromq.zap.01): a CURVE server gets a context of its own
        self._own_ctx = context is None and self.curve_on
        self.ctx = context or (zmq.Context() if self.curve_on else zmq.Context.instance())
        self._curve = ServerCurve(curve, self.ctx) if self.curve_on else None
        self.jobs = FairQueue(per_client=min(client_queue_max, queue_max), total=queue_max, max_bytes=queue_bytes_max)
        self.workers = workers
        self._make = make_generator
        self._stop = threading.Event()
        self._threads: list = []
        self._inproc = f"inproc://semcom-replies-{uuid.uuid4().hex}"
        self.name = name
        self.kind = "?"
        self.device = "?"
        self.served = 0
        self.rejected = 0
        self.busy = 0
        self._rejections = RateLimitedLog(every=5.0, logger=log, prefix="rejected a request")
        self.ready = threading.Event()
        self._error: Exception | None = None

    @property
    def refused(self) -> int:
        """Connections refused at the CURVE handshake (no key, wrong key, wrong server key)."""
        return self._curve.refusals.total if self._curve else 0

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> "GeneratorServer":
        gens = [self._make() for _ in range(self.workers)]  # load before accepting requests
        self.kind = getattr(gens[0], "kind", "?")
        self.device = str(getattr(gens[0], "device", "?"))
        if self._curve:
            self._curve.start()
        self._pull = self.ctx.socket(zmq.PULL)
        self._pull.bind(self._inproc)
        for i, g in enumerate(gens):
            t = threading.Thread(target=self._worker, args=(g,), name=f"semcom-gen-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._loop, name="semcom-router", daemon=True)
        t.start()
        self._threads.append(t)
        if not self.ready.wait(10):
            raise RuntimeError("bridge server did not start")
        if self._error:
            self.stop()
            raise self._error
        log.info("generator server on %s (%s)", ", ".join(self.endpoints),
                 f"CURVE, {len(self._curve.keydir.keys)} allowed client keys" if self._curve
                 else "no CURVE: loopback/ipc only" if not self.exposed else "NO CURVE (--insecure)")
        return self

    def stop(self):
        self._stop.set()
        self.jobs.close()
        for t in self._threads:
            t.join(timeout=5)
        alive = [t.name for t in self._threads if t.is_alive()]
        self._threads = []
        if self._curve:
            self._curve.stop()
        if self._own_ctx:
            if alive:  # a generation still running holds a socket: term() would wait for it
                log.warning("stop: %s still running; leaving the ZeroMQ context to the process exit", alive)
            else:
                self.ctx.term()
            self._own_ctx = False

    def serve_forever(self):
        self.start()
        try:
            while not self._stop.is_set():
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    # -- threads -----------------------------------------------------------
    def _worker(self, gen):
        push = self.ctx.socket(zmq.PUSH)
        push.connect(self._inproc)
        try:
            while not self._stop.is_set():
                job = self.jobs.get()
                if job is None:
                    break
                route, req, t_in = job
                t0 = time.perf_counter()
                try:
                    img = gen.generate(req)
                    t1 = time.perf_counter()
                    image = {"arrays": {"image": img}} if req.reply == "raw" else {"png": {"image": P.png_encode(img)}}
                    # server time = queue wait + generation + image encoding
                    frames = P.encode({"id": req.id, "ok": True, "op": "generate", "pipeline": self.kind,
                                       "prompt": req.prompt, "seed": req.seed, "shape": list(img.shape),
                                       "seconds": {"generate": t1 - t0, "server": time.perf_counter() - t_in}},
                                      **image)
                except Exception as exc:  # a failing request must not take the worker down
                    log.exception("generation failed for request %s", req.id)
                    frames = P.error_reply(req.id, "generation_failed", f"{type(exc).__name__}: {exc}")
                push.send_multipart(route + frames)
        finally:
            push.close(linger=0)

    def _health(self) -> dict:
        return {"ok": True, "op": "ping", "pipeline": self.kind, "device": self.device, "workers": self.workers,
                "queued": self.jobs.qsize(), "clients_queued": self.jobs.clients(), "served": self.served,
                "rejected": self.rejected, "busy": self.busy, "refused": self.refused, "curve": self.curve_on,
                "schema": P.SCHEMA, "name": self.name}

    def _loop(self):
        router = self.ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        # hard cap per frame (libzmq drops the peer above it); frames over MAX_FRAME get a too_large reply
        router.setsockopt(zmq.MAXMSGSIZE, 2 * P.MAX_FRAME)
        router.setsockopt(zmq.SNDHWM, 0)
        # bounded per connection: a flooding peer is held back by TCP instead of growing our memory
        router.setsockopt(zmq.RCVHWM, 256)
        monitor = None
        try:
            if self._curve:
                self._curve.apply(router)
                monitor = router.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                                                    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                                                    | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
            for ep in self.endpoints:
                router.bind(ep)
        except zmq.ZMQError as exc:
            self._error = RuntimeError(f"cannot bind {self.endpoints}: {exc}")
            if monitor is not None:
                router.disable_monitor()
                monitor.close(linger=0)
            router.close(linger=0)
            self._pull.close(linger=0)
            self.ready.set()
            return
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(self._pull, zmq.POLLIN)
        if monitor is not None:
            poller.register(monitor, zmq.POLLIN)
        self.ready.set()
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(100))
                if self._pull in events:
                    while True:
                        try:
                            msg = self._pull.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self.served += 1
                        router.send_multipart(msg)
                if router in events:
                    for _ in range(1000):  # then replies get their turn again
                        try:
                            msg = router.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        reply = self._handle(msg)
                        if reply is not None:
                            router.send_multipart(reply)
                if monitor is not None and monitor in events:
                    self._monitor_events(monitor)
        finally:
            if monitor is not None:
                router.disable_monitor()
                monitor.close(linger=0)
            router.close(linger=0)
            self._pull.close(linger=0)

    def _monitor_events(self, monitor):
        from zmq.utils.monitor import recv_monitor_message

        while True:
            try:
                ev = recv_monitor_message(monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            ep = ev.get("endpoint", b"")
            self._curve.handshake_failed(ev["event"], ev["value"],
                                         ep.decode("utf-8", "replace") if isinstance(ep, bytes) else str(ep))

    def _client_id(self, frames) -> bytes:
        """Identity the fair queue keys on: the CURVE public key (every socket and
        reconnect of one key shares one queue), else the connection's routing id.
        The key is read from a frame that came off the wire (the routing-id frame
        ROUTER prepends carries no metadata)."""
        if self._curve:
            try:
                return b"key:" + frames[-1].get("User-Id").encode()
            except (zmq.ZMQError, AttributeError, UnicodeError):
                pass
        return b"conn:" + frames[0].bytes

    @staticmethod
    def _split(msg):
        """ROUTER message -> (routing prefix, body). REQ peers add an empty delimiter frame."""
        if len(msg) >= 2 and msg[1] == b"":
            return msg[:2], msg[2:]
        return msg[:1], msg[1:]

    def _handle(self, frames):
        t_in = time.perf_counter()
        client = self._client_id(frames)
        msg = [f.bytes for f in frames]
        route, body = self._split(msg)
        rid = None
        try:
            header, arrays = P.decode(body)
            rid = header.get("id")
            op = header.get("op")
            if op == "ping":
                if rid is not None and not P.valid_id(rid):
                    raise P.ProtocolError("bad_request", f"id must be an integer in [0, {P.MAX_ID}]")
                return route + P.encode({"id": rid, **self._health()})
            if op != "generate":
                raise P.ProtocolError("bad_request", f"op {op!r} not one of {P.OPS}")
            req = P.GenerateRequest.from_message(header, arrays)
            if req.pipeline and req.pipeline != self.kind:
                raise P.ProtocolError("wrong_pipeline", f"this server runs {self.kind!r}, request asks {req.pipeline!r}")
            try:
                nbytes = sum(a.nbytes for a in (req.control, req.image_prompt) if a is not None)
                self.jobs.put(client, (route, req, t_in), nbytes)
            except QueueFull as exc:
                self.busy += 1
                return route + P.error_reply(req.id, "busy", exc.detail)
            return None
        except P.ProtocolError as exc:
            self.rejected += 1
            self._rejections(exc.code, exc.detail)
            return route + P.error_reply(rid, exc.code, exc.detail)
        except Exception as exc:  # never let one message stop the server
            self.rejected += 1
            log.exception("unexpected error handling a request")
            return route + P.error_reply(rid, "internal", f"{type(exc).__name__}: {exc}")
