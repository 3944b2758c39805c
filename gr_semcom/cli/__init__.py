"""``semcom`` command line."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from ..common import MODELS
from ..systems.options import DeepJsccOptions, Jpeg2000Options, SebOptions, UlbscOptions, cbr_value as parse_fraction
from ..systems.registry import IMAGE_SCHEMES, TRANSMIT_SCHEMES
from ..semantic.images import load_image_set
from .common import _add_phy_args, _specs


def _models() -> Path:
    return MODELS


def cmd_transmit(args) -> int:
    from ..bridge.auth import CurveConfigError, curve_options_from_args, export_client_env

    try:  # --client-key/--server-key: checked now, then used by every GeneratorClient of this run
        export_client_env(curve_options_from_args(args))
    except CurveConfigError as exc:
        print(f"semcom transmit: {exc}", file=sys.stderr)
        return 2
    if args.scheme == "ulbsc":
        return cmd_transmit_ulbsc(args)
    if args.scheme == "multisc":
        from .multisc import cmd_transmit_multisc

        return cmd_transmit_multisc(args)
    if args.scheme in IMAGE_SCHEMES:
        return cmd_transmit_images(args)
    from ..link.sim import run_link

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


def cmd_transmit_ulbsc(args) -> int:
    from ..semantic.hub import MissingWeights
    from ..semantic.images import ImageError, load_image
    from ..systems.ulbsc import send_ulbsc, write_outputs

    src = Path(args.input)
    try:
        img = load_image(src)
        codec = UlbscOptions.from_args(args).build(str(src))
        detector, captioner = codec.detector, codec.captioner
        payload = codec.encode(img)
    except (ImageError, MissingWeights, FileNotFoundError, ValueError) as exc:
        print(f"semcom: {exc}", file=sys.stderr)
        return 2
    spec, chan = _specs(args)
    res = send_ulbsc(codec, payload, spec, chan, timeout=args.timeout, generator=args.generator,
                     generator_timeout=args.generator_timeout, steps=args.steps, seed=args.seed, image=img,
                     name=src.name)
    out = Path(args.out)
    summary = write_outputs(res, out, src.stat().st_size)
    m = res.metrics
    print(f"caption sent:     {payload.caption!r} ({captioner.name})")
    print(f"caption received: {res.recon.caption!r}")
    print(f"saliency ({detector.name}): {len(payload.indices)} index(es) {list(map(int, payload.indices))} -> "
          f"{list(map(int, res.recon.indices))}; MAE {m['saliency_mae']:.4f}, F-measure {m['saliency_fmeasure']:.4f} "
          f"(adaptive threshold; {m['saliency_fmeasure_t05']:.4f} at 0.5)"
          + (" (ERASED: prior map)" if res.recon.saliency_erased else ""))
    print(f"bytes sent: {summary['bytes_sent']} over the digital PHY"
          + (f" + {summary['analog_symbols_sent']} analog DeepSC symbols" if summary['analog_symbols_sent'] else "")
          + f"; source {h_w(payload.shape)} = {summary['raw_image_bytes']} raw bytes, file {src.stat().st_size} B; "
          f"compression ratio {100 * summary['compression_ratio_vs_raw']:.4f} % of raw, "
          f"{100 * summary['compression_ratio_vs_file']:.3f} % of the file")
    print(f"PHY: {res.link['frames_ok']}/{res.link['frames_sent']} frames ok, Es/N0 {chan.esn0_db} dB "
          f"({chan.model}), estimated {res.link['mean_snr_db']:.2f} dB")
    if args.generator:
        print("generated image: " + ("generated.png" if res.generated is not None else
                                      f"none ({res.generator_error}); caption and map written"))
    print(f"wrote {out}/metrics.json, received.json, source_saliency.png, received_saliency.png")
    return 0 if res.link.get("frames_ok") else 1




def cmd_transmit_images(args) -> int:
    import csv

    from PIL import Image

    from ..systems import images as image_link

    src = Path(args.input)
    if not src.exists():
        print(f"semcom: no such file or directory: {src}", file=sys.stderr)
        return 2
    names, images, failures = load_image_set(src, args.size)
    if not images:
        print(f"semcom: no decodable image in {src}" + "".join(f"\n  {f['reason']}" for f in failures),
              file=sys.stderr)
        return 2
    _, chan = _specs(args)
    from dataclasses import replace

    given = {k: v for k, v in (("modulation", args.mod), ("code_rate", args.rate), ("codewords", args.codewords))
             if v is not None}
    spec = replace(image_link.image_phy(images, chan.esn0_db, args.cbr), **given)
    sent: list = []
    try:
        if args.scheme in ("seb", "hyperprior"):
            opts = SebOptions.from_args(args, mode=args.scheme, models=",".join(args.models or []))
            codec = opts.build()
            res = image_link.run_seb(codec, names, images, chan, opts.cbr, timeout=args.timeout, seed=opts.seed,
                                     spec=spec, sent=sent, split=opts.split, set_size=opts.set_size)
        elif args.scheme == "jpeg2000":
            res = image_link.run_jpeg2000(names, images, chan, args.cbr, timeout=args.timeout, spec=spec, sent=sent)
        else:
            model = DeepJsccOptions.from_args(args, models=(args.models or [""])[0]).build()
            res = image_link.run_deepjscc(model, names, images, chan, args.cbr)
    except (FileNotFoundError, ValueError) as exc:
        print(f"semcom: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    (out / "recon").mkdir(parents=True, exist_ok=True)
    if sent:
        from ..link.sim import payload_manifest

        (out / "payloads.json").write_text(json.dumps(payload_manifest(sent), indent=2))
    rows = []
    for r in res:
        Image.fromarray(r.image).save(out / "recon" / f"{r.name}.png")
        rows.append(r.row)
    rows += [{"scheme": args.scheme, "channel": chan.model, "esn0_db": chan.esn0_db, **f} for f in failures]
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(out / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, keys)
        w.writeheader()
        w.writerows(rows)
    ok = [r.row for r in res]
    for r in ok:
        print(f"{r['image']:>16}: PSNR {r['psnr']:6.2f} dB  MS-SSIM {r['ms_ssim']:.4f}  "
              f"{r['channel_uses']} channel uses (CBR {r['cbr']:.4f} <= {args.cbr:.4f})  "
              f"{r.get('bytes', 0)} B  {r.get('modulation')} {r.get('code_rate')}"
              + ("  FAILED" if r.get("failed") else ""))
    import numpy as np

    ms = [r["ms_ssim"] for r in ok if np.isfinite(r["ms_ssim"])]
    ms_text = f"MS-SSIM {np.mean(ms):.4f}" if ms else "MS-SSIM n/a (images <= 160 px)"
    print(f"mean over {len(ok)} image(s): PSNR {np.mean([r['psnr'] for r in ok]):.2f} dB, {ms_text}; "
          f"{len(failures)} unreadable")
    print(f"wrote {out}/results.csv and {out}/recon/*.png")
    return 0


def h_w(shape) -> str:
    return f"{shape[1]}x{shape[0]}"


def cmd_train(args) -> int:
    import torch

    torch.set_num_threads(args.threads)
    if args.what == "saliency-vq":
        from ..semantic.train import train_saliency_vq

        m = train_saliency_vq(args.out, grid=args.grid, codebook=args.codebook, epochs=args.epochs,
                              ae_epochs=args.ae_epochs, seed=args.seed)
        print(json.dumps({k: m[k] for k in ("bits_per_map", "codes_used", "test", "mean_map_baseline")}))
    elif args.what == "saliency-jscc":
        from ..semantic.train import train_saliency_jscc

        m = train_saliency_jscc(args.out, epochs=args.epochs, seed=args.seed)
        print(json.dumps(m["test_awgn"]))
    elif args.what in ("image-jscc", "deepjscc"):
        from ..semantic.image_jscc import train_image_jscc

        m = train_image_jscc(args.out, steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed,
                             data=args.data, device=args.device, amp=args.amp, resume=not args.no_resume,
                             time_limit=args.time_limit, run_steps=args.run_steps, warmup=args.warmup,
                             init=args.init)
        print(json.dumps(m["test_awgn"]))
    elif args.what in ("seb", "hyperprior"):
        from ..semantic.seb.train import train_seb

        m = train_seb(args.out, mode=args.what, lam=args.lam, steps=args.steps, batch=args.batch, lr=args.lr,
                      init=args.init, seed=args.seed, ref_weight=args.ref_weight, ref_steps=args.ref_steps,
                      data=args.data, device=args.device, amp=args.amp, resume=not args.no_resume,
                      time_limit=args.time_limit, run_steps=args.run_steps, warmup=args.warmup, pool=args.pool,
                      init_seb=args.init_seb, cond=not args.no_cond)
        print(json.dumps(m["test_metrics_estimated"]))
    else:
        from ..semantic.train import train_deepsc_model

        m = train_deepsc_model(args.out, epochs=args.epochs, seed=args.seed, n_debian=args.sentences,
                               n_synthetic=args.captions, vocab=args.vocab, max_len=args.max_len)
        print(json.dumps(m["eval"][:6]))
    print(f"wrote {args.out}/model.safetensors, metrics.json, README.md")
    return 0


def cmd_grc_path(args) -> int:
    from ..grc import grc_block_dir, install_grc_config

    if args.install:
        path = install_grc_config()
        print(f"added {grc_block_dir()} to GRC's local_blocks_path in {path}")
        print("Debian's gnuradio-companion now lists the blocks, but it runs flowgraphs with /usr/bin/python3, "
              f"which cannot import gr_semcom: open GRC with `{Path(sys.argv[0]).parent / 'semcom'} companion "
              "FILE.grc` to execute them")
    else:
        print(grc_block_dir())
    return 0


def cmd_companion(args) -> int:
    from ..grc.companion import main

    return main(args.files)


def cmd_serve(args) -> int:
    import logging

    from ..bridge.auth import CurveConfigError, curve_options_from_args
    from ..bridge.generators import MissingWeights, make_generator
    from ..bridge.server import GeneratorServer, InsecureBindError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    def factory():
        extra = {} if args.pipeline != "controlnet" else {"control_mode": args.control_mode,
                                                          "control_threshold": args.control_threshold}
        return make_generator(args.pipeline, tiny=args.tiny, model=args.model, controlnet=args.controlnet,
                              ip_adapter=args.ip_adapter, device=args.device,
                              fp16=None if args.fp16 is None else args.fp16 == "on", **extra)

    try:
        srv = GeneratorServer(factory, args.endpoint, workers=args.workers, queue_max=args.queue,
                              client_queue_max=args.client_queue, curve=curve_options_from_args(args))
        print(f"semcom serve: {args.pipeline}{' (tiny random weights)' if args.tiny else ''} on {args.device}, "
              f"{args.workers} worker(s), listening on {', '.join(args.endpoint)}"
              f"{' (CURVE)' if srv.curve_on else ''}", flush=True)
        srv.serve_forever()
    except (MissingWeights, InsecureBindError, CurveConfigError) as exc:
        print(f"semcom serve: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_gateway(args) -> int:
    from ..blocks.generator_gateway import GrGateway
    from ..bridge.auth import CurveConfigError, curve_options_from_args

    try:
        gw = GrGateway(args.server, args.pull, args.push, timeout=args.timeout, curve=curve_options_from_args(args))
    except CurveConfigError as exc:
        print(f"semcom gateway: {exc}", file=sys.stderr)
        return 2
    print(f"semcom gateway: PULL {args.pull} -> server {args.server} -> PUSH {args.push}", flush=True)
    try:
        gw.serve_forever()
    except KeyboardInterrupt:
        pass
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
    from ..bridge.auth import add_curve_arguments, add_keys_arguments, keys_main
    from ..bridge.server import DEFAULT_ENDPOINT

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ["train", "controlnet"]:  # its own options (diffusers training recipe, issue 20)
        from ..semantic.train_controlnet import main as train_controlnet

        return train_controlnet(argv[2:])
    ap = argparse.ArgumentParser(prog="semcom", description="gr_semcom: semantic communication over GNU Radio")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("transmit", help="send a file (or random bytes) through the GNU Radio PHY over a simulated channel")
    t.add_argument("input", help="file to send, or 'random'")
    t.add_argument("--random-bytes", type=int, default=4096)
    t.add_argument("--out", default="out/transmit")
    t.add_argument("--timeout", type=float, default=120.0)
    t.add_argument("--scheme", default="file", choices=TRANSMIT_SCHEMES,
                   help="file: send the bytes; ulbsc: INPUT is an image sent as caption + saliency codebook indices; "
                        "multisc: main-object slice + one caption per fused region; "
                        "seb, hyperprior, jpeg2000, deepjscc: INPUT is an image or a directory of images sent "
                        "at the --cbr budget")
    im = t.add_argument_group("image codecs at a CBR budget (--scheme seb|hyperprior|jpeg2000|deepjscc); "
                              "the modulation and LDPC rate follow --snr (phy/mcs.py) unless --mod/--rate/--codewords "
                              "are given")
    im.add_argument("--size", type=int, default=None,
                    help="resize the short side to SIZE and centre-crop SIZE x SIZE first")
    im.add_argument("--models", nargs="+", default=None,
                    help="weights (default: models/seb_lam*, models/hyperprior_lam*, models/image_deepjscc)")
    SebOptions.add_arguments(t)
    Jpeg2000Options.add_arguments(t)
    UlbscOptions.add_arguments(t)
    u = t.add_argument_group("generator (the diffusion receiver over the ZeroMQ bridge)")
    u.add_argument("--generator", default=None,
                   help="ZeroMQ endpoint of `semcom serve --pipeline controlnet` (ulbsc) or `--pipeline ip_adapter` "
                        "(multisc); multisc also takes 'tiny' (in-process tiny random pipeline, tests)")
    u.add_argument("--generator-timeout", type=float, default=60.0)
    u.add_argument("--steps", type=int, default=20)
    from .multisc import add_args as add_multisc_args

    add_multisc_args(t)
    _add_phy_args(t)
    add_curve_arguments(t, "client")
    t.set_defaults(func=cmd_transmit)
    tr = sub.add_parser("train", help="train a model the project ships (writes safetensors + model card); "
                                      "`semcom train controlnet --help`: the ControlNet recipe (GPU)")
    tr.add_argument("what", choices=("saliency-vq", "saliency-jscc", "deepsc", "seb", "hyperprior", "image-jscc",
                                     "deepjscc"))
    tr.add_argument("--data", default=None, help="seb/hyperprior/deepjscc: photoset dir (default data/photos)")
    tr.add_argument("--device", default="cpu", help="seb/hyperprior/deepjscc: cpu, cuda or auto")
    tr.add_argument("--amp", action="store_true", help="bfloat16 autocast on CUDA")
    tr.add_argument("--no-resume", action="store_true", help="start afresh even if OUT/checkpoint exists")
    tr.add_argument("--time-limit", type=float, default=None, help="seconds for this run, then checkpoint")
    tr.add_argument("--run-steps", type=int, default=None, help="at most this many steps now, then checkpoint")
    tr.add_argument("--warmup", type=int, default=0, help="linear learning-rate warm-up steps")
    tr.add_argument("--pool", type=int, default=0, help="crops per photo kept on the device (GPU runs)")
    tr.add_argument("--init-seb", default=None, help="seb: bases generator/compensation from this Seb checkpoint")
    tr.add_argument("--no-cond", action="store_true", help="seb: the first, non-conditional Seb net")
    tr.add_argument("--out", required=True)
    tr.add_argument("--epochs", type=int, default=12)
    tr.add_argument("--ae-epochs", type=int, default=8, help="saliency-vq: autoencoder epochs before the codebook")
    tr.add_argument("--grid", type=int, default=1, help="saliency-vq: indices per side (1 = the paper's one index)")
    tr.add_argument("--codebook", type=int, default=1024, help="saliency-vq: codebook size N_idx")
    tr.add_argument("--sentences", type=int, default=30000, help="deepsc: Debian description sentences")
    tr.add_argument("--captions", type=int, default=15000, help="deepsc: synthetic captions")
    tr.add_argument("--vocab", type=int, default=4000, help="deepsc: vocabulary size")
    tr.add_argument("--max-len", type=int, default=24, help="deepsc: tokens per sentence incl. start/end")
    tr.add_argument("--lam", type=float, default=256.0, help="seb/hyperprior: rate-distortion lambda (MSE on [0,1])")
    tr.add_argument("--steps", type=int, default=1500, help="seb/hyperprior/image-jscc: optimiser steps")
    tr.add_argument("--batch", type=int, default=8, help="seb: subset size; hyperprior/image-jscc: batch")
    tr.add_argument("--lr", type=float, default=1e-3)
    tr.add_argument("--init", default=None, help="seb/hyperprior: start from these weights (shared layers)")
    tr.add_argument("--ref-weight", type=float, default=0.0,
                    help="seb: warm-up weight of MSE(reference, image) (0 = the paper's loss only)")
    tr.add_argument("--ref-steps", type=int, default=0, help="seb: warm-up steps of --ref-weight")
    tr.add_argument("--threads", type=int, default=2)
    tr.add_argument("--seed", type=int, default=0)
    tr.set_defaults(func=cmd_train)
    from .sweep import add_parser as add_sweep_parser

    add_sweep_parser(sub)
    g = sub.add_parser("grc-path", help="print (or --install into GRC's config) the directory of our GRC block YAML")
    g.add_argument("--install", action="store_true")
    g.set_defaults(func=cmd_grc_path)
    c = sub.add_parser("companion", help="open GNU Radio Companion on this interpreter with our blocks, so that "
                                         "Execute runs the flowgraphs (e.g. flowgraphs/seb_awgn_gui.grc)")
    c.add_argument("files", nargs="*", metavar="FILE.grc")
    c.set_defaults(func=cmd_companion)
    s = sub.add_parser("serve", help="run the ZeroMQ generator server (diffusers pipeline) for the receivers")
    s.add_argument("--endpoint", action="append", default=None,
                   help="ZeroMQ endpoint to bind (repeatable; default tcp://127.0.0.1:5555, this machine only; a "
                        "network address needs --server-key/--allowed-keys or --insecure), e.g. ipc:///tmp/semcom.ipc")
    s.add_argument("--pipeline", choices=["text", "controlnet", "ip_adapter", "echo"], default="controlnet")
    s.add_argument("--model", help="Stable Diffusion directory or HF id (default SD 1.5)")
    s.add_argument("--controlnet", help="ControlNet directory or HF id")
    s.add_argument("--ip-adapter", dest="ip_adapter", help="IP-Adapter directory or HF id (h94/IP-Adapter layout)")
    s.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    s.add_argument("--fp16", choices=["on", "off"], default=None, help="default: on for CUDA")
    s.add_argument("--workers", type=int, default=1, help="worker threads, each with its own pipeline")
    s.add_argument("--queue", type=int, default=64, help="requests queued before 'busy' replies")
    s.add_argument("--client-queue", type=int, default=16,
                   help="requests queued per client (CURVE key, else connection) before its 'busy' replies")
    s.add_argument("--tiny", action="store_true", help="tiny random-weight pipeline (tests, no weights needed)")
    s.add_argument("--control-mode", choices=("edges", "threshold", "raw"), default="edges",
                   help="controlnet: the control image made of the received saliency map: edges of the thresholded "
                        "map (default, for the canny ControlNet), the thresholded map, or the map itself")
    s.add_argument("--control-threshold", type=float, default=0.5, help="controlnet: saliency threshold (0..1)")
    add_curve_arguments(s, "server")
    s.set_defaults(func=cmd_serve)
    gw = sub.add_parser("gateway", help="bridge GNU Radio's stock ZMQ PUSH/PULL message blocks to the server")
    gw.add_argument("--server", default="tcp://127.0.0.1:5555", help="generator server endpoint")
    gw.add_argument("--pull", default="tcp://127.0.0.1:5560", help="address of the flowgraph's ZMQ PUSH Message Sink")
    gw.add_argument("--push", default="tcp://127.0.0.1:5561",
                    help="address of the flowgraph's ZMQ PULL Message Source")
    gw.add_argument("--timeout", type=float, default=60.0)
    add_curve_arguments(gw, "client")
    gw.set_defaults(func=cmd_gateway)
    k = sub.add_parser("keys", help="make CURVE key pairs for the generator server and its clients "
                                    "(docs/lab_network.md)")
    add_keys_arguments(k)
    k.set_defaults(func=keys_main)
    m = sub.add_parser("models", help="model utilities")
    msub = m.add_subparsers(dest="models_cmd", required=True)
    d = msub.add_parser("download", help="fetch a Hugging Face repo into a local directory (needs internet)")
    d.add_argument("repo_id")
    d.add_argument("--to", default=None, help="local directory (default: the HF cache)")
    d.add_argument("--allow", action="append", help="glob of files to fetch (repeatable)")
    d.set_defaults(func=cmd_models_download)
    from .ota import add_parsers as add_ota_parsers

    add_ota_parsers(sub, parse_fraction)
    args = ap.parse_args(argv)
    if getattr(args, "cmd", None) == "serve" and not args.endpoint:
        args.endpoint = [DEFAULT_ENDPOINT]
    return args.func(args)

