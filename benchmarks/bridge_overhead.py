"""Generator bridge overhead per request: client round trip minus the
server's generation time, for a 512x512 control map (raw u8 frame) in and a
512x512 RGB PNG out, on loopback (tcp:// and ipc://). The ``echo`` generator
(no model) isolates the bridge: JSON header, frames, validation, queue,
worker hand-off, and the reply image as PNG (zlib level 1) or raw u8.

    .venv/bin/python benchmarks/bridge_overhead.py [--n 200]
"""
from __future__ import annotations

import argparse
import os
import platform
import socket
import tempfile

import numpy as np
from tqdm import tqdm

from gr_semcom.bridge.client import GeneratorClient
from gr_semcom.bridge.generators import make_generator
from gr_semcom.bridge.protocol import GenerateRequest
from gr_semcom.bridge.server import GeneratorServer


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--side", type=int, default=512)
    args = ap.parse_args(argv)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    d = tempfile.mkdtemp()
    eps = {"tcp": f"tcp://127.0.0.1:{port}", "ipc": f"ipc://{d}/bridge.ipc"}
    srv = GeneratorServer(lambda: make_generator("echo"), list(eps.values())).start()
    rng = np.random.default_rng(0)
    # a saliency-like map: smooth blobs, so the PNG is realistic in size
    yy, xx = np.mgrid[:args.side, :args.side] / args.side
    ctrl = (255 * np.exp(-((xx - 0.5) ** 2 + (yy - 0.4) ** 2) / 0.05)).astype(np.uint8)
    rows = []
    try:
        for (name, ep), reply in [(e, r) for r in ("png", "raw") for e in eps.items()]:
            name = f"{name}/{reply}"
            with GeneratorClient(ep, timeout=10) as c:
                over, rtt = [], []
                for i in tqdm(range(args.n + 10), desc=name):
                    r = c.generate(GenerateRequest(id=0, captions=["a cat on a sofa"], seed=int(rng.integers(1000)),
                                                   width=args.side, height=args.side, control=ctrl, reply=reply))
                    if i >= 10:  # warm-up
                        rtt.append(r.seconds)
                        over.append(r.seconds - r.header["seconds"]["generate"])
                over, rtt = np.array(over) * 1e3, np.array(rtt) * 1e3
                rows.append((name, np.median(over), np.percentile(over, 95), np.median(rtt)))
    finally:
        srv.stop()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.side}x{args.side} map, "
          f"{args.n} requests")
    print("transport/reply  overhead median (ms)  overhead p95 (ms)  round trip median (ms)")
    for name, med, p95, rt in rows:
        print(f"{name:15s}  {med:21.2f}  {p95:17.2f}  {rt:22.2f}")
    return rows


if __name__ == "__main__":
    main()
