"""``semcom transmit IMAGE --scheme multisc``: Multi-SC over the GNU Radio chain."""
from __future__ import annotations

import sys
from pathlib import Path


def add_args(t) -> None:
    """Multi-SC's codec options (systems.options.MultiScOptions) and what the
    receiver's evaluation takes."""
    from ..systems.options import MultiScOptions

    MultiScOptions.add_arguments(t)
    g = t.add_argument_group("Multi-SC evaluation")
    g.add_argument("--gen-size", type=int, default=None,
                   help="generated image side (default 512; 64 with --generator tiny, whose VAE only halves)")
    g.add_argument("--clip", default=None, help="CLIP model directory / HF id for the CLIP metric (NaN if absent)")


def build_codec(args):
    """The Multi-SC codec of ``semcom transmit``'s options (MultiScOptions.build)."""
    from ..systems.options import MultiScOptions

    return MultiScOptions.from_args(args).build()


def cmd_transmit_multisc(args) -> int:
    from ..semantic.hub import MissingWeights
    from ..systems.multisc import make_generator_arg, write_outputs
    from ..semantic.images import ImageError, load_image

    src = Path(args.input)
    try:
        img = load_image(src)
        codec = build_codec(args)
        deepsc = None
        if args.text_mode == "deepsc":
            from ..blocks.multisc_blocks import load_text_model

            deepsc = load_text_model("deepsc", getattr(args, "deepsc", "") or "")
        clip = None
        if args.clip:
            from ..semantic.clip_score import ClipSimilarity

            clip = ClipSimilarity.from_pretrained(args.clip)
    except (ImageError, MissingWeights, FileNotFoundError, ValueError) as exc:
        print(f"semcom: {exc}", file=sys.stderr)
        return 2
    from dataclasses import replace

    from .common import _specs
    from ..systems.multisc import multisc_phy, run_multisc

    _, chan = _specs(args)
    gen = dict(generator=make_generator_arg(args.generator), generator_timeout=args.generator_timeout,
               ip_scale=args.ip_scale, steps=args.steps, seed=args.seed, clip=clip,
               gen_size=args.gen_size or (64 if args.generator == "tiny" else 512))
    # the GRC blocks' flowgraph in every caption mode (systems.multisc.run_multisc): the same-budget rule,
    # captions + slice PDU within --cbr (the slice at most --slice-bytes)
    given = {k: v for k, v in (("modulation", args.mod), ("code_rate", args.rate),
                               ("codewords", args.codewords)) if v is not None}
    spec = replace(multisc_phy(img, chan.esn0_db, args.cbr, text_mode=args.text_mode), **given)
    try:
        res = run_multisc(codec, img, chan, args.cbr, spec=spec, name=src.name, timeout=args.timeout,
                          text_mode=args.text_mode, deepsc=deepsc, **gen)
    except ValueError as exc:
        print(f"semcom: {exc}", file=sys.stderr)
        return 2
    payload = res.payload
    out = Path(args.out)
    summary = write_outputs(res, out, img)
    m = res.metrics
    print(f"regions: {len(payload.regions)} ({args.split} split of {len(payload.detections)} detections by "
          f"{codec.detector.name}); main-object slice {payload.slice_box.as_list()} by {codec.segmenter.name}, "
          f"{len(payload.slice_data)} B PDU")
    for c in summary["captions"]:
        print(f"  region {c['region']} sent:      {c['sent']!r}\n           received:  {c['received']!r}\n"
              f"           corrected: {c['corrected']!r}")
    print(f"caption BLEU {m['caption_bleu_raw']:.1f} -> {m['caption_bleu_corrected']:.1f} after correction "
          f"({codec.corrector.name}); CER {m['caption_cer_raw']:.3f} -> {m['caption_cer_corrected']:.3f}; "
          f"slice PSNR {m['slice_psnr']:.2f} dB" + (" (ERASED)" if res.recon.slice_erased else ""))
    print(f"channel uses {res.channel_uses} of {res.metrics['budget_channel_uses']} (CBR {m['cbr']:.5f} <= {args.cbr:.5f}); "
          f"slice {res.spec.modulation} {res.spec.code_rate}: {res.link['frames_ok']}/"
          f"{res.link['frames_sent']} frames ok, Es/N0 {chan.esn0_db} dB ({chan.model})")
    if args.generator:
        print("generated image: " + ("generated.png" if res.generated is not None else
                                      f"none ({res.generator_error}); captions and slice written"))
    print(f"wrote {out}/metrics.json, captions.txt, regions.png, region_*.png, slice_sent.png, slice_received.png, "
          "before_generation.png" + (", generated.png" if res.generated is not None else ""))
    return 0 if (res.link.get("frames_ok") or any(res.recon.captions_received)) else 1
