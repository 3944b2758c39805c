"""``semcom`` command line."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _add_phy_args(p: argparse.ArgumentParser) -> None:
    from .phy.channel import CHANNELS
    from .phy.constellations import MODULATIONS
    from .phy.fec import CODE_RATES

    p.add_argument("--waveform", default="sc", choices=("sc", "ofdm"),
                   help="single-carrier bursts (default) or OFDM (64-point, 16 CP, 48 data carriers)")
    p.add_argument("--mod", default="qpsk", choices=MODULATIONS, help="modulation (default qpsk)")
    p.add_argument("--rate", default="1/2", choices=CODE_RATES, help="LDPC code rate (gr-fec alist codes)")
    p.add_argument("--codewords", type=int, default=4, help="LDPC codewords per burst")
    p.add_argument("--channel", default="awgn", choices=CHANNELS)
    p.add_argument("--snr", type=float, default=10.0, help="Es/N0 in dB per complex symbol (unit-energy symbols)")
    p.add_argument("--ebn0", type=float, default=None, help="give Eb/N0 in dB instead of --snr")
    p.add_argument("--cfo", type=float, default=0.0,
                   help="carrier offset: cycles per symbol (sc) or fraction of the subcarrier spacing (ofdm)")
    p.add_argument("--timing-offset", type=float, default=0.0, help="fractional sample delay (0..1)")
    p.add_argument("--sro-ppm", type=float, default=0.0, help="sample-rate offset in ppm")
    p.add_argument("--doppler", type=float, default=1e-3, help="fading fD*T per symbol")
    p.add_argument("--seed", type=int, default=0)


def _specs(args):
    from .phy.channel import ChannelSpec, ebn0_to_esn0
    from .phy.frame import FrameSpec
    from .phy.ofdm import OfdmSpec

    if args.waveform == "ofdm":
        spec = OfdmSpec(modulation=args.mod, code_rate=args.rate, codewords=args.codewords)
    else:
        spec = FrameSpec(modulation=args.mod, code_rate=args.rate, codewords=args.codewords)
    esn0 = args.snr
    if args.ebn0 is not None:
        esn0 = ebn0_to_esn0(args.ebn0, spec.constellation.bits_per_symbol, spec.code.rate)
    chan = ChannelSpec(model=args.channel, esn0_db=esn0, cfo=args.cfo, timing_offset=args.timing_offset,
                       sro_ppm=args.sro_ppm, doppler=args.doppler, seed=args.seed)
    return spec, chan


def cmd_transmit(args) -> int:
    from .sim import run_link

    src = Path(args.input)
    if args.input == "random":
        import numpy as np

        data = np.random.default_rng(args.seed).integers(0, 256, args.random_bytes, dtype=np.uint8).tobytes()
        name = "random.bin"
    else:
        if not src.is_file():
            print(f"semcom: no such file: {src}", file=sys.stderr)
            return 2
        data = src.read_bytes()
        name = src.name
    if not data:
        print(f"semcom: {src} is empty; nothing to send", file=sys.stderr)
        return 2
    spec, chan = _specs(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = run_link(data, spec, chan, timeout=args.timeout)
    summary = res.summary()
    summary.update(input=str(src), bytes_sent=len(data), channel=chan.model,
                   bytes_ok=(res.received == data) if res.received is not None else False,
                   goodput_bps=(8 * len(data) / res.seconds) if res.complete else 0.0)
    if res.received is not None:
        (out / f"received_{name}").write_bytes(res.received)
    (out / "metrics.json").write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps({k: summary[k] for k in ("bytes_sent", "complete", "bytes_ok", "frames_sent", "frames_ok",
                                              "frames_crc_fail", "coded_ber", "esn0_db", "ebn0_db",
                                              "mean_snr_db", "seconds")}, default=str))
    print(f"wrote {out / 'metrics.json'}")
    return 0 if res.received is not None else 1


def cmd_grc_path(args) -> int:
    from .grc import grc_block_dir, install_grc_config

    if args.install:
        path = install_grc_config()
        print(f"added {grc_block_dir()} to GRC's local_blocks_path in {path}")
    else:
        print(grc_block_dir())
    return 0


def cmd_serve(args) -> int:
    import logging

    from .bridge.generators import MissingWeights, make_generator
    from .bridge.server import GeneratorServer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    def factory():
        return make_generator(args.pipeline, tiny=args.tiny, model=args.model, controlnet=args.controlnet,
                              ip_adapter=args.ip_adapter, device=args.device,
                              fp16=None if args.fp16 is None else args.fp16 == "on")

    try:
        srv = GeneratorServer(factory, args.endpoint, workers=args.workers, queue_max=args.queue)
        print(f"semcom serve: {args.pipeline}{' (tiny random weights)' if args.tiny else ''} on {args.device}, "
              f"{args.workers} worker(s), listening on {', '.join(args.endpoint)}", flush=True)
        srv.serve_forever()
    except MissingWeights as exc:
        print(f"semcom serve: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_models_download(args) -> int:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        print("semcom models download needs huggingface_hub (pip install huggingface_hub)", file=sys.stderr)
        return 2
    try:
        path = snapshot_download(args.repo_id, local_dir=args.to, allow_patterns=args.allow or None)
    except Exception as exc:
        print(f"semcom models download: could not fetch {args.repo_id!r} ({type(exc).__name__}: {exc}). "
              "This needs internet access to huggingface.co; on an offline machine copy the directory "
              "from one that has it.", file=sys.stderr)
        return 2
    print(path)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="semcom", description="gr_semcom: semantic communication over GNU Radio")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("transmit", help="send a file (or random bytes) through the GNU Radio PHY over a simulated channel")
    t.add_argument("input", help="file to send, or 'random'")
    t.add_argument("--random-bytes", type=int, default=4096)
    t.add_argument("--out", default="out/transmit")
    t.add_argument("--timeout", type=float, default=120.0)
    _add_phy_args(t)
    t.set_defaults(func=cmd_transmit)
    g = sub.add_parser("grc-path", help="print (or --install into GRC's config) the directory of our GRC block YAML")
    g.add_argument("--install", action="store_true")
    g.set_defaults(func=cmd_grc_path)
    s = sub.add_parser("serve", help="run the ZeroMQ generator server (diffusers pipeline) for the receivers")
    s.add_argument("--endpoint", action="append", default=None,
                   help="ZeroMQ endpoint to bind (repeatable; default tcp://*:5555), e.g. ipc:///tmp/semcom.ipc")
    s.add_argument("--pipeline", choices=["text", "controlnet", "ip_adapter", "echo"], default="controlnet")
    s.add_argument("--model", help="Stable Diffusion directory or HF id (default SD 1.5)")
    s.add_argument("--controlnet", help="ControlNet directory or HF id")
    s.add_argument("--ip-adapter", dest="ip_adapter", help="IP-Adapter directory or HF id (h94/IP-Adapter layout)")
    s.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    s.add_argument("--fp16", choices=["on", "off"], default=None, help="default: on for CUDA")
    s.add_argument("--workers", type=int, default=1, help="worker threads, each with its own pipeline")
    s.add_argument("--queue", type=int, default=64, help="requests queued before 'busy' replies")
    s.add_argument("--tiny", action="store_true", help="tiny random-weight pipeline (tests, no weights needed)")
    s.set_defaults(func=cmd_serve)
    m = sub.add_parser("models", help="model utilities")
    msub = m.add_subparsers(dest="models_cmd", required=True)
    d = msub.add_parser("download", help="fetch a Hugging Face repo into a local directory (needs internet)")
    d.add_argument("repo_id")
    d.add_argument("--to", default=None, help="local directory (default: the HF cache)")
    d.add_argument("--allow", action="append", help="glob of files to fetch (repeatable)")
    d.set_defaults(func=cmd_models_download)
    args = ap.parse_args(argv)
    if getattr(args, "cmd", None) == "serve" and not args.endpoint:
        args.endpoint = ["tcp://*:5555"]
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
