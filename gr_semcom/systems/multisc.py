"""Multi-SC over the GNU Radio chain (``semcom transmit --scheme multisc``,
``semcom sweep --schemes multisc,...``, the blocks' tests):

* the main-object slice PDU crosses the digital PHY (CRC32 + LDPC + QAM, the
  modulation and rate per Es/N0 from phy/mcs.py, as every digital scheme);
* each region caption crosses its own channel realisation (orthogonal
  channels, Algorithm 1 step 4): ``uncoded`` (6-bit characters on QPSK in an
  uncoded burst: bit errors become misspellings), ``digital`` (UTF-8 through
  CRC + LDPC: a failed frame erases the caption's bytes) or ``deepsc``
  (DeepSC symbols on an analog burst);
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
from ..semantic.multisc.codec import TEXT_MODES, MultiScCodec, MultiScPayload, MultiScReconstruction
from ..common import PayloadType

CAPTION_SEED_STRIDE = 7919  # channel seed offset of caption k: independent realisations


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


def _caption_symbols(text: str, mode: str, deepsc=None):
    """(symbols, decoder) of a caption on an analog burst (uncoded / deepsc)."""
    if mode == "uncoded":
        from ..blocks.multisc_blocks import symbols_to_text, text_to_symbols

        return text_to_symbols(text), symbols_to_text
    if mode == "deepsc":
        if deepsc is None:
            raise ValueError("caption mode deepsc needs a DeepSC model")

        def dec(y):
            return deepsc.symbols_to_text(np.asarray(y)[None])[0]

        return deepsc.text_to_symbols([text])[0], dec
    raise ValueError(f"caption mode is one of {TEXT_MODES}")


def caption_channel_uses(text: str, mode: str, spec, deepsc=None) -> int:
    """Channel uses of one caption as :func:`send_caption` sends it."""
    from .images import analog_layout
    from ..phy.mcs import burst_symbols, pdu_channel_uses

    if mode == "digital":
        return pdu_channel_uses(len(text.encode("utf-8") or b" "), spec)
    sym, _ = _caption_symbols(text, mode, deepsc)
    return burst_symbols(analog_layout(sym.size, 10 ** 9)[0])


def cbr_budget(shape: tuple, esn0_db: float, cbr: float, mode: str = "uncoded", deepsc=None):
    """The same-budget rule for Multi-SC: a ``budget(captions)`` for
    ``MultiScCodec.encode`` that keeps the captions (dropping the last,
    smallest regions while the slice PDU would not even carry its header)
    and gives the slice PDU every byte the rest of ``cbr`` x 3HW channel
    uses carries at this Es/N0's MCS (phy/mcs.byte_budget, codewords per
    burst searched). Also returns the chosen slice spec via
    ``budget.spec`` once called."""
    from ..phy.mcs import byte_budget, cbr_channel_uses, choose_mcs
    from ..semantic.multisc.codec import HEADER

    total = cbr_channel_uses(shape[0], shape[1], cbr)
    spec = choose_mcs(esn0_db)

    def budget(captions: list) -> tuple[int, int | None]:
        keep = len(captions)
        while True:
            rest = total - sum(caption_channel_uses(c, mode, spec, deepsc) for c in captions[:keep])
            b = byte_budget(max(0, rest), spec)
            if b.payload_bytes >= HEADER or keep <= 1:
                break
            keep -= 1
        budget.spec, budget.channel_uses = b.spec, total
        return keep, (b.payload_bytes if b.payload_bytes >= HEADER else None)

    budget.spec, budget.channel_uses = spec, total
    return budget


def send_caption(text: str, mode: str, spec, chan: ChannelSpec, timeout: float, rx_threshold: float,
                 deepsc=None) -> tuple[str | None, dict]:
    """One caption over its channel; (received text or None, link record)."""
    from ..link.sim import link_columns
    from .images import analog_layout
    from ..phy.mcs import burst_symbols, pdu_channel_uses
    from ..semantic.data import pdu_text
    from ..link.sim import run_analog, run_link

    if mode == "digital":
        data = text.encode("utf-8") or b" "
        r = run_link(data, spec, chan, timeout=timeout, payload_type=PayloadType.MULTISC_CAPTIONS, rx_threshold=rx_threshold)
        got = pdu_text(r.received) if r.received is not None else None  # lost frames: erased characters
        return got, {"mode": mode, "received": r.received is not None, "complete": r.complete, **link_columns(r),
                     "channel_uses": pdu_channel_uses(len(data), spec)}
    sym, dec = _caption_symbols(text, mode, deepsc)
    aspec, n = analog_layout(sym.size, 10 ** 9)
    ar = run_analog(sym, chan, spec=aspec, timeout=min(timeout, 10.0), rx_threshold=rx_threshold)
    got = dec(ar.symbols[: sym.size]) if ar.symbols is not None else None
    return got, {"mode": mode, "received": ar.symbols is not None, "snr_db": ar.snr_db, "symbols": int(sym.size),
                 "channel_uses": burst_symbols(aspec)}


def send_multisc(codec: MultiScCodec, payload: MultiScPayload, chan: ChannelSpec, text_mode: str = "uncoded",
                 timeout: float = 60.0, generator=None, generator_timeout: float = 60.0, ip_scale: float = 0.6,
                 steps: int = 20, seed: int = 0, rx_threshold: float = 0.15, deepsc=None, source=None,
                 clip=None, gen_size: int = 512, spec=None) -> MultiScResult:
    """``generator``: a bridge endpoint (str), an in-process object with
    ``generate(GenerateRequest)``, or None. ``source``: the source image
    (for image metrics). ``spec``: the slice's frame spec (default: the MCS
    of this Es/N0; with a CBR budget, the one :func:`cbr_budget` chose);
    captions always use this Es/N0's MCS."""
    from ..link.sim import link_columns
    from ..phy.mcs import choose_mcs, pdu_channel_uses
    from ..link.sim import run_link

    cap_spec = choose_mcs(chan.esn0_db)
    spec = spec or cap_spec
    t = time.monotonic()
    r = None
    if payload.slice_data:  # empty: the budget had no room for the slice PDU
        r = run_link(payload.slice_data, spec, chan, timeout=timeout, payload_type=PayloadType.MULTISC_SLICE, rx_threshold=rx_threshold)
    link = {**(r.summary() if r else {}), **link_columns(r)}
    uses = pdu_channel_uses(len(payload.slice_data), spec) if r else 0
    caps, clinks = [], []
    for k, c in enumerate(payload.captions):
        ck = replace(chan, seed=chan.seed + CAPTION_SEED_STRIDE * (k + 1))
        got, rec = send_caption(c, text_mode, cap_spec, ck, timeout, rx_threshold, deepsc)
        caps.append(got)
        clinks.append(rec)
        uses += rec["channel_uses"]
    t_link = time.monotonic() - t
    t = time.monotonic()
    recon = codec.decode(r.received if r else None, r.missing if r and r.received is not None else (), caps)
    t_dec = time.monotonic() - t
    out = MultiScResult(payload, recon, link, clinks, {}, timings={"link_s": t_link, "decode_correct_s": t_dec},
                        channel_uses=int(uses))
    return _generate_and_score(out, generator, generator_timeout, ip_scale, steps, seed, gen_size, source, clip)


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


def multisc_phy(image: np.ndarray, esn0_db: float, cbr: float, max_regions: int = 4):
    """The slice PHY of a Multi-SC flowgraph: the MCS of this Es/N0 and the
    codewords per burst that leave the slice the most bytes of the CBR budget
    on average over 1..``max_regions`` captions (one analog burst each; how
    many regions an image gives is known only once it is encoded)."""
    from ..blocks.analog import analog_spec
    from ..phy.mcs import burst_symbols, byte_budget, cbr_channel_uses, choose_mcs

    spec = choose_mcs(esn0_db)
    total = cbr_channel_uses(image.shape[0], image.shape[1], cbr)
    cap = burst_symbols(analog_spec(codewords=1))

    def slice_bytes(cw: int) -> float:
        s = replace(spec, codewords=cw)
        return np.mean([byte_budget(max(0, total - n * cap), s, search=False).payload_bytes
                        for n in range(1, max_regions + 1)])

    return replace(spec, codewords=max(range(1, 9), key=lambda cw: (slice_bytes(cw), -cw)))


def run_multisc(codec: MultiScCodec, image: np.ndarray, chan: ChannelSpec, cbr: float = 1 / 30, spec=None,
                name: str = "image", timeout: float | None = None, rx_threshold: float = 0.15, generator=None,
                generator_timeout: float = 60.0, ip_scale: float = 0.6, steps: int = 20, seed: int = 0, clip=None,
                gen_size: int = 512) -> MultiScResult:
    """Multi-SC with uncoded captions through the flowgraph a GRC user builds:
    ``multisc_encoder`` (the same-budget rule at this PHY: captions on one
    analog burst each, the slice in the rest of CBR x 3 H W) -> slice on
    ``phy_tx`` -> channel -> ``phy_rx``, captions on ``analog_tx`` -> channel
    -> ``analog_rx`` -> ``multisc_decoder`` (pairing, spelling correction)."""
    from ..blocks.analog import analog_spec
    from ..blocks.multisc_blocks import multisc_decoder, multisc_encoder, slice_budget
    from ..link.sim import link_columns, run_blocks
    from ..phy.mcs import burst_symbols, pdu_channel_uses
    from ..semantic.images import load_image, png_bytes
    from ..semantic.multisc.regions import Box

    spec = spec or multisc_phy(image, chan.esn0_db, cbr)
    aspec = analog_spec(codewords=1)
    payload = codec.encode(image, slice_budget(image.shape[:2], cbr, spec, aspec, "uncoded"))  # the reference
    enc = multisc_encoder(codec=codec, cbr=cbr, modulation=spec.modulation, code_rate=spec.code_rate,
                          codewords=spec.codewords, text_mode="uncoded")
    dec = multisc_decoder(codec=codec, ip_adapter_scale=ip_scale)
    t = time.monotonic()
    run = run_blocks(enc, dec, [({"name": name}, png_bytes(image))], spec, chan, timeout=timeout,
                     rx_threshold=rx_threshold, analog=("captions", "captions", aspec), ports=("slice", "slice"))
    t_link = time.monotonic() - t
    if [d for _, d in run.sent] != [payload.slice_data]:
        raise RuntimeError("the Multi-SC encoder block's slice differs from the codec's for the same image")
    r = run.pdu_links[0] if run.pdu_links else None
    if run.decoded:
        meta, _ = run.decoded[0]
        box = Box(*meta["slice_box"][:4])
        recon = MultiScReconstruction(
            slice_image=load_image(bytes(np.asarray(meta["image_prompt_png"], np.uint8))), slice_box=box,
            shape=(int(meta["source_height"]), int(meta["source_width"])),
            captions_received=list(meta["captions_received"]), captions_corrected=list(meta["captions_corrected"]),
            slice_erased=bool(meta["slice_erased"]), errors=list(meta.get("errors") or []))
    else:  # the decoder got nothing
        recon = codec.decode(None, (), [None] * len(payload.captions))
    k = len(payload.captions)  # captions lost with their slice's header: empty, one per caption sent
    recon.captions_received = (list(recon.captions_received) + [""] * k)[:k]
    recon.captions_corrected = (list(recon.captions_corrected) + [""] * k)[:k]
    got = run.analog_received
    clinks = [{"mode": "uncoded", "received": k < len(got), "snr_db": got[k][0].get("snr_db") if k < len(got)
               else float("nan"), "channel_uses": burst_symbols(aspec)} for k in range(len(payload.captions))]
    uses = (pdu_channel_uses(len(payload.slice_data), spec) if payload.slice_data else 0) + \
        len(payload.captions) * burst_symbols(aspec)
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
