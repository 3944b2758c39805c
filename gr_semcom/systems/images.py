"""Image schemes at a channel-use budget over the GNU Radio chain: Seb, its
"DL w/o corr." baseline (scale hyperprior alone), JPEG2000 + LDPC and
DeepJSCC (analog). Used by ``semcom transmit DIR --scheme seb|...`` and
benchmarks/seb_curves.py.

The budget is a CBR (channel uses / 3 H W source values, Seb's eq. 11).
Digital schemes use the MCS of phy/mcs.py for the Es/N0 and the number of
whole bursts the budget pays for; each encoder meets the resulting byte
budget with its own rate control (Seb: one of the trained lambdas and a
latent gain, chosen per subset for the best reconstruction the transmitter
can compute itself; JPEG2000: the compression ratio). DeepJSCC sends its
H W C / 512 symbols as one analog burst.

The paper's own accounting is computed next to it: the Es/N0 at which a
capacity-achieving code would carry the same stream at the same CBR
(eq. 11-12, ``ideal_esn0_db``), and :func:`ideal_point`, the PSNR when the
byte budget is the Shannon capacity of the budget instead of what the real
coded modulation carries.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from ..phy.channel import ChannelSpec
from ..phy.mcs import burst_symbols, byte_budget, cbr_channel_uses, choose_mcs, pdu_channel_uses
from ..semantic.metrics import ms_ssim, psnr
from ..blocks.seb_blocks import Cancelled, plan_seb  # noqa: F401 (re-exported: the same rate control)
from ..common import PayloadType
from ..link.sim import link_columns

PT_SEB_SET, PT_SEB_IMG, PT_J2K = PayloadType.SEB_SET, PayloadType.SEB_IMAGE, PayloadType.J2K


@dataclass
class ImageResult:
    name: str
    image: np.ndarray
    row: dict = field(default_factory=dict)


def ideal_esn0_db(bits: float, channel_uses: float) -> float:
    """Es/N0 (dB) at which a capacity-achieving code carries ``bits`` in
    ``channel_uses`` complex AWGN uses: C = bits / uses, SNR = 2^C - 1."""
    c = bits / max(channel_uses, 1e-9)
    return 10 * math.log10(max(2.0 ** c - 1.0, 1e-12))


def capacity_bytes(esn0_db: float, channel_uses: int) -> int:
    return int(channel_uses * math.log2(1 + 10 ** (esn0_db / 10)) / 8)


_LPIPS_WARNED = []


def _perceptual(fn, img: np.ndarray, ref: np.ndarray) -> float:
    """LPIPS(alex) / DISTS if their converted weights are present
    (scripts/setup.sh), else NaN with one warning: the other metrics still
    get reported."""
    from ..semantic.perceptual import MissingLpipsWeights

    try:
        return fn(img, ref)
    except MissingLpipsWeights as exc:
        if not _LPIPS_WARNED:
            _LPIPS_WARNED.append(1)
            import logging

            logging.getLogger(__name__).warning("%s; reported as NaN", exc)
        return float("nan")


def _quality(img: np.ndarray, ref: np.ndarray) -> dict:
    from ..semantic.perceptual import dists, lpips

    return {"psnr": psnr(img, ref), "ms_ssim": ms_ssim(img, ref), "lpips": _perceptual(lpips, img, ref),
            "dists": _perceptual(dists, img, ref)}


# -- Seb / hyperprior ------------------------------------------------------------
def image_phy(images: list[np.ndarray], esn0_db: float, cbr: float):
    """The one PHY a flowgraph runs for an image set: the modulation and LDPC
    rate of :func:`~gr_semcom.phy.mcs.choose_mcs` for the Es/N0, and the
    codewords per burst (1..8) that carry the most image payload over the
    set's CBR budgets in whole bursts (a GRC user sets the same three
    values). Seb's set packet is optional (its plan also tries each rate point
    without bases, which is the hyperprior's packet), so no burst is kept for
    it: on this PHY Seb has every option the hyperprior has."""
    spec = choose_mcs(esn0_db)
    uses = [cbr_channel_uses(im.shape[0], im.shape[1], cbr) for im in images]

    def payload(cw: int) -> int:
        s = replace(spec, codewords=cw)
        return sum(byte_budget(int(u), s, search=False).payload_bytes for u in uses)

    best = max(range(1, 9), key=lambda cw: (payload(cw), -cw))
    return replace(spec, codewords=best)


def image_pdus(names: list[str], images: list[np.ndarray]) -> list[tuple[dict, bytes]]:
    """Image PDUs as ``image_source`` makes them (metadata ``name``; data =
    a lossless PNG of the array)."""
    from ..semantic.images import png_bytes

    return [({"name": n, "path": n}, png_bytes(im)) for n, im in zip(names, images)]


def _decoded_images(run) -> dict:
    """msg_id -> (metadata, image) of a decoder block's PNG outputs."""
    from ..semantic.images import load_image

    out = {}
    for meta, data in run.decoded:
        if meta.get("msg_id") is not None and data:
            out[int(meta["msg_id"])] = (meta, load_image(data))
    return out


def run_seb(codec, names: list[str], images: list[np.ndarray], chan: ChannelSpec, cbr: float = 1 / 30,
            timeout: float | None = None, rx_threshold: float | None = None, seed: int = 0,
            split: bool = True, spec=None, sent: list | None = None, set_size: int = 4) -> list[ImageResult]:
    """Seb (or the hyperprior alone) for an image set through the flowgraph
    GRC builds: ``seb_encoder`` (the whole set collected, split into subsets,
    Sec. II-A; per subset a set packet then one packet per image at the CBR
    budget of this PHY) -> ``phy_tx`` -> channel -> ``phy_rx`` ->
    ``seb_decoder``. ``spec``: the PHY (default :func:`image_phy`); ``set_size``:
    images per set (0 = the whole set; 4 = SebOptions and the GRC block default)."""
    from ..blocks.seb_blocks import seb_decoder, seb_encoder
    from ..link.sim import run_blocks

    thr = {} if rx_threshold is None else {"rx_threshold": rx_threshold}
    spec = spec or image_phy(images, chan.esn0_db, cbr)
    scheme = "seb" if codec.uses_bases else "hyperprior"
    enc = seb_encoder(codec=codec, set_size=set_size or len(images), cbr=cbr, modulation=spec.modulation,
                      code_rate=spec.code_rate, codewords=spec.codewords, split=split, seed=seed)
    dec = seb_decoder(codec=codec)
    run = run_blocks(enc, dec, image_pdus(names, images), spec, chan, timeout=timeout, **thr)
    if sent is not None:  # the PDUs that crossed the PHY, for the caller's record
        sent.extend(run.sent)
    got = _decoded_images(run)
    by_name = {n: i for i, n in enumerate(names)}
    sets = {}
    for k, (meta, pkt) in enumerate(run.sent):
        if meta.get("kind") == "set":
            sets[meta["set_id"]] = (k, meta, pkt)
    members = {}
    for meta, _ in run.sent:
        if meta.get("kind") == "image":
            members.setdefault(meta["set_id"], []).append(by_name[meta["name"]])
    results: list[ImageResult | None] = [None] * len(images)
    for k, (meta, pkt) in enumerate(run.sent):
        if meta.get("kind") != "image":
            continue
        i = by_name[meta["name"]]
        im = images[i]
        h, w = im.shape[:2]
        sub = members[meta["set_id"]]
        pix_share = h * w / sum(images[j].shape[0] * images[j].shape[1] for j in sub)
        set_k, set_meta, set_pkt = sets.get(meta["set_id"], (None, {}, b""))
        set_bytes = len(set_pkt) * pix_share
        set_uses = pdu_channel_uses(len(set_pkt), spec) * pix_share if set_pkt else 0.0
        r = run.pdu_links[k]
        dmeta, rec = got.get(k, ({"failed": True, "parts": {}}, np.full_like(im, 128)))
        if rec.shape != im.shape:
            rec, dmeta = np.full_like(im, 128), {**dmeta, "failed": True}
        uses = pdu_channel_uses(len(pkt), spec) + set_uses
        row = _row(names[i], scheme, chan, cbr, spec, uses, h, w)
        row.update(bytes=len(pkt), set_bytes_share=round(set_bytes, 1), bpp=(len(pkt) + set_bytes) * 8 / (h * w),
                   budget_bytes=meta.get("budget_bytes"), model=meta.get("model"), gain=round(meta.get("gain", 0), 4),
                   subset=int(meta["set_id"]), subset_size=len(sub), bases=set_meta.get("bases", 0),
                   set_received=(set_k in run.received and not run.received[set_k][0].get("missing"))
                   if codec.uses_bases else None,
                   **link_columns(r), failed=bool(dmeta.get("failed")),
                   parts_received=",".join(k2 for k2, v in (dmeta.get("parts") or {}).items() if v),
                   tx_psnr=meta.get("tx_psnr", float("nan")),
                   ideal_esn0_db=ideal_esn0_db((len(pkt) + set_bytes) * 8, cbr_channel_uses(h, w, cbr)),
                   encode_s=meta.get("encode_seconds", float("nan")), run_s=run.seconds / len(images),
                   **_quality(rec, im))
        row.update(_seb_parts(pkt, set_meta.get("bases", 0), h, w, set_bytes))
        results[i] = ImageResult(names[i], rec, row)
    why = "; ".join(str(e.get("error")) for e in run.events if e.get("event") in ("encode_error", "error"))
    for i, r in enumerate(results):
        if r is None:
            results[i] = _failed(names[i], images[i], scheme, chan, cbr, spec, why or "not encoded")
    return results


def _seb_parts(pkt: bytes, k: int, h: int, w: int, set_bytes: float) -> dict:
    """Bytes per part of an image packet (Fig. 5's split) from its header."""
    from ..semantic.seb.codec import IMG_HDR, index_bits
    from ..semantic.seb.model import ALIGN, PATCH

    if len(pkt) < IMG_HDR.size:
        return {}
    *_, lc, lz, ly = IMG_HDR.unpack_from(pkt)
    hp, wp = h + (-h % ALIGN), w + (-w % ALIGN)
    li = ((hp // PATCH) * (wp // PATCH) * index_bits(k) + 7) // 8
    return {"bytes_bases": round(set_bytes, 1), "bytes_header": IMG_HDR.size, "bytes_indices": li,
            "bytes_compensation": lc, "bytes_hyper": lz, "bytes_residual": ly}


# -- JPEG2000 + LDPC -----------------------------------------------------------------
def run_jpeg2000(names, images, chan: ChannelSpec, cbr: float = 1 / 30, timeout: float | None = None,
                 rx_threshold: float | None = None, spec=None, sent: list | None = None) -> list[ImageResult]:
    """JPEG2000 + LDPC through the flowgraph GRC builds: ``jpeg2000_encoder``
    -> ``phy_tx`` -> channel -> ``phy_rx`` -> ``jpeg2000_decoder``."""
    from ..blocks.jpeg2000_blocks import jpeg2000_decoder, jpeg2000_encoder
    from ..link.sim import run_blocks

    thr = {} if rx_threshold is None else {"rx_threshold": rx_threshold}
    spec = spec or image_phy(images, chan.esn0_db, cbr)
    enc = jpeg2000_encoder(cbr=cbr, modulation=spec.modulation, code_rate=spec.code_rate, codewords=spec.codewords)
    h0, w0 = images[0].shape[:2]
    dec = jpeg2000_decoder(h0, w0)
    run = run_blocks(enc, dec, image_pdus(names, images), spec, chan, timeout=timeout, **thr)
    if sent is not None:
        sent.extend(run.sent)
    got = _decoded_images(run)
    by_name = {n: i for i, n in enumerate(names)}
    results: list[ImageResult | None] = [None] * len(images)
    for k, (meta, stream) in enumerate(run.sent):
        i = by_name[meta["name"]]
        im = images[i]
        h, w = im.shape[:2]
        dmeta, rec = got.get(k, ({"failed": True}, np.full_like(im, 128)))
        if rec.shape != im.shape:
            rec, dmeta = np.full_like(im, 128), {**dmeta, "failed": True}
        n = len(stream)
        row = _row(names[i], "jpeg2000", chan, cbr, spec, pdu_channel_uses(n, spec), h, w)
        row.update(bytes=n, bpp=n * 8 / (h * w), budget_bytes=meta.get("budget_bytes"), **link_columns(run.pdu_links[k]),
                   failed=bool(dmeta.get("failed")), tx_psnr=meta.get("tx_psnr", float("nan")),
                   ideal_esn0_db=ideal_esn0_db(n * 8, cbr_channel_uses(h, w, cbr)),
                   encode_s=meta.get("encode_seconds", float("nan")), run_s=run.seconds / len(images),
                   **_quality(rec, im))
        results[i] = ImageResult(names[i], rec, row)
    why = "; ".join(str(e.get("error")) for e in run.events if e.get("event") in ("encode_error", "error"))
    for i, r in enumerate(results):
        if r is None:
            results[i] = _failed(names[i], images[i], "jpeg2000", chan, cbr, spec, why or "not encoded")
    return results


# -- DeepJSCC (analog) -------------------------------------------------------------------
def run_deepjscc(model, names, images, chan: ChannelSpec, cbr: float = 1 / 30, timeout: float = 20.0,
                 rx_threshold: float = 0.3) -> list[ImageResult]:
    """DeepJSCC through the flowgraph GRC builds, one per image (its analog
    burst layout follows the image's size): ``deepjscc_encoder`` ->
    ``analog_tx`` -> channel -> ``analog_rx`` -> ``deepjscc_decoder``. The
    layout is :func:`analog_layout` of the latent within the CBR budget."""
    from ..blocks.deepjscc_blocks import deepjscc_decoder, deepjscc_encoder
    from ..link.sim import run_analog_blocks
    from ..semantic.images import load_image

    out = []
    for i, (name, im) in enumerate(zip(names, images)):
        h, w = im.shape[:2]
        n_sym = model.symbols_for(h + (-h % 16), w + (-w % 16))
        spec, n_send = analog_layout(n_sym, cbr_channel_uses(h, w, cbr))
        rec, failed, snr, t_enc, t_link = np.full_like(im, 128), True, float("nan"), float("nan"), 0.0
        if n_send:
            enc = deepjscc_encoder(cbr=cbr, modulation=spec.modulation, codewords=spec.codewords, model=model)
            dec = deepjscc_decoder(height=h, width=w, model=model)
            run = run_analog_blocks(enc, dec, image_pdus([name], [im]), spec,
                                    replace(chan, seed=chan.seed + 104729 * (i + 1)), timeout=timeout,
                                    rx_threshold=rx_threshold)
            t_link = run.seconds
            if run.sent:
                t_enc = run.sent[0][0].get("encode_seconds", float("nan"))
            if run.decoded:
                rec, failed = load_image(run.decoded[0][1]), False
                snr = float(run.analog_received[0][0].get("snr_db", float("nan"))) if run.analog_received \
                    else float("nan")
        uses = burst_symbols(spec) if n_send else 0
        row = _row(name, "deepjscc", chan, cbr, spec, uses, h, w)
        row.update(bytes=0, symbols=int(n_sym), symbols_sent=int(n_send), bpp=float("nan"), failed=failed,
                   rx_snr_db=snr, encode_s=t_enc, run_s=t_link, **_quality(rec, im))
        out.append(ImageResult(name, rec, row))
    return out


def analog_layout(n_symbols: int, max_uses: int):
    """(burst spec, symbols sent) for an analog burst of ``n_symbols`` within
    ``max_uses`` channel uses: the layout with the fewest channel uses whose
    data slots hold every symbol (the slot count per "codeword" of an
    uncoded spec is 900 / 450 / 300 for QPSK / 16QAM / 64QAM-sized frames;
    for analog symbols only the count matters); if none fits, the largest
    layout that fits and the first symbols only (the tail is punctured: the
    DeepJSCC latent is sent channel by channel, so whole latent channels are
    dropped and the receiver puts zeros there)."""
    from ..blocks.analog import analog_spec

    fits, best_fit = None, None
    for mod in ("qpsk", "16qam", "64qam"):
        for cw in range(1, 64):
            sp = analog_spec(modulation=mod, codewords=cw)
            u = burst_symbols(sp)
            if sp.n_data >= n_symbols and (fits is None or u < burst_symbols(fits)):
                fits = sp
            if u <= max_uses and (best_fit is None or sp.n_data > best_fit.n_data):
                best_fit = sp
    if fits is not None and burst_symbols(fits) <= max_uses:
        return fits, n_symbols
    if best_fit is None:
        return analog_spec(codewords=1), 0
    return best_fit, min(n_symbols, best_fit.n_data)


def _row(name, scheme, chan: ChannelSpec, cbr, spec, uses, h, w) -> dict:
    return {"scheme": scheme, "channel": chan.model, "esn0_db": chan.esn0_db, "seed": chan.seed, "image": name,
            "height": h, "width": w, "cbr_target": cbr, "channel_uses": int(round(uses)),
            "cbr": uses / (3 * h * w), "modulation": spec.modulation, "code_rate": spec.code_rate,
            "codewords_per_burst": spec.codewords}


def _failed(name, im, scheme, chan, cbr, spec, why) -> ImageResult:
    grey = np.full_like(im, 128)
    row = _row(name, scheme, chan, cbr, spec, 0, *im.shape[:2])
    row.update(bytes=0, failed=True, reason=why, **_quality(grey, im))
    return ImageResult(name, grey, row)


# -- the paper's accounting -------------------------------------------------------------
def ideal_point(scheme: str, names, images, esn0_db: float, cbr: float = 1 / 30, codec=None) -> list[dict]:
    """PSNR with a capacity-achieving code (eq. 11-12): the byte budget is
    C(Es/N0) x channel uses / 8, the stream arrives intact."""
    from ..semantic import jpeg2000

    rows = []
    if scheme in ("seb", "hyperprior"):
        budgets = [capacity_bytes(esn0_db, cbr_channel_uses(im.shape[0], im.shape[1], cbr)) for im in images]
        plan = plan_seb(codec, images, choose_mcs(esn0_db), cbr, budget_bytes=budgets)
        for j, im in enumerate(images):
            rec = plan["tx_recon"][j] if plan else np.full_like(im, 128)
            rows.append({"scheme": scheme, "esn0_db": esn0_db, "image": names[j], "accounting": "capacity",
                         "bytes": len(plan["packets"][j]) if plan else 0, **_quality(rec, im)})
        return rows
    for name, im in zip(names, images):
        b = capacity_bytes(esn0_db, cbr_channel_uses(im.shape[0], im.shape[1], cbr))
        s = jpeg2000.encode_to_budget(im, b) if b > 0 else None
        rec = jpeg2000.decode(s, im.shape[:2])[0] if s else np.full_like(im, 128)
        rows.append({"scheme": scheme, "esn0_db": esn0_db, "image": name, "accounting": "capacity",
                     "bytes": len(s) if s else 0, **_quality(rec, im)})
    return rows
