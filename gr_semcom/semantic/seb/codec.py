"""Seb bit streams: what crosses the PHY (torch + numpy, no GNU Radio).

Two kinds of PDU:

* **set packet** (once per image subset, the paper's shared knowledge S_j):
  ``"SS" | version | set id | model id | K (u16) | m (u8) | length (u32) |
  bases``,
  the K bases rounded to integers and range-coded (rANS) with the factorized
  entropy model ``seb_eb`` as one (m, 2K, 2) map.
* **image packet** (one per image): a fixed 22-byte header
  ``"SI" | version | set id | model id | flags | H (u16) | W (u16) | K (u16) |
  gain x 1000 (u16) | len Z^m (u16) | len z (u16) | len y (u32)``, then the
  per-patch base indices (ceil(log2 K) bits each, packed), then the
  compensation, hyper-latent and residual streams (rANS, compressai).

Erasures (byte ranges the PHY lost, reported by the reassembler) degrade
instead of failing: a lost residual stream leaves the prediction, a lost
compensation stream leaves the base-built reference, a lost header or index
field (or a lost set packet) leaves a mid-grey image, flagged ``failed``.
Hyperprior mode (the "DL w/o corr." baseline) sends image packets only, with
K = 0 and no indices. A Seb codec may do the same per subset
(``encode_set(..., use_bases=False)``, flag ``FLAG_NO_BASES``): no set
packet, no indices, the image decoded by the net's residual codec alone --
for a conditional Seb net (model.py) exactly its frozen hyperprior, so a
transmitter that tries both (``plan_options``) is never worse than the
hyperprior the net was built from.

Encoding is split in two for the rate fit (ratefit.py): :meth:`SebCodec.analyse`
runs the transforms once per image, :meth:`SebCodec.pack` only quantises and
range-codes at one latent gain.

Images of any size >= 64x64 are edge-padded to multiples of 64 and cropped
back after decoding.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .model import ALIGN, PATCH, SebNet, kmeans, n_bases

VERSION = 1
SET_HDR = struct.Struct(">2sBBBHBI")
IMG_HDR = struct.Struct(">2sBBBBHHHHHHI")
FLAG_HYPERPRIOR = 1
FLAG_NO_BASES = 2  # a Seb packet decoded by the residual codec alone (no set packet needed)


def _pad(img: np.ndarray) -> torch.Tensor:
    h, w = img.shape[:2]
    ph, pw = -h % ALIGN, -w % ALIGN
    x = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="edge") if (ph or pw) else img
    return torch.from_numpy(np.array(x, np.float32)).permute(2, 0, 1)[None].div_(255.0)


def _to_u8(x: torch.Tensor, h: int, w: int) -> np.ndarray:
    return (torch.nan_to_num(x[0, :, :h, :w], nan=0.5).clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)


def index_bits(k: int) -> int:
    return max(1, math.ceil(math.log2(k))) if k > 1 else 0


def _pack_indices(idx: np.ndarray, nbits: int) -> bytes:
    if nbits == 0:
        return b""
    bits = ((idx[:, None] >> np.arange(nbits - 1, -1, -1)) & 1).astype(np.uint8)
    return np.packbits(bits.ravel()).tobytes()


def _unpack_indices(data: bytes, n: int, nbits: int) -> np.ndarray:
    if nbits == 0:
        return np.zeros(n, np.int64)
    bits = np.unpackbits(np.frombuffer(data, np.uint8))[: n * nbits].reshape(n, nbits)
    return (bits.astype(np.int64) << np.arange(nbits - 1, -1, -1)).sum(1)


def _intact(start: int, end: int, missing) -> bool:
    return all(e <= start or s >= end for s, e in missing)


@dataclass
class SebSet:
    """Encoder-side state of one subset: the bases as the receiver will see
    them, the per-image patch indices, and the set packet."""

    model_id: int
    bases: torch.Tensor | None  # (K, m, 2, 2), dequantised
    indices: list[np.ndarray]  # per image
    packet: bytes = b""
    set_id: int = 0  # 0..255, names the set in its image packets

    @property
    def k(self) -> int:
        return 0 if self.bases is None else int(self.bases.shape[0])


@dataclass
class Analysed:
    """One image through the transforms (everything but the gain-dependent
    quantisation and range coding of the residual latent)."""

    model_id: int
    set_id: int
    k: int
    h: int
    w: int
    flags: int
    idx_bytes: bytes
    comp: bytes
    y: torch.Tensor  # residual latent before the gain
    scales: torch.Tensor
    z_str: bytes
    side: torch.Tensor | None  # latent side input the receiver adds back (conditional nets)
    pred: torch.Tensor  # pixel-domain prediction added after synthesis (non-conditional nets)

    @property
    def fixed_bytes(self) -> int:
        """Bytes of the packet that do not depend on the gain."""
        return IMG_HDR.size + len(self.idx_bytes) + len(self.comp) + len(self.z_str)


@dataclass
class SebDecoded:
    image: np.ndarray
    failed: bool
    parts: dict = field(default_factory=dict)  # which streams arrived
    bases_used: bool = False  # decoded with the subset's bases (False: residual codec alone)


def _card_bpp(weights: Path) -> float | None:
    """Validation bpp at gain 1 of the part the latent gain controls (hyper-latent
    + residual) from the model card's metrics.json beside the weights (the rate
    fit's per-model table), None if absent. For a hyperprior this is its whole
    rate; a Seb net's bases, indices and compensation do not follow the gain,
    and leaving them out gives a conditional Seb family the same table (so the
    same rate point) as the hyperprior family it was built from."""
    import json

    m = weights.parent / "metrics.json"
    try:
        t = json.loads(m.read_text())["test_metrics_estimated"]
        if "bpp_residual" in t:
            return float(t["bpp_residual"]) + float(t.get("bpp_hyper", 0.0))
        return float(t["bpp"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class SebCodec:
    """A family of trained rate points (model id = position in ``nets``),
    all of one mode. One object serves the CLI, the GNU Radio blocks, the
    sweeps and the tests."""

    def __init__(self, nets: list[SebNet], names: list[str] | None = None):
        if not nets:
            raise ValueError("SebCodec needs at least one model")
        modes = {n.cfg.mode for n in nets}
        if len(modes) != 1:
            raise ValueError(f"models of one mode only, got {modes}")
        self.nets = [n.eval() for n in nets]
        self.names = names or [f"lambda={n.cfg.lam:g}" for n in nets]
        self.mode = modes.pop()
        self.rate_table: list[float | None] = [None] * len(self.nets)  # bpp at gain 1 (ratefit.choose_model)

    @classmethod
    def from_files(cls, paths) -> "SebCodec":
        from .weights import load_net

        paths = [Path(p) for p in paths]
        nets = [load_net(p) for p in paths]
        order = np.argsort([n.cfg.lam for n in nets])
        codec = cls([nets[i] for i in order], [paths[i].parent.name for i in order])
        codec.rate_table = [_card_bpp(paths[i]) for i in order]
        return codec

    @property
    def uses_bases(self) -> bool:
        return self.mode == "seb"

    # -- transmitter -----------------------------------------------------------
    @torch.no_grad()
    def plan_options(self) -> list[tuple[int, bool]]:
        """(model id, use_bases) pairs a transmitter should try for a subset:
        every rate point, and for a Seb codec also each without its bases."""
        return [(m, ub) for m in range(len(self.nets)) for ub in ((True, False) if self.uses_bases else (False,))]

    @torch.no_grad()
    def encode_set(self, images: list[np.ndarray], model_id: int, seed: int = 0, set_id: int = 0,
                   use_bases: bool = True) -> SebSet:
        """k-means of all patch latents of the subset -> bases + indices.
        ``use_bases=False`` (or a hyperprior codec): no set packet; the image
        packets then carry the residual codec's stream alone."""
        net = self.nets[model_id]
        if not self.uses_bases or not use_bases:
            return SebSet(model_id, None, [np.zeros(0, np.int64) for _ in images], set_id=set_id & 0xFF)
        feats, counts = [], []
        for im in images:
            f = net.patch_features(_pad(im)).flatten(1)
            feats.append(f)
            counts.append(f.shape[0])
        allf = torch.cat(feats)
        k = n_bases(len(images), int(np.mean(counts)), net.cfg.base_ratio)
        k = min(k, allf.shape[0], 65535)
        centres, _ = kmeans(allf, k, seed=seed)
        m = net.cfg.m_seb
        bmap = net.bases_as_map(centres.view(k, m, 2, 2))
        strings = net.seb_eb.compress(bmap)
        bases = net.map_as_bases(net.seb_eb.decompress(strings, bmap.shape[-2:]))
        bflat = bases.flatten(1)
        # indices against the *dequantised* bases the receiver has
        indices, s = [], 0
        for c in counts:
            indices.append(torch.cdist(allf[s:s + c], bflat).argmin(1).numpy())
            s += c
        packet = SET_HDR.pack(b"SS", VERSION, set_id & 0xFF, model_id, k, m, len(strings[0])) + strings[0]
        return SebSet(model_id, bases, indices, packet, set_id & 0xFF)

    @torch.no_grad()
    def encode_image(self, img: np.ndarray, sset: SebSet, i: int, gain: float = 1.0) -> bytes:
        """Image packet of subset image ``i`` (``img`` = that image)."""
        self._check_gain(gain)
        return self.pack(self.analyse(img, sset, i), gain)

    @staticmethod
    def _check_gain(gain: float) -> None:
        if not 0.05 <= gain <= 60.0:
            raise ValueError(f"gain {gain} outside 0.05..60")

    @torch.no_grad()
    def analyse(self, img: np.ndarray, sset: SebSet, i: int) -> Analysed:
        """The transforms of one image once (prediction, compensation stream,
        residual latent, hyper-latent stream and scales): :meth:`pack` then
        makes the packet at any gain without running them again."""
        if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 image, got {getattr(img, 'shape', None)} "
                             f"{getattr(img, 'dtype', type(img).__name__)}")
        h, w = img.shape[:2]
        if min(h, w) < ALIGN or max(h, w) > 65535:
            raise ValueError(f"image sides must be 64..65535 pixels, got {w}x{h}")
        net = self.nets[sset.model_id]
        x = _pad(img)
        _, _, hp, wp = x.shape
        comp = b""
        idx_bytes = b""
        flags = 0
        side = None
        if self.uses_bases and sset.k > 0:
            idx = torch.from_numpy(np.asarray(sset.indices[i], np.int64))
            ref = net.reference(sset.bases[idx], 1, hp, wp)
            zm = net.comp_enc(torch.cat([x, ref], 1))
            comp = net.comp_eb.compress(zm)[0]
            pred = net.prediction(ref, net.comp_eb.decompress([comp], zm.shape[-2:]))
            idx_bytes = _pack_indices(sset.indices[i], index_bits(sset.k))
            if net.cfg.cond:
                side = net.side(pred)
                pred = torch.zeros_like(x)
        else:
            flags |= FLAG_NO_BASES if self.uses_bases else FLAG_HYPERPRIOR
            pred = torch.zeros_like(x)
        y = net.res_enc(x) - side if side is not None else net.res_enc(x - pred)
        z = net.h_a(y)
        z_str = net.hyper_eb.compress(z)
        scales = net.h_s(net.hyper_eb.decompress(z_str, z.shape[-2:]))
        if len(comp) > 65535 or len(z_str[0]) > 65535:
            raise ValueError("stream too long for the packet format")
        return Analysed(sset.model_id, sset.set_id, sset.k if flags != FLAG_NO_BASES else 0, h, w, flags, idx_bytes,
                        comp, y, scales, z_str[0], side, pred)

    @torch.no_grad()
    def pack(self, a: Analysed, gain: float = 1.0) -> bytes:
        """Image packet of an analysed image at latent gain ``gain``: the
        latent and its scales are multiplied by the gain before rounding
        (variable rate inside one model; gain < 1: coarser, fewer bytes)."""
        self._check_gain(gain)
        gain = round(gain * 1000) / 1000  # the receiver reads it from the header in this resolution
        net = self.nets[a.model_id]
        ind = net.gc.build_indexes(a.scales * gain)
        y_s = net.gc.compress(a.y * gain, ind)[0]
        g = int(round(gain * 1000))
        hdr = IMG_HDR.pack(b"SI", VERSION, a.set_id, a.model_id, a.flags, a.h, a.w, a.k, g, len(a.comp),
                           len(a.z_str), len(y_s))
        return hdr + a.idx_bytes + a.comp + a.z_str + y_s

    # -- receiver ----------------------------------------------------------------
    def decode_set(self, packet: bytes | None, missing=()) -> torch.Tensor | None:
        """Bases from a set packet, or None if it (or any of it) was lost."""
        got = self.decode_set_id(packet, missing)
        return None if got is None else got[1]

    def decode_set_id(self, packet: bytes | None, missing=()) -> tuple[int, torch.Tensor] | None:
        """(set id, bases) from a set packet, or None if it (or any of it) was lost."""
        if packet is None or len(packet) < SET_HDR.size or not _intact(0, len(packet), missing):
            return None
        magic, ver, sid, mid, k, m, n = SET_HDR.unpack_from(packet)
        if magic != b"SS" or ver != VERSION or mid >= len(self.nets) or len(packet) < SET_HDR.size + n:
            return None
        net = self.nets[mid]
        if m != net.cfg.m_seb or k < 1:
            return None
        s = packet[SET_HDR.size:SET_HDR.size + n]
        try:
            with torch.no_grad():
                return sid, net.map_as_bases(net.seb_eb.decompress([s], (2 * k, 2)))
        except Exception:  # corrupt stream
            return None

    @torch.no_grad()
    def decode_image(self, packet: bytes | None, bases: torch.Tensor | None = None, missing=(),
                     shape: tuple[int, int] | None = None) -> SebDecoded:
        """Image from its packet; ``missing`` = lost [start, end) byte ranges.
        ``shape`` (h, w) sizes the grey fallback when the header is lost."""
        grey = np.full((*(shape or (64, 64)), 3), 128, np.uint8)
        if packet is None or len(packet) < IMG_HDR.size or not _intact(0, IMG_HDR.size, missing):
            return SebDecoded(grey, True, {"header": False})
        magic, ver, _sid, mid, flags, h, w, k, g, lc, lz, ly = IMG_HDR.unpack_from(packet)
        if magic != b"SI" or ver != VERSION or mid >= len(self.nets) or h < ALIGN or w < ALIGN or g == 0:
            return SebDecoded(grey, True, {"header": False})
        grey = np.full((h, w, 3), 128, np.uint8)
        net = self.nets[mid]
        no_bases = bool(flags & FLAG_NO_BASES) or not self.uses_bases
        if no_bases:
            k = 0
        hp, wp = h + (-h % ALIGN), w + (-w % ALIGN)
        n_p = (hp // PATCH) * (wp // PATCH)
        nb = index_bits(k)
        pos = IMG_HDR.size
        li = (n_p * nb + 7) // 8
        spans = {}
        for name, ln in (("indices", li), ("compensation", lc), ("hyper", lz), ("residual", ly)):
            spans[name] = (pos, pos + ln)
            pos += ln
        ok = {n: (e <= len(packet) and _intact(s, e, missing)) for n, (s, e) in spans.items()}
        parts = {"header": True, **ok}
        side = None
        if no_bases:
            del parts["indices"], parts["compensation"]
        if not no_bases:
            if bases is None or bases.shape[0] != k or not ok["indices"] or k < 1:
                parts["bases"] = bases is not None
                return SebDecoded(grey, True, parts)
            idx = torch.from_numpy(_unpack_indices(packet[slice(*spans["indices"])], n_p, nb))
            if int(idx.max()) >= k:
                return SebDecoded(grey, True, parts)
            pred = net.reference(bases[idx], 1, hp, wp)
            if ok["compensation"]:
                try:
                    zm_hat = net.comp_eb.decompress([packet[slice(*spans["compensation"])]],
                                                    (hp // 16, wp // 16))
                    pred = net.prediction(pred, zm_hat)
                except Exception:
                    parts["compensation"] = False
            if net.cfg.cond:  # the prediction is the residual codec's side input
                side = net.side(pred)
        else:
            pred = torch.zeros(1, 3, hp, wp)
        out = pred
        if side is not None:  # a conditional net without its residual: the side input alone
            out = net.res_dec(side)
        if ok["hyper"] and ok["residual"]:
            try:
                z_hat = net.hyper_eb.decompress([packet[slice(*spans["hyper"])]], (hp // 64, wp // 64))
                scales = net.h_s(z_hat)
                gain = g / 1000.0
                ind = net.gc.build_indexes(scales * gain)
                y_hat = net.gc.decompress([packet[slice(*spans["residual"])]], ind) / gain
                out = net.res_dec(y_hat + side) if side is not None else pred + net.res_dec(y_hat)
            except Exception:
                parts["residual"] = False
        failed = no_bases and not (parts.get("hyper") and parts.get("residual"))
        if failed:
            return SebDecoded(grey, True, parts)
        return SebDecoded(_to_u8(out, h, w), False, parts, bases_used=not no_bases)


def packet_set_id(packet: bytes | None) -> int | None:
    """Set id named by an image packet's header (None if not an image packet)."""
    if packet is None or len(packet) < IMG_HDR.size or packet[:2] != b"SI":
        return None
    return IMG_HDR.unpack_from(packet)[2]


# -- image set splitting (Sec. II-A) ----------------------------------------------
@torch.no_grad()
def image_embedding(net: SebNet, img: np.ndarray, size: int = 128) -> np.ndarray:
    """Projector f_alpha: mean and standard deviation over patches of the Seb
    generator's latents of the image resized to size x size. (The paper uses a
    SimSiam ResNet-50; those weights are not available offline and a
    contrastive net trained on 81 photos would be no better, so the projector
    is the project's own trained patch encoder.)"""
    from PIL import Image

    x = torch.from_numpy(np.array(Image.fromarray(img).resize((size, size), Image.BICUBIC))).permute(2, 0, 1)
    f = net.patch_features(x[None].float() / 255.0).flatten(1)
    return torch.cat([f.mean(0), f.std(0)]).numpy()


def elbow(inertias: list[float]) -> int:
    """Number of clusters at the knee of the inertia curve (J = 1..len):
    the point farthest below the chord from the first to the last value
    (with only J = 1, 2 known: 2 if it halves the inertia)."""
    y = np.asarray(inertias, np.float64)
    if len(y) < 2 or y[0] <= 0:
        return 1
    if len(y) == 2:
        return 2 if y[1] <= 0.5 * y[0] else 1
    x = np.arange(1, len(y) + 1, dtype=np.float64)
    yn = (y - y[-1]) / (y[0] - y[-1] + 1e-12)
    xn = (x - 1) / (len(y) - 1)
    d = (1 - xn) - yn  # chord from (0, 1) to (1, 0)
    return int(x[int(np.argmax(d))]) if d.max() > 0.05 else 1


def split_image_set(net: SebNet, images: list[np.ndarray], j_max: int = 6, seed: int = 0) -> tuple[np.ndarray, list]:
    """(cluster label per image, inertia per J) with J at the inertia elbow,
    J <= min(j_max, n / 4)."""
    n = len(images)
    j_max = min(j_max, n // 4)  # subsets of four images or more on average
    if j_max < 2 or not net.uses_bases:
        return np.zeros(n, np.int64), []
    e = torch.from_numpy(np.stack([image_embedding(net, im) for im in images]))
    e = (e - e.mean(0)) / (e.std(0) + 1e-6)
    inertias, labels = [], []
    for j in range(1, j_max + 1):
        c, a = kmeans(e, j, seed=seed)
        inertias.append(float(((e - c[a]) ** 2).sum()))
        labels.append(a.numpy())
    j = elbow(inertias)
    return labels[j - 1], inertias
