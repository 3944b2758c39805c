"""ULBSC over the GNU Radio chain (used by ``semcom transmit --scheme ulbsc``
and the sweeps): codec payload -> PHY (digital: CRC + LDPC + QAM; analog
caption: an uncoded DeepSC burst) -> channel -> receiver -> decoded caption
and saliency map, optionally an image from the generator bridge."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..phy.channel import ChannelSpec
from ..semantic.metrics import bleu, f_measure, mae
from ..semantic.ulbsc.codec import UlbscCodec, UlbscPayload, UlbscReconstruction
from ..common import PayloadType


@dataclass
class UlbscResult:
    payload: UlbscPayload
    recon: UlbscReconstruction
    link: dict
    analog: dict | None
    metrics: dict
    generated: np.ndarray | None = None
    generator_error: str | None = None
    timings: dict = field(default_factory=dict)


def payload_type(payload: UlbscPayload) -> PayloadType:
    """The frame header's payload type of a ULBSC payload (the caption-only form has its own)."""
    return PayloadType.ULBSC if any(f["name"] == "saliency_indices" for f in payload.fields) else PayloadType.CAPTION


def saliency_metrics(pred: np.ndarray, ref: np.ndarray) -> dict:
    # adaptive threshold as the paper; at 0.5 too (the adaptive one is 1, so 0 F, for maps of mean > 0.5)
    return {"saliency_mae": mae(pred, ref), "saliency_fmeasure": f_measure(pred, ref),
            "saliency_fmeasure_t05": f_measure(pred, ref, threshold=0.5)}


def send_ulbsc(codec: UlbscCodec, payload: UlbscPayload, spec, chan: ChannelSpec, timeout: float | None = None,
               generator: str | None = None, generator_timeout: float = 60.0, steps: int = 20,
               seed: int = 0, rx_threshold: float | None = None, image: np.ndarray | None = None,
               name: str = "image") -> UlbscResult:
    """ULBSC across the channel through the flowgraph a GRC user builds
    (:func:`~gr_semcom.link.sim.run_blocks`): ``image_source``'s PDU ->
    ``ulbsc_encoder`` -> ``phy_tx`` -> channel -> ``phy_rx`` ->
    ``ulbsc_decoder``; in analog caption mode also the encoder's ``analog``
    port -> ``analog_tx`` -> its own channel -> ``analog_rx`` -> the
    decoder's ``analog`` port. The encoder block encodes ``image`` with
    ``payload``'s caption; ``payload`` is the transmitter's reference for
    the metrics (the block's payload must equal it). The codec's ``fields``
    ("caption": the caption-only baseline) is the blocks' too.
    ``rx_threshold``: preamble detector rho^2 of the receivers (None: their
    default)."""
    from ..blocks.analog import analog_spec
    from ..blocks.ulbsc_blocks import ulbsc_decoder, ulbsc_encoder
    from ..link.sim import link_columns, run_blocks
    from ..semantic.images import png_bytes

    if image is None:
        raise ValueError("send_ulbsc needs the source image: the encoder block encodes it")
    thr = {} if rx_threshold is None else {"rx_threshold": rx_threshold}
    analog = ("analog", "analog", analog_spec()) if codec.caption_mode == "analog" else None
    t = time.monotonic()
    run = run_blocks(ulbsc_encoder(codec=codec), ulbsc_decoder(codec=codec),
                     [({"name": name, "caption": payload.caption}, png_bytes(image))], spec, chan,
                     timeout=timeout, analog=analog, ports=("out", "in"), **thr)
    sent_symbols = [np.asarray(d) for _, d in run.analog_sent]
    if [d for _, d in run.sent] != [payload.data] or (payload.symbols is not None and not (
            len(sent_symbols) == 1 and np.array_equal(sent_symbols[0], payload.symbols.astype(np.complex64)))):
        raise RuntimeError("the ULBSC encoder block's payload differs from the codec's for the same image and "
                           "caption: the metrics' reference would not be what was sent")
    res = run.pdu_links[0]
    t_link = time.monotonic() - t
    t = time.monotonic()
    analog_rec = None
    if analog is not None:
        got = run.analog_received
        analog_rec = {"received": bool(got), "snr_db": got[0][0].get("snr_db") if got else float("nan"),
                      "symbols": int(payload.symbols.size), "seconds": run.seconds}
    if run.decoded:
        meta, m8 = run.decoded[0]
        sal = np.frombuffer(m8, np.uint8).reshape(meta["control_shape"]).astype(np.float32) / 255
        recon = UlbscReconstruction(caption=meta.get("caption", ""), saliency=sal,
                                    shape=(int(meta["height"]), int(meta["width"])),
                                    indices=np.asarray(meta.get("indices", []), np.int64),
                                    saliency_erased=bool(meta.get("saliency_erased")),
                                    caption_erased=bool(meta.get("caption_erased")),
                                    errors=list(meta.get("errors") or []))
    else:  # nothing reached the decoder: every field erased
        recon = codec.decode(None, (), None)
    analog = analog_rec
    link = {**res.summary(), **link_columns(res)}
    t_dec = time.monotonic() - t
    sal = recon.saliency
    if sal.shape != payload.saliency.shape:  # header lost: the receiver guessed the size; compare at the source's
        from ..semantic.images import resize

        h, w = payload.saliency.shape
        sal = resize((np.clip(sal, 0, 1) * 255).astype(np.uint8), (w, h)).astype(np.float32) / 255
    m = saliency_metrics(sal, payload.saliency)
    m["caption_bleu"] = bleu([recon.caption], [payload.caption]) if payload.caption else float("nan")
    m["caption_exact"] = recon.caption.strip().lower() == payload.caption.strip().lower()
    m["caption_similarity"] = _caption_similarity(recon.caption, payload.caption)
    out = UlbscResult(payload, recon, link, analog, m, timings={"link_s": t_link, "decode_s": t_dec})
    if generator:
        out.generated, out.generator_error = generate_image(generator, recon, generator_timeout, steps, seed)
    return out


def caption_similarities(hyps: list, refs: list) -> np.ndarray:
    """MiniLM cosine similarity of each pair (semantic/text_similarity.py, one
    batch) if the model is installed, else NaN: the other metrics still get
    reported. NaN for an empty reference."""
    from ..semantic.text_similarity import MissingSentenceModel, sentence_similarity

    out = np.full(len(refs), np.nan)
    keep = [k for k, r in enumerate(refs) if r]
    if keep:
        try:
            out[keep] = sentence_similarity([hyps[k] or "" for k in keep], [refs[k] for k in keep])
        except MissingSentenceModel:
            pass
    return out


def _caption_similarity(hyp: str, ref: str) -> float:
    return float(caption_similarities([hyp], [ref])[0])


def generate_image(endpoint: str, recon: UlbscReconstruction, timeout: float, steps: int = 20,
                   seed: int = 0, size: int = 512):
    """Caption + saliency map -> image through the generator bridge (ControlNet
    pipeline). Returns (image or None, error or None); never raises for a
    server that is down."""
    from ..bridge.client import BridgeError, GeneratorClient
    from ..bridge.protocol import GenerateRequest
    from ..semantic.images import resize

    ctrl = resize((np.clip(recon.saliency, 0, 1) * 255).astype(np.uint8), (size, size))
    req = GenerateRequest(id=0, captions=[recon.caption or ""], seed=seed, steps=steps, width=size,
                          height=size, control=np.repeat(ctrl[:, :, None], 3, axis=2))
    try:
        with GeneratorClient(endpoint, timeout=timeout) as cli:
            rep = cli.generate(req)
        return rep.image, None
    except BridgeError as exc:
        return None, f"{exc.code}: {exc.detail}"


def write_outputs(res: UlbscResult, out: Path, source_bytes: int | None = None) -> dict:
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray((res.payload.saliency * 255).round().astype(np.uint8)).save(out / "source_saliency.png")
    Image.fromarray((res.recon.saliency * 255).round().astype(np.uint8)).save(out / "received_saliency.png")
    if res.generated is not None:
        Image.fromarray(res.generated).save(out / "generated.png")
    h, w = res.payload.shape
    sent = len(res.payload.data)
    analog_syms = 0 if res.payload.symbols is None else int(res.payload.symbols.size)
    summary = {
        "caption_sent": res.payload.caption, "caption_received": res.recon.caption,
        "bytes_sent": sent, "analog_symbols_sent": analog_syms,
        "raw_image_bytes": h * w * 3,
        "compression_ratio_vs_raw": sent / (h * w * 3),
        "compression_ratio_vs_file": (sent / source_bytes) if source_bytes else None,
        "fields": res.payload.fields, "indices_sent": [int(i) for i in res.payload.indices],
        "received": res.recon.meta(), "metrics": res.metrics, "link": res.link, "analog": res.analog,
        "generated": res.generated is not None, "generator_error": res.generator_error,
        "timings": res.timings,
    }
    (out / "received.json").write_text(json.dumps(res.recon.meta(), indent=2))
    (out / "metrics.json").write_text(json.dumps(summary, indent=2, default=str))
    from ..link.sim import payload_manifest

    (out / "payloads.json").write_text(json.dumps(payload_manifest(
        [({"payload_type": int(payload_type(res.payload))}, res.payload.data)]), indent=2))
    return summary
