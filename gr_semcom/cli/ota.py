"""``semcom radios | record | replay | ota tx | ota rx``: radios, SigMF
recordings and over-the-air runs (hardware/README.md)."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from ..common import PayloadType


def _frame_args(p: argparse.ArgumentParser, codewords: int = 1) -> None:
    from ..phy.constellations import MODULATIONS
    from ..phy.fec import CODE_RATES

    p.add_argument("--mod", default="qpsk", choices=MODULATIONS)
    p.add_argument("--rate", default="1/2", choices=CODE_RATES, help="LDPC code rate")
    p.add_argument("--codewords", type=int, default=codewords, help="LDPC codewords per burst")
    p.add_argument("--sps", type=int, default=2, help="samples per symbol")


def _spec(args):
    from ..phy.frame import FrameSpec

    return FrameSpec(modulation=args.mod, code_rate=args.rate, codewords=args.codewords, sps=args.sps)


def _radio_args(p: argparse.ArgumentParser, gain: float) -> None:
    p.add_argument("--driver", default="soapy", choices=("uhd", "soapy"), help="uhd: USRP; soapy: HackRF etc.")
    p.add_argument("--args", default="", help="device args (uhd: type=b200,serial=...; soapy: driver=hackrf,...)")
    p.add_argument("--freq", type=float, default=915e6, help="centre frequency in Hz")
    p.add_argument("--samp-rate", type=float, default=1e6, help="sample rate in S/s (symbol rate = rate / sps)")
    p.add_argument("--gain", type=float, default=gain, help="gain in dB (hardware/README.md)")
    p.add_argument("--antenna", default="")
    p.add_argument("--amp", action="store_true", help="HackRF: switch on the 14 dB amplifier")
    p.add_argument("--ppm", type=float, default=0.0, help="reference correction in ppm (Soapy devices)")
    p.add_argument("--record", default="", help="also write what is sent / received as SigMF (base path)")
    p.add_argument("--seconds", type=float, default=0.0, help="stop after this long (0: until Ctrl-C)")


def cmd_radios(args) -> int:
    from ..blocks.radio import find_radios

    found = find_radios(args.uhd_args)
    print(json.dumps(found, indent=1))
    if not found["uhd"] and not found["soapy"]:
        print("no radios found (see hardware/README.md, 'Checklist')", file=sys.stderr)
    return 0


def cmd_record(args) -> int:
    from ..link import ota
    from ..phy.recording import RecordingError

    spec = _spec(args)
    chan = ota.CHANNEL_PRESETS[args.channel]
    if chan is not None:
        kw = {k: v for k, v in (("esn0_db", args.snr), ("cfo", args.cfo), ("seed", args.seed)) if v is not None}
        chan = ota.shifted(chan, **kw)
    if args.scheme == "file":
        data = Path(args.input).read_bytes()
        pdus = [({"payload_type": int(PayloadType.FILE)}, data)]
    else:
        from ..blocks.seb_blocks import make_seb_codec, seb_set_pdus
        from ..semantic.images import load_image_set

        names, images, failures = load_image_set(Path(args.input), args.size or None)
        if not images:
            print(f"error: no decodable image in {args.input}" + "".join(f"\n  {f['reason']}" for f in failures),
                  file=sys.stderr)
            return 2
        pdus = seb_set_pdus(make_seb_codec(",".join(args.models or []), args.scheme),
                            names, images, spec, args.cbr)
    try:
        meta = ota.record(args.out, pdus, spec, chan, args.samp_rate, args.freq, args.scheme)
    except (RecordingError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"recording": str(meta), "pdus": len(pdus), "bytes": sum(len(d) for _, d in pdus),
                      "samples": Path(meta).with_suffix(".sigmf-data").stat().st_size // 8}))
    return 0


def cmd_replay(args) -> int:
    from ..link import ota
    from ..phy.recording import RecordingError

    try:
        res = ota.replay(args.recording, spec=_spec(args) if args.mod_override else None,
                         threshold=args.threshold, dc_block=args.dc_block, models=",".join(args.models or []))
    except RecordingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, (meta, data) in enumerate(res.pdus):
        (out / f"pdu_{i:03d}.bin").write_bytes(data)
        (out / f"pdu_{i:03d}.json").write_text(json.dumps(meta, default=str))
    for i, (meta, png) in enumerate(res.images):
        (out / f"rx_{i:03d}.png").write_bytes(png)
        (out / f"rx_{i:03d}.json").write_text(json.dumps(meta, default=str))
    s = res.summary()
    (out / "summary.json").write_text(json.dumps(s, indent=1))
    print(json.dumps(s))
    return 0 if res.pdus else 1


def _run_until(tb, seconds: float, report) -> None:
    stop = {"now": False}
    signal.signal(signal.SIGINT, lambda *_: stop.__setitem__("now", True))
    tb.start()
    t0 = time.monotonic()
    try:
        while not stop["now"] and (seconds <= 0 or time.monotonic() - t0 < seconds):
            time.sleep(0.5)
            report()
    finally:
        tb.stop()
        tb.wait()


def cmd_ota(args) -> int:
    from ..link import ota
    from ..blocks.radio import RadioNotFoundError, radio_sink, radio_source

    spec = _spec(args)
    kw = dict(driver=args.driver, args=args.args, freq=args.freq, rate=args.samp_rate, gain=args.gain,
              antenna=args.antenna, amp=args.amp, ppm=args.ppm)
    try:
        if args.direction == "tx":
            tb = ota.build_ota_tx(radio_sink(**kw), args.input, args.scheme, spec, args.cbr, args.set_size,
                                  args.interval, True, args.record, args.samp_rate, args.freq,
                                  ",".join(args.models or []))
            report = lambda: None  # noqa: E731
        else:
            tb = ota.build_ota_rx(radio_source(**kw), args.out, args.scheme, spec, args.threshold, args.dc_block,
                                  args.record, args.samp_rate, args.freq, ",".join(args.models or []),
                                  hw=f"{args.driver}:{args.args}")
            seen = {"n": 0}

            def report():
                import pmt

                items = tb.status.items
                for m in items[seen["n"]:]:
                    s = pmt.to_python(m)
                    if isinstance(s, dict) and s.get("event") == "frame":
                        print(json.dumps({k: s.get(k) for k in ("crc_ok", "snr_db", "cfo", "seg_index",
                                                                 "seg_count")}), flush=True)
                seen["n"] = len(items)
    except RadioNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _run_until(tb, args.seconds, report)
    return 0


def add_parsers(sub, parse_fraction) -> None:
    r = sub.add_parser("radios", help="list the USRPs (UHD) and SoapySDR devices (HackRF, ...) this machine sees")
    r.add_argument("--uhd-args", default="", help="restrict UHD discovery, e.g. type=b200")
    r.set_defaults(func=cmd_radios)

    rec = sub.add_parser("record", help="write a SigMF recording of the GNU Radio TX, optionally through an "
                                        "impaired channel model (hardware/README.md)")
    rec.add_argument("out", help="recording base path (writes OUT.sigmf-meta + OUT.sigmf-data)")
    rec.add_argument("--input", required=True, help="file (scheme file) or image / image directory (seb)")
    rec.add_argument("--scheme", default="file", choices=("file", "seb", "hyperprior"))
    rec.add_argument("--channel", default="hackrf", choices=("hackrf", "clean"),
                     help="hackrf: the HackRF-like impairment set (ota.HACKRF_LIKE); clean: the TX baseband")
    rec.add_argument("--snr", type=float, default=None, help="override the preset's Es/N0 (dB)")
    rec.add_argument("--cfo", type=float, default=None, help="override the preset's CFO (cycles/symbol)")
    rec.add_argument("--seed", type=int, default=None)
    rec.add_argument("--samp-rate", type=float, default=1e6, help="recorded sample rate (metadata)")
    rec.add_argument("--freq", type=float, default=915e6, help="centre frequency (metadata)")
    rec.add_argument("--cbr", type=parse_fraction, default=1 / 30)
    rec.add_argument("--size", type=int, default=256, help="image: short side resized + centre crop (0: as is)")
    rec.add_argument("--models", nargs="+", default=None)
    _frame_args(rec)
    rec.set_defaults(func=cmd_record)

    rp = sub.add_parser("replay", help="feed a SigMF recording into the receiver; writes the PDUs / images")
    rp.add_argument("recording", help=".sigmf-meta (or base path)")
    rp.add_argument("--out", default="out/replay")
    rp.add_argument("--threshold", type=float, default=0.3, help="detector threshold (normalised rho^2)")
    rp.add_argument("--dc-block", type=int, default=256, help="DC blocker length (0: off)")
    rp.add_argument("--models", nargs="+", default=None)
    rp.add_argument("--mod-override", action="store_true",
                    help="use --mod/--rate/--codewords/--sps instead of the recording's semcom:frame")
    _frame_args(rp)
    rp.set_defaults(func=cmd_replay)

    o = sub.add_parser("ota", help="transmit or receive with a USRP or HackRF (hardware/README.md)")
    o.add_argument("direction", choices=("tx", "rx"))
    o.add_argument("input", nargs="?", default="", help="tx: image / image directory (seb) or file")
    o.add_argument("--scheme", default="seb", choices=("seb", "hyperprior", "file"))
    o.add_argument("--out", default="out/ota_rx", help="rx: where decoded images / payloads go")
    o.add_argument("--cbr", type=parse_fraction, default=1 / 30)
    o.add_argument("--set-size", type=int, default=2)
    o.add_argument("--interval", type=float, default=2.0, help="tx: seconds between images / file repeats")
    o.add_argument("--threshold", type=float, default=0.3)
    o.add_argument("--dc-block", type=int, default=256)
    o.add_argument("--models", nargs="+", default=None)
    _radio_args(o, gain=30.0)
    _frame_args(o)
    o.set_defaults(func=cmd_ota)
