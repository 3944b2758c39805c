"""Soak of the generator bridge (not in CI): a CURVE server (``echo``
generator, its own process) under mixed traffic for a long time, with RSS
and latency percentiles per window as CSV and a plot.

Traffic (all on loopback):

* ``--clients`` good clients (threads, own keys), each ``--rate`` requests/s:
  control maps of 64..512 px, replies PNG or raw, seeds random; every reply
  is checked against the map sent (echo), so a crossed or corrupt reply
  counts as ``wrong``;
* one bad client: seeded random / mutated messages (bad JSON, NaN,
  Infinity, huge integers, lying shapes, corrupt PNGs, wrong frame counts)
  at ``--bad-rate`` per second; every one must get an error reply (not
  ``internal``);
* one flooder: every ``--flood-every`` s a burst of ``--flood`` requests at
  once (most get ``busy``: its per-client bound);
* intruders: every 10 s a client with no key and one with a key not allowed
  ping with a 0.5 s timeout (must get nothing).

Per window (``--window`` s) one CSV row: server RSS / threads / fds, good
requests ok / busy / timeout / wrong, latency p50 / p95 / p99 / max, bad
messages answered / internal / unanswered, flood ok / busy, intruder
answers, server counters (served, rejected, busy, refused).

    nice -n 19 .venv/bin/python benchmarks/bridge_soak.py --minutes 60 --out benchmarks/results/bridge_soak
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import zmq

from gr_semcom.bridge import protocol as P
from gr_semcom.bridge.auth import CurveOptions, apply_client, make_keys
from gr_semcom.bridge.client import BridgeError, BridgeTimeout, GeneratorClient

FIELDS = ["t_s", "rss_mib", "threads", "fds", "good_ok", "good_busy", "good_timeout", "good_wrong", "good_other",
          "lat_p50_ms", "lat_p95_ms", "lat_p99_ms", "lat_max_ms", "bad_sent", "bad_answered", "bad_internal",
          "bad_unanswered", "flood_ok", "flood_busy", "intruder_tries", "intruder_answered", "served", "rejected",
          "busy", "refused"]

_SERVER = """
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
from gr_semcom.bridge.auth import CurveOptions
from gr_semcom.bridge.generators import EchoGenerator
from gr_semcom.bridge.server import GeneratorServer
GeneratorServer(EchoGenerator, sys.argv[1], workers=2, queue_max=64, client_queue_max=16,
                curve=CurveOptions(server_key=sys.argv[2], allowed_keys=sys.argv[3])).serve_forever()
"""


def _port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def _ctrl(rng, side):
    yy, xx = np.mgrid[:side, :side] / side
    cx, cy, w = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.02, 0.1)
    return (255 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / w)).astype(np.uint8)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.c = {k: 0 for k in FIELDS}
        self.lat: list = []

    def add(self, **kw):
        with self.lock:
            for k, v in kw.items():
                if k == "lat":
                    self.lat.append(v)
                else:
                    self.c[k] += v

    def take(self):
        with self.lock:
            c, lat = self.c, self.lat
            self.reset()
        return c, np.array(lat)


def good_client(ep, opts, rate, stats, stop, seed):
    rng = np.random.default_rng(seed)
    with GeneratorClient(ep, timeout=10.0, curve=opts) as c:
        nxt = time.monotonic()
        while not stop.is_set():
            side = int(rng.choice([64, 128, 256, 512]))
            ctrl = _ctrl(rng, side)
            reply = "png" if rng.random() < 0.5 else "raw"
            try:
                r = c.generate(P.GenerateRequest(id=0, captions=[f"soak {seed}"], seed=int(rng.integers(1 << 30)),
                                                 width=side, height=side, control=ctrl, reply=reply))
                ok = r.image.shape == (side, side, 3) and np.array_equal(r.image[..., 0], ctrl)
                stats.add(**({"good_ok": 1, "lat": r.seconds} if ok else {"good_wrong": 1}))
            except BridgeTimeout:
                stats.add(good_timeout=1)
            except BridgeError as exc:
                stats.add(**({"good_busy": 1} if exc.code == "busy" else {"good_other": 1}))
            nxt += rng.exponential(1.0 / rate)
            time.sleep(max(0.0, nxt - time.monotonic()))


def _bad_messages(rng: random.Random):
    good = P.GenerateRequest(id=1, captions=["x"], width=16, height=16,
                             control=np.zeros((16, 16), np.uint8)).to_frames()
    gh = json.loads(good[0])
    png = P.png_encode(np.zeros((8, 8, 3), np.uint8))
    values = [None, True, -1, 2**63, 1e308, "", "x" * 3000, [], {}, [2**40], ["a"] * 40]
    while True:
        r = rng.random()
        if r < 0.2:
            yield [rng.randbytes(rng.randint(1, 300)) for _ in range(rng.randint(1, 3))]
        elif r < 0.4:
            b = bytearray(good[0])
            for _ in range(rng.randint(1, 6)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            yield [bytes(b)] + good[1:]
        elif r < 0.7:
            h = json.loads(json.dumps(gh))
            h[rng.choice(sorted(h))] = rng.choice(values)
            yield [json.dumps(h).encode()] + good[1:]
        elif r < 0.85:
            tok = rng.choice(["NaN", "Infinity", "-Infinity", "1e999", "1" + "0" * 400])
            key = rng.choice(["steps", "width", "seed", "id"])
            yield [good[0].replace(f'"{key}": '.encode(), f'"{key}": {tok}, "_": '.encode(), 1)] + good[1:]
        else:
            b = bytearray(png)
            for _ in range(rng.randint(1, 8)):
                b[rng.randrange(8, len(b))] = rng.randrange(256)
            h = {"schema": 1, "op": "generate", "id": 5, "captions": ["x"], "width": 16, "height": 16,
                 "frames": [{"name": "image_prompt", "encoding": "png"}]}
            yield [json.dumps(h).encode(), bytes(b[:rng.randint(8, len(b))])]


def bad_client(ep, opts, rate, stats, stop):
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    apply_client(s, opts)
    s.connect(ep)
    gen = _bad_messages(random.Random(21))
    try:
        while not stop.is_set():
            s.send_multipart(next(gen))
            stats.add(bad_sent=1)
            if not s.poll(5000):
                stats.add(bad_unanswered=1)
                continue
            rep = s.recv_multipart()
            rep = rep[1:] if rep and rep[0] == b"" else rep
            h = P.decode(rep, decode_png=False)[0]
            stats.add(bad_answered=1, bad_internal=int(h.get("error") == "internal"))
            time.sleep(1.0 / rate)
    finally:
        s.close(0)


def flooder(ep, opts, n, every, stats, stop):
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    apply_client(s, opts)
    s.connect(ep)
    try:
        while not stop.wait(every):
            for i in range(n):
                s.send_multipart(P.GenerateRequest(id=i + 1, captions=["flood"], width=64, height=64,
                                                   reply="raw").to_frames())
            got, t0 = 0, time.monotonic()
            while got < n and time.monotonic() - t0 < 30 and not stop.is_set():
                if s.poll(200):
                    h = P.decode(s.recv_multipart(), decode_png=False)[0]
                    got += 1
                    stats.add(**({"flood_busy": 1} if h.get("error") == "busy" else {"flood_ok": 1}))
    finally:
        s.close(0)


def intruders(ep, bad_opts, stats, stop):
    while not stop.wait(10.0):
        for opts in (None, bad_opts):
            c = GeneratorClient(ep, timeout=0.5, curve=opts if opts is not None else CurveOptions())
            try:
                c.ping(timeout=0.5)
                stats.add(intruder_tries=1, intruder_answered=1)
            except BridgeError:
                stats.add(intruder_tries=1)
            finally:
                c.close()


def main(argv=None):
    import psutil

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--window", type=float, default=30.0, help="seconds per CSV row")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--rate", type=float, default=5.0, help="requests/s per good client (Poisson)")
    ap.add_argument("--bad-rate", type=float, default=20.0)
    ap.add_argument("--flood", type=int, default=300)
    ap.add_argument("--flood-every", type=float, default=60.0)
    ap.add_argument("--out", default="benchmarks/results/bridge_soak")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    d = Path(tempfile.mkdtemp())
    make_keys(d, "server")
    (d / "allowed").mkdir()
    names = [f"client{i}" for i in range(args.clients)] + ["bad", "flood"]
    for n in names:
        make_keys(d, n)
        shutil.copy(d / f"{n}.key", d / "allowed")
    make_keys(d, "intruder")
    ep = f"tcp://127.0.0.1:{_port()}"
    log = open(out / "server.log", "w")
    srv = subprocess.Popen([sys.executable, "-c", _SERVER, ep, str(d / "server.key_secret"), str(d / "allowed")],
                           stdout=log, stderr=subprocess.STDOUT)
    opts = {n: CurveOptions(client_key=str(d / f"{n}.key_secret"), server_key=str(d / "server.key")) for n in names}
    intruder = CurveOptions(client_key=str(d / "intruder.key_secret"), server_key=str(d / "server.key"))
    stats, stop = Stats(), threading.Event()
    threads = []
    try:
        with GeneratorClient(ep, timeout=1.0, curve=opts["client0"]) as c:
            for _ in range(60):
                try:
                    c.ping(timeout=1.0)
                    break
                except BridgeTimeout:
                    pass
            else:
                raise SystemExit("server did not come up; see server.log")
        for i in range(args.clients):
            threads.append(threading.Thread(target=good_client, daemon=True,
                                            args=(ep, opts[f"client{i}"], args.rate, stats, stop, i)))
        threads.append(threading.Thread(target=bad_client, args=(ep, opts["bad"], args.bad_rate, stats, stop),
                                        daemon=True))
        threads.append(threading.Thread(target=flooder, daemon=True,
                                        args=(ep, opts["flood"], args.flood, args.flood_every, stats, stop)))
        threads.append(threading.Thread(target=intruders, args=(ep, intruder, stats, stop), daemon=True))
        for t in threads:
            t.start()
        proc = psutil.Process(srv.pid)
        t_start = time.monotonic()
        admin = GeneratorClient(ep, timeout=5.0, curve=opts["client0"])
        with open(out / "soak.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS)
            w.writeheader()
            while time.monotonic() - t_start < args.minutes * 60:
                time.sleep(args.window)
                if srv.poll() is not None:
                    raise SystemExit(f"server exited with {srv.returncode}; see server.log")
                c, lat = stats.take()
                h = admin.ping()
                mem = proc.memory_info().rss / 2**20
                row = dict(c, t_s=round(time.monotonic() - t_start, 1), rss_mib=round(mem, 2),
                           threads=proc.num_threads(), fds=proc.num_fds(),
                           served=h["served"], rejected=h["rejected"], busy=h["busy"], refused=h["refused"])
                for q, k in ((50, "lat_p50_ms"), (95, "lat_p95_ms"), (99, "lat_p99_ms"), (100, "lat_max_ms")):
                    row[k] = round(float(np.percentile(lat, q)) * 1e3, 2) if lat.size else ""
                w.writerow(row)
                f.flush()
                print(" ".join(f"{k}={row[k]}" for k in ("t_s", "rss_mib", "good_ok", "good_timeout", "good_wrong",
                                                          "lat_p50_ms", "lat_p99_ms", "bad_internal",
                                                          "intruder_answered", "refused")), flush=True)
        admin.close()
    finally:
        stop.set()
        for t in threads:
            t.join(15)
        srv.terminate()
        try:
            srv.wait(10)
        except subprocess.TimeoutExpired:
            srv.kill()
        log.close()
        shutil.rmtree(d, ignore_errors=True)
    plot(out / "soak.csv", out / "soak.png")
    print(summary(out / "soak.csv"))


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def summary(path) -> str:
    rows = _rows(path)
    tot = {k: sum(int(r[k]) for r in rows) for k in ("good_ok", "good_busy", "good_timeout", "good_wrong",
                                                     "good_other", "bad_sent", "bad_answered", "bad_internal",
                                                     "bad_unanswered", "flood_ok", "flood_busy", "intruder_tries",
                                                     "intruder_answered")}
    rss = [float(r["rss_mib"]) for r in rows]
    p99 = [float(r["lat_p99_ms"]) for r in rows if r["lat_p99_ms"]]
    p50 = [float(r["lat_p50_ms"]) for r in rows if r["lat_p50_ms"]]
    return (f"{float(rows[-1]['t_s']) / 60:.1f} min, {len(rows)} windows; RSS first {rss[0]:.1f} MiB, last "
            f"{rss[-1]:.1f}, max {max(rss):.1f}; median of window p50 {np.median(p50):.1f} ms, worst window p99 "
            f"{max(p99):.1f} ms; totals {json.dumps(tot)}; server refused {rows[-1]['refused']}")


def plot(csv_path, png_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _rows(csv_path)
    t = np.array([float(r["t_s"]) for r in rows]) / 60
    fig, ax = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    ax[0].plot(t, [float(r["rss_mib"]) for r in rows])
    ax[0].set_ylabel("server RSS (MiB)")
    for k in ("lat_p50_ms", "lat_p95_ms", "lat_p99_ms", "lat_max_ms"):
        ax[1].plot(t, [float(r[k]) if r[k] else np.nan for r in rows], label=k[4:7])
    ax[1].set_yscale("log")
    ax[1].set_ylabel("good request latency (ms)")
    ax[1].legend(ncol=4, fontsize=8)
    for k in ("good_ok", "bad_answered", "flood_busy", "good_timeout", "bad_internal"):
        ax[2].plot(t, [int(r[k]) for r in rows], label=k)
    ax[2].set_ylabel("per window")
    ax[2].set_xlabel("minutes")
    ax[2].legend(ncol=3, fontsize=8)
    fig.suptitle("generator bridge soak: CURVE echo server, mixed good / bad / flood / intruder traffic")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)


if __name__ == "__main__":
    main()
