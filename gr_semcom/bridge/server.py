"""The generator server: a ZeroMQ ROUTER in front of a pool of worker threads,
each owning one generator (one diffusers pipeline, loaded once).

One thread owns the ROUTER socket (ZeroMQ sockets are not thread-safe): it
validates every message (:mod:`protocol`), answers ``ping`` itself, queues
``generate`` requests (bounded: a full queue answers ``busy`` at once) and
sends the replies that workers push back over an inproc socket. A malformed
message gets an error reply and never reaches a worker; an exception in a
generator becomes an error reply for that request only.

    semcom serve --endpoint tcp://*:5555 --pipeline controlnet --model DIR --device cuda --workers 2
"""
from __future__ import annotations

import logging
import queue
import threading
import time
import uuid

import zmq

from . import protocol as P

log = logging.getLogger("gr_semcom.bridge")


class GeneratorServer:
    def __init__(self, make_generator, endpoints, workers: int = 1, queue_max: int = 64,
                 context: zmq.Context | None = None, name: str = ""):
        """``make_generator()`` is called once per worker (each GPU worker holds its own pipeline)."""
        self.endpoints = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        self.ctx = context or zmq.Context.instance()
        self.jobs: queue.Queue = queue.Queue(maxsize=queue_max)
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
        self.ready = threading.Event()
        self._error: Exception | None = None

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> "GeneratorServer":
        gens = [self._make() for _ in range(self.workers)]  # load before accepting requests
        self.kind = getattr(gens[0], "kind", "?")
        self.device = str(getattr(gens[0], "device", "?"))
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
            raise self._error
        return self

    def stop(self):
        self._stop.set()
        for _ in range(self.workers):
            try:
                self.jobs.put_nowait(None)
            except queue.Full:
                pass
        for t in self._threads:
            t.join(timeout=5)

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
                "queued": self.jobs.qsize(), "served": self.served, "rejected": self.rejected,
                "schema": P.SCHEMA, "name": self.name}

    def _loop(self):
        router = self.ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.MAXMSGSIZE, 256 * 1024 * 1024)  # hard cap; per-frame limits reply with errors
        router.setsockopt(zmq.SNDHWM, 0)
        router.setsockopt(zmq.RCVHWM, 0)
        try:
            for ep in self.endpoints:
                router.bind(ep)
        except zmq.ZMQError as exc:
            self._error = RuntimeError(f"cannot bind {self.endpoints}: {exc}")
            self.ready.set()
            return
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(self._pull, zmq.POLLIN)
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
                    while True:
                        try:
                            msg = router.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        reply = self._handle(msg)
                        if reply is not None:
                            router.send_multipart(reply)
        finally:
            router.close(linger=0)
            self._pull.close(linger=0)

    @staticmethod
    def _split(msg):
        """ROUTER message -> (routing prefix, body). REQ peers add an empty delimiter frame."""
        if len(msg) >= 2 and msg[1] == b"":
            return msg[:2], msg[2:]
        return msg[:1], msg[1:]

    def _handle(self, msg):
        t_in = time.perf_counter()
        route, body = self._split(msg)
        rid = None
        try:
            header, arrays = P.decode(body)
            rid = header.get("id")
            op = header.get("op")
            if op == "ping":
                return route + P.encode({"id": rid if isinstance(rid, int) else None, **self._health()})
            if op != "generate":
                raise P.ProtocolError("bad_request", f"op {op!r} not one of {P.OPS}")
            req = P.GenerateRequest.from_message(header, arrays)
            if req.pipeline and req.pipeline != self.kind:
                raise P.ProtocolError("wrong_pipeline", f"this server runs {self.kind!r}, request asks {req.pipeline!r}")
            try:
                self.jobs.put_nowait((route, req, t_in))
            except queue.Full:
                self.rejected += 1
                return route + P.error_reply(req.id, "busy", f"{self.jobs.maxsize} requests queued")
            return None
        except P.ProtocolError as exc:
            self.rejected += 1
            log.warning("rejected request: %s", exc)
            return route + P.error_reply(rid, exc.code, exc.detail)
        except Exception as exc:  # never let one message stop the server
            self.rejected += 1
            log.exception("unexpected error handling a request")
            return route + P.error_reply(rid, "internal", f"{type(exc).__name__}: {exc}")
