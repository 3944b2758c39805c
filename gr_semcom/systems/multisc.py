"""Multi-SC over the GNU Radio chain (``semcom transmit --scheme multisc``,
``semcom sweep --schemes multisc,...``, the blocks' tests):

* the main-object slice PDU crosses the digital PHY (CRC32 + LDPC + QAM, the
  modulation and rate per Es/N0 from phy/mcs.py, as every digital scheme);
* each region caption: ``uncoded`` (6-bit characters on QPSK in an uncoded
  analog burst: bit errors become misspellings) or ``deepsc`` (DeepSC
  symbols on an analog burst), the captions' chain its own channel
  realisation (orthogonal channels, Algorithm 1 step 4); or ``digital``
  (UTF-8 PDUs through CRC + LDPC behind the slice on its PHY: a failed frame
  erases the caption's bytes); all through the blocks (:func:`run_multisc`);
* the receiver corrects each caption (BART / SymSpell / none), and with a
  generator (a bridge endpoint or an in-process generator object) makes the
  image from all captions + the slice (IP-Adapter, lambda = ``ip_scale``).

Metrics per image: caption BLEU / character error rate / MiniLM similarity
before and after correction, slice PSNR, and on the images the receiver has
(the slice on grey "before generation", the generated image "after") PSNR,
MS-SSIM, LPIPS, DISTS and CLIP cosine similarity to the source (CLIP where
its weights are present, else NaN).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..phy.channel import ChannelSpec
from ..semantic.multisc.codec import MultiScCodec, MultiScPayload, MultiScReconstruction
from ..common import PayloadType



@dataclass
class MultiScResult:
    payload: MultiScPayload
    recon: MultiScReconstruction
    link: dict
    captions_link: list
    metrics: dict
    generated: np.ndarray | None = None
    generator_error: str | None = None
    timings: dict = field(default_factory=dict)
    channel_uses: int = 0
    spec: object = None  # the slice's frame spec


def _generate_and_score(out: MultiScResult, generator, generator_timeout, ip_scale, steps, seed, gen_size, source,
                        clip) -> MultiScResult:
    """The receiver's last steps: the image from the generator (if any) and the metrics."""
    if generator is not None:
        t = time.monotonic()
        out.generated, out.generator_error = generate(generator, out.recon, generator_timeout, ip_scale, steps, seed,
                                                      gen_size)
        out.timings["generate_s"] = time.monotonic() - t
    out.metrics = multisc_metrics(out, source, clip)
    return out


def multisc_phy(image: np.ndarray, esn0_db: float, cbr: float, max_regions: int = 4, text_mode: str = "uncoded"):
    """The slice PHY of a Multi-SC flowgraph: the MCS of this Es/N0 and the
    codewords per burst that leave the slice the most bytes of the CBR budget
    on average over 1..``max_regions`` captions (one analog burst each, or
    in the digital mode a PDU of a typical 64-byte caption on the same PHY;
    how many regions an image gives is known only once it is encoded)."""
    from ..blocks.analog import analog_spec
    from ..phy.mcs import burst_symbols, byte_budget, cbr_channel_uses, choose_mcs, pdu_channel_uses

    spec = choose_mcs(esn0_db)
    total = cbr_channel_uses(image.shape[0], image.shape[1], cbr)

    def slice_bytes(cw: int) -> float:
        s = replace(spec, codewords=cw)
        cap = pdu_channel_uses(64, s) if text_mode == "digital" else burst_symbols(analog_spec(codewords=1))
        return np.mean([byte_budget(max(0, total - n * cap), s, search=False).payload_bytes
                        for n in range(1, max_regions + 1)])

    return replace(spec, codewords=max(range(1, 9), key=lambda cw: (slice_bytes(cw), -cw)))


def run_multisc(codec: MultiScCodec, image: np.ndarray, chan: ChannelSpec, cbr: float = 1 / 30, spec=None,
                name: str = "image", timeout: float | None = None, rx_threshold: float = 0.15, generator=None,
                generator_timeout: float = 60.0, ip_scale: float = 0.6, steps: int = 20, seed: int = 0, clip=None,
                gen_size: int = 512, text_mode: str = "uncoded", deepsc=None) -> MultiScResult:
    """Multi-SC through the flowgraph a GRC user builds, in every caption
    mode: ``multisc_encoder`` (the same-budget rule at this PHY) -> slice on
    ``phy_tx`` -> channel -> ``phy_rx`` -> ``multisc_decoder`` (pairing,
    spelling correction); the captions on ``analog_tx`` -> their own channel
    -> ``analog_rx`` (``text_mode`` uncoded: QPSK characters; deepsc: the
    DeepSC symbols of ``deepsc``, a loaded model) or, digital, as UTF-8 PDUs
    into the same ``phy_tx`` behind the slice."""
    from ..blocks.analog import analog_spec
    from ..blocks.multisc_blocks import caption_uses, load_text_model, multisc_decoder, multisc_encoder, \
        slice_budget
    from ..link.sim import link_columns, run_blocks
    from ..phy.mcs import pdu_channel_uses
    from ..semantic.images import load_image, png_bytes
    from ..semantic.multisc.regions import Box

    deepsc = load_text_model(text_mode, "", deepsc)
    spec = spec or multisc_phy(image, chan.esn0_db, cbr, text_mode=text_mode)
    aspec = analog_spec(codewords=1)
    payload = codec.encode(image, slice_budget(image.shape[:2], cbr, spec, aspec, text_mode))  # the reference
    enc = multisc_encoder(codec=codec, cbr=cbr, modulation=spec.modulation, code_rate=spec.code_rate,
                          codewords=spec.codewords, text_mode=text_mode, deepsc_model=deepsc)
    dec = multisc_decoder(codec=codec, ip_adapter_scale=ip_scale, text_mode=text_mode, deepsc_model=deepsc)
    digital = text_mode == "digital"
    t = time.monotonic()
    run = run_blocks(enc, dec, [({"name": name}, png_bytes(image))], spec, chan, timeout=timeout,
                     rx_threshold=rx_threshold, analog=None if digital else ("captions", "captions", aspec),
                     ports=(("slice", "captions") if digital else "slice", "slice"))
    t_link = time.monotonic() - t
    if run.sent[:1] and run.sent[0][1] != payload.slice_data:
        raise RuntimeError("the Multi-SC encoder block's slice differs from the codec's for the same image")
    r = run.pdu_links[0] if run.pdu_links else None
    if run.decoded:
        meta, _ = run.decoded[0]
        box = Box(*meta["slice_box"][:4])
        recon = MultiScReconstruction(
            slice_image=load_image(bytes(np.asarray(meta["image_prompt_png"], np.uint8))), slice_box=box,
            shape=(int(meta["source_height"]), int(meta["source_width"])),
            # (an empty list crosses PMT as None)
            captions_received=list(meta.get("captions_received") or []),
            captions_corrected=list(meta.get("captions_corrected") or []),
            slice_erased=bool(meta["slice_erased"]), errors=list(meta.get("errors") or []))
    else:  # the decoder got nothing
        recon = codec.decode(None, (), [None] * len(payload.captions))
    k = len(payload.captions)  # captions lost with their slice's header: empty, one per caption sent
    recon.captions_received = (list(recon.captions_received) + [""] * k)[:k]
    recon.captions_corrected = (list(recon.captions_corrected) + [""] * k)[:k]
    uses_of = [caption_uses(c, text_mode, spec, aspec) for c in payload.captions]
    if digital:  # caption k is the digital chain's PDU k + 1
        clinks = [{"mode": text_mode, **link_columns(run.pdu_links[j + 1]),
                   "received": run.pdu_links[j + 1].received is not None, "channel_uses": uses_of[j]}
                  if j + 1 < len(run.pdu_links) else {"mode": text_mode, "received": False,
                                                       "channel_uses": uses_of[j]} for j in range(k)]
    else:
        got = run.analog_received
        clinks = [{"mode": text_mode, "received": j < len(got), "snr_db": got[j][0].get("snr_db") if j < len(got)
                   else float("nan"), "channel_uses": uses_of[j]} for j in range(k)]
    uses = (pdu_channel_uses(len(payload.slice_data), spec) if payload.slice_data else 0) + sum(uses_of)
    out = MultiScResult(payload, recon, {**(r.summary() if r else {}), **link_columns(r)}, clinks, {},
                        timings={"link_s": t_link}, channel_uses=int(uses), spec=spec)
    _generate_and_score(out, generator, generator_timeout, ip_scale, steps, seed, gen_size, image, clip)
    out.metrics["budget_channel_uses"] = cbr_channel_uses_of(image, cbr)
    return out


def cbr_channel_uses_of(image: np.ndarray, cbr: float) -> int:
    from ..phy.mcs import cbr_channel_uses

    return cbr_channel_uses(image.shape[0], image.shape[1], cbr)


def generate(generator, recon: MultiScReconstruction, timeout: float, ip_scale: float = 0.6, steps: int = 20,
             seed: int = 0, size: int = 512):
    """All corrected captions + the received slice -> image (eq. 7). Returns
    (image or None, error or None); a server that is down is an error string."""
    from ..bridge.protocol import GenerateRequest

    req = GenerateRequest(id=seed, captions=[c for c in recon.captions_corrected if c] or [""], seed=seed,
                          steps=steps, width=size, height=size, image_prompt=recon.slice_image,
                          ip_adapter_scale=ip_scale, pipeline="ip_adapter")
    if not isinstance(generator, str):
        try:
            return np.asarray(generator.generate(req), np.uint8), None
        except Exception as exc:  # a generator failure is reported, never fatal
            return None, f"{type(exc).__name__}: {exc}"
    from ..bridge.client import BridgeError, GeneratorClient

    try:
        with GeneratorClient(generator, timeout=timeout) as cli:
            return cli.generate(req).image, None
    except BridgeError as exc:
        return None, f"{exc.code}: {exc.detail}"


def _text_metrics(hyps: list, refs: list, tag: str) -> dict:
    from ..semantic.metrics import bleu
    from ..semantic.multisc.textcode import char_error_rate
    from .ulbsc import caption_similarities

    hyps = [h or "" for h in hyps]
    return {f"caption_bleu_{tag}": bleu(hyps, refs) if refs else float("nan"),
            f"caption_cer_{tag}": float(np.mean([char_error_rate(h, r) for h, r in zip(hyps, refs)])) if refs
            else float("nan"),
            f"caption_similarity_{tag}": float(np.nanmean(caption_similarities(hyps, refs)))
            if refs else float("nan")}


def _as_shape(img: np.ndarray, shape: tuple) -> np.ndarray:
    """The received slice at the sent slice's size (a lost header leaves the
    receiver with the configured side, the sender may have used a smaller one)."""
    from ..semantic.images import resize

    return img if img.shape == tuple(shape) else resize(img, (shape[1], shape[0]))


def multisc_metrics(res: MultiScResult, source: np.ndarray | None = None, clip=None) -> dict:
    from .images import _quality
    from ..semantic.images import resize
    from ..semantic.metrics import psnr

    p, rc = res.payload, res.recon
    # the sent captions in the corrector's normal form, so a perfect caption scores 100 either way
    refs = list(p.captions)
    m = {"captions": len(refs), "captions_lost": sum(1 for c in rc.captions_received if not c),
         **_text_metrics(rc.captions_received, refs, "raw"), **_text_metrics(rc.captions_corrected, refs, "corrected"),
         "slice_psnr": psnr(_as_shape(rc.slice_image, p.slice_image.shape), p.slice_image),
         "slice_erased": rc.slice_erased,
         "channel_uses": res.channel_uses, "slice_bytes": len(p.slice_data),
         "caption_chars": sum(len(c) for c in refs)}
    if source is not None:
        h, w = source.shape[:2]
        m["cbr"] = res.channel_uses / (3 * h * w)
        before = rc.canvas() if rc.shape == (h, w) else resize(rc.canvas(), (w, h))
        for k, v in _quality(before, source).items():
            m[f"{k}_before"] = v
        imgs = [("before", before)]
        if res.generated is not None:
            g = res.generated if res.generated.shape[:2] == (h, w) else resize(res.generated, (w, h))
            for k, v in _quality(g, source).items():
                m[k] = v
            imgs.append(("after", g))
        for tag, im in imgs:
            key = "clip" if tag == "after" else "clip_before"
            m[key] = float(clip.image_similarity([im], [source])[0]) if clip is not None else float("nan")
    return m


def write_outputs(res: MultiScResult, out: Path, source: np.ndarray | None = None) -> dict:
    from PIL import Image, ImageDraw

    out.mkdir(parents=True, exist_ok=True)
    p, rc = res.payload, res.recon
    Image.fromarray(p.slice_image).save(out / "slice_sent.png")
    Image.fromarray(rc.slice_image).save(out / "slice_received.png")
    Image.fromarray(rc.canvas()).save(out / "before_generation.png")
    if source is not None:
        im = Image.fromarray(source)
        dr = ImageDraw.Draw(im)
        for b in p.detections:
            dr.rectangle([b.x0, b.y0, b.x1 - 1, b.y1 - 1], outline=(255, 255, 0), width=1)
        for k, b in enumerate(p.regions):
            dr.rectangle([b.x0, b.y0, b.x1 - 1, b.y1 - 1], outline=(255, 0, 0), width=3)
            dr.text((b.x0 + 4, b.y0 + 4), str(k + 1), fill=(255, 0, 0))
        sb = p.slice_box
        dr.rectangle([sb.x0, sb.y0, sb.x1 - 1, sb.y1 - 1], outline=(0, 255, 255), width=2)
        im.save(out / "regions.png")
        for k, b in enumerate(p.regions):
            Image.fromarray(b.crop(source)).save(out / f"region_{k + 1}.png")
    if res.generated is not None:
        Image.fromarray(res.generated).save(out / "generated.png")
    summary = {
        "captions": [{"region": k + 1, "box": p.regions[k].as_list(), "sent": p.captions[k],
                      "received": rc.captions_received[k], "corrected": rc.captions_corrected[k],
                      "link": res.captions_link[k]} for k in range(len(p.captions))],
        "payload": p.meta(), "received": rc.meta(), "metrics": res.metrics, "slice_link": res.link,
        "channel_uses": res.channel_uses, "generated": res.generated is not None,
        "generator_error": res.generator_error, "timings": res.timings,
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2, default=str))
    (out / "captions.txt").write_text("".join(
        f"region {c['region']} {c['box']}\n  sent:      {c['sent']}\n  received:  {c['received']}\n"
        f"  corrected: {c['corrected']}\n" for c in summary["captions"]))
    from ..link.sim import payload_manifest

    (out / "payloads.json").write_text(json.dumps(payload_manifest(
        [({"name": "slice", "payload_type": int(PayloadType.MULTISC_SLICE)}, p.slice_data)]
        + [({"name": f"caption {n}", "kind": "caption"}, c.encode("utf-8")) for n, c in enumerate(p.captions)]),
        indent=2))
    return summary


def make_generator_arg(spec: str | None):
    """None | 'tiny' (in-process tiny IP-Adapter pipeline: tests) | ZeroMQ endpoint."""
    if not spec:
        return None
    if spec == "tiny":
        from ..bridge.generators import tiny_generator

        return tiny_generator("ip_adapter")
    return spec
