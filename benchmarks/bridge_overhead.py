"""Generator bridge overhead per request: client round trip minus the
server's generation time, for a 512x512 control map (raw u8 frame) in and a
512x512 RGB PNG out, on loopback (tcp://, ipc://, and tcp:// with CURVE
encryption + authentication). The ``echo`` generator (no model) isolates
the bridge: JSON header, frames, validation, fair queue, worker hand-off,
the reply image as PNG (zlib level 1) or raw u8, and with CURVE the
per-message encryption of the ~256 KB request and the 768 KB raw / PNG reply
(the CURVE handshake is paid once per connection, before the first request).

    .venv/bin/python benchmarks/bridge_overhead.py [--n 200] [--csv out.csv]
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import socket
import tempfile

import numpy as np
from tqdm import tqdm

from gr_semcom.bridge.auth import CurveOptions, make_keys
from gr_semcom.bridge.client import GeneratorClient
from gr_semcom.bridge.generators import make_generator
from gr_semcom.bridge.protocol import GenerateRequest
from gr_semcom.bridge.server import GeneratorServer


def _port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--side", type=int, default=512)
    ap.add_argument("--csv", default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    d = tempfile.mkdtemp()
    make_keys(f"{d}/keys", "server")
    make_keys(f"{d}/keys", "client")
    os.makedirs(f"{d}/allowed")
    shutil.copy(f"{d}/keys/client.key", f"{d}/allowed/")
    eps = {"tcp": f"tcp://127.0.0.1:{_port()}", "ipc": f"ipc://{d}/bridge.ipc"}
    curve_ep = f"tcp://127.0.0.1:{_port()}"
    srv = GeneratorServer(lambda: make_generator("echo"), list(eps.values())).start()
    csrv = GeneratorServer(lambda: make_generator("echo"), curve_ep, curve=CurveOptions(
        server_key=f"{d}/keys/server.key_secret", allowed_keys=f"{d}/allowed")).start()
    copts = CurveOptions(client_key=f"{d}/keys/client.key_secret", server_key=f"{d}/keys/server.key")
    targets = [("tcp", eps["tcp"], None), ("ipc", eps["ipc"], None), ("tcp+curve", curve_ep, copts)]
    rng = np.random.default_rng(0)
    # a saliency-like map: smooth blobs, so the PNG is realistic in size
    yy, xx = np.mgrid[:args.side, :args.side] / args.side
    ctrl = (255 * np.exp(-((xx - 0.5) ** 2 + (yy - 0.4) ** 2) / 0.05)).astype(np.uint8)
    rows = []
    try:
        for reply in ("png", "raw"):
            # interleaved: request i goes to every transport in turn, so a shared machine's load
            # (other jobs come and go) falls on all of them alike instead of on whichever ran last
            clients = [GeneratorClient(ep, timeout=10, curve=curve) for _, ep, curve in targets]
            over = {t[0]: [] for t in targets}
            rtt = {t[0]: [] for t in targets}
            try:
                for i in tqdm(range(args.n + 10), desc=reply):
                    seed = int(rng.integers(1000))
                    for (name, _, _), c in zip(targets, clients):
                        r = c.generate(GenerateRequest(id=0, captions=["a cat on a sofa"], seed=seed, width=args.side,
                                                       height=args.side, control=ctrl, reply=reply))
                        if i >= 10:  # warm-up (and the CURVE handshake)
                            rtt[name].append(r.seconds)
                            over[name].append(r.seconds - r.header["seconds"]["generate"])
            finally:
                for c in clients:
                    c.close()
            for name, _, _ in targets:
                o, t = np.array(over[name]) * 1e3, np.array(rtt[name]) * 1e3
                rows.append((f"{name}/{reply}", np.median(o), np.percentile(o, 95), np.median(t)))
    finally:
        srv.stop()
        csrv.stop()
        shutil.rmtree(d, ignore_errors=True)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.side}x{args.side} map, "
          f"{args.n} requests")
    print("transport/reply  overhead median (ms)  overhead p95 (ms)  round trip median (ms)")
    for name, med, p95, rt in rows:
        print(f"{name:15s}  {med:21.2f}  {p95:17.2f}  {rt:22.2f}")
    by = {r[0]: r for r in rows}
    for reply in ("png", "raw"):
        print(f"CURVE cost per request ({reply} reply): {by[f'tcp+curve/{reply}'][1] - by[f'tcp/{reply}'][1]:+.2f} ms "
              "median overhead vs plain tcp")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["transport_reply", "overhead_median_ms", "overhead_p95_ms", "round_trip_median_ms"])
            w.writerows([(n, f"{a:.3f}", f"{b:.3f}", f"{c:.3f}") for n, a, b, c in rows])
    return rows


if __name__ == "__main__":
    main()
