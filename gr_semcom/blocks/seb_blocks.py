"""Seb as GNU Radio message blocks: thin wrappers over
:class:`gr_semcom.semantic.seb.codec.SebCodec` and the rate control of
:func:`plan_seb` (the objects the CLI, the benchmark
and the tests use). Model work runs on each block's worker thread.

* ``seb_encoder``: image PDUs (file bytes, e.g. from ``image_source``) are
  collected into a set of ``set_size`` images (or fewer, ``flush_timeout`` s
  after the first one arrived); the set is encoded at the CBR budget of the
  given frame settings: ``out`` gets first the set packet (the semantic
  bases; metadata ``kind`` = "set", ``payload_type`` 0x53) and then one
  image packet per image (``kind`` = "image", ``name``, ``set_id``,
  ``payload_type`` 0x54). Connect ``out`` to ``phy_tx``.
* ``seb_decoder``: reassembled PDUs of ``phy_rx`` (``missing`` byte ranges
  are erasures) -> ``out``: PNG bytes of each decoded image with metadata
  ``set_id``, ``failed``, ``parts`` (the streams that arrived) and
  ``shape``; connect it to ``png_file_sink``. The bases of the last 8 sets
  are kept; an image whose set packet was lost decodes as failed (grey).
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import replace

import numpy as np

from .pdu_util import make_pdu
from .phy_blocks import IN as _IN, OUT as _OUT, STATUS as _STATUS, _status
from .ulbsc_blocks import _worker_block, image_from_pdu
from ..common import MODELS, PayloadType
from ..phy.mcs import burst_symbols, byte_budget, cbr_channel_uses, pdu_channel_uses
from ..semantic.metrics import psnr
from ..semantic.seb import ratefit
from ..semantic.seb.ratefit import fit_packet

PT_SET, PT_IMAGE = int(PayloadType.SEB_SET), int(PayloadType.SEB_IMAGE)


# -- rate control at the PHY's budget (also used by systems/images.py and the benchmarks) --
def _best_cw_uses(nbytes: int, spec) -> tuple[int, object]:
    best = None
    for cw in range(1, 9):
        s = replace(spec, codewords=cw)
        u = pdu_channel_uses(nbytes, s)
        if best is None or u < best[0]:
            best = (u, s)
    return best


class Cancelled(Exception):
    """A search given a ``stop`` event that was set."""


def plan_seb(codec, images: list[np.ndarray], spec, cbr: float, budget_bytes: list[int] | None = None,
             seed: int = 0, set_id: int = 0, search_codewords: bool = True, stop=None,
             fast: bool = True) -> dict | None:
    """Encoder side of one subset: for each trained rate point, the set packet,
    the per-image packets within budget and the transmitter's own
    reconstruction; returns the rate point with the best mean PSNR.
    ``budget_bytes``: per-image byte budgets instead of the PHY's (the
    capacity-achieving accounting of :func:`ideal_point`). None if the
    budget does not even carry the set packet. ``search_codewords=False``:
    the spec's codewords per burst are fixed (a flowgraph's PHY). ``stop``: a
    ``threading.Event``; once set, :class:`Cancelled` is raised between steps
    (a flowgraph stopping mid-search does not wait for the whole search).
    ``fast`` (issue 19): one rate point from the codec's rate table
    (ratefit.choose_model) and the gain from one analysis pass
    (ratefit.fit_packet_fast); False: every rate point with the bisection
    (the reference). A Seb codec also tries its rate point(s) without the
    bases (codec.plan_options): never below the hyperprior it was built from."""
    best = None
    uses = [cbr_channel_uses(im.shape[0], im.shape[1], cbr) for im in images]
    pix = np.array([im.shape[0] * im.shape[1] for im in images], np.float64)
    fit = ratefit.fit_packet_fast if fast else fit_packet
    options = codec.plan_options()
    if fast:
        first = budget_bytes[0] if budget_bytes is not None else \
            byte_budget(int(uses[0]), spec, search_codewords).payload_bytes
        keep = ratefit.choose_model(codec, images[0].shape[0], images[0].shape[1], first)
        options = [o for o in options if o[0] == keep]
    for mid, use_bases in options:
        sset = codec.encode_set(images, mid, seed=seed, set_id=set_id, use_bases=use_bases)
        if not sset.packet:
            set_uses, set_spec = 0, spec
        elif search_codewords:
            set_uses, set_spec = _best_cw_uses(len(sset.packet), spec)
        else:
            set_uses, set_spec = pdu_channel_uses(len(sset.packet), spec), spec
        if budget_bytes is not None:
            set_bytes_share = len(sset.packet) * pix / pix.sum()
            budgets = [None] * len(images)
            max_b = [int(b - s) for b, s in zip(budget_bytes, set_bytes_share)]
        else:
            share = (sum(uses) - set_uses) * pix / pix.sum()
            budgets = [byte_budget(int(u), spec, search_codewords) if u > 0 else None for u in share]
            max_b = [b.payload_bytes if b else 0 for b in budgets]
        if min(max_b) <= 0:
            continue
        packets, gains, recon = [], [], []
        for i, im in enumerate(images):
            if stop is not None and stop.is_set():
                raise Cancelled("rate search stopped")
            p, g = fit(codec, im, sset, i, max_b[i])
            packets.append(p)
            gains.append(g)
            recon.append(codec.decode_image(p, sset.bases).image)
        score = float(np.mean([psnr(r, im) for r, im in zip(recon, images)]))
        if best is None or score > best["tx_psnr"]:
            best = {"model_id": mid, "use_bases": use_bases, "set": sset, "set_uses": set_uses, "set_spec": set_spec,
                    "packets": packets, "gains": gains, "budgets": budgets, "max_bytes": max_b, "tx_recon": recon, "tx_psnr": score}
    return best


def make_seb_codec(models: str = "", mode: str = "seb"):

    from ..semantic.seb.codec import SebCodec

    paths = [p.strip() for p in models.split(",") if p.strip()] if models else []
    if not paths:
        root = MODELS
        paths = sorted(str(p) for p in root.glob(("seb_lam*" if mode == "seb" else "hyperprior_lam*")
                                                 + "/model.safetensors"))
    if not paths:
        raise FileNotFoundError(f"no {mode} weights given and none under models/ (scripts/train_seb.sh)")
    return SebCodec.from_files(paths)


class seb_encoder(_worker_block):
    def __init__(self, models: str = "", mode: str = "seb", set_size: int = 4, flush_timeout: float = 2.0,
                 cbr: float = 1 / 30, modulation: str = "qpsk", code_rate: str = "1/2", codewords: int = 4,
                 split: bool = True, seed: int = 0, codec=None):
        from ..phy.frame import FrameSpec

        _worker_block.__init__(self, "semcom_seb_encoder")
        self.codec = codec if codec is not None else make_seb_codec(models, mode)
        self.set_size = max(1, int(set_size))
        self.flush_timeout = float(flush_timeout)
        self.cbr = float(cbr)
        self.spec = FrameSpec(modulation=modulation, code_rate=code_rate, codewords=int(codewords))
        self.split = bool(split)
        self.seed = int(seed)
        self.sets_sent = 0
        self.images_sent = 0
        self._pending: list = []
        self._first = None
        self._encoding = False
        self.message_port_register_in(_IN)
        self.message_port_register_out(_OUT)
        self.set_msg_handler(_IN, self.handle)

    def handle(self, msg):
        self.enqueue((msg,))

    def holding(self) -> bool:
        return bool(self._pending) or self._encoding

    def idle(self):
        if self._pending and (len(self._pending) >= self.set_size or (self._finishing and self._q.empty())
                              or time.monotonic() - self._first > self.flush_timeout):
            self._encoding = True
            batch, self._pending = self._pending, []
            try:
                for sub in self.subsets(batch):
                    self.encode_set(sub)
            except Exception as exc:
                self.message_port_pub(_STATUS, _status(event="encode_error", error=f"{type(exc).__name__}: {exc}",
                                                       images=[n for n, _ in batch]))
            finally:
                self._encoding = False

    def subsets(self, batch: list) -> list:
        """The collected images as the sets to encode: with ``split`` and three
        or more images, Seb's subsets of similar images (Sec. II-A,
        :func:`~gr_semcom.semantic.seb.codec.split_image_set` on the middle rate
        point's features); else one set."""
        if not (self.split and self.codec.uses_bases and len(batch) >= 3):
            return [batch]
        from ..semantic.seb.codec import split_image_set

        labels, _ = split_image_set(self.codec.nets[len(self.codec.nets) // 2], [im for _, im in batch],
                                    seed=self.seed)
        subs = [[b for b, lab in zip(batch, labels) if lab == k] for k in sorted(set(labels.tolist()))]
        # a subset whose budget cannot even give its set packet and each image one burst of this PHY
        # would fail: then the set is sent whole (one set packet)
        burst = burst_symbols(self.spec)
        if any(sum(cbr_channel_uses(im.shape[0], im.shape[1], self.cbr) for _, im in sub) // burst < 1 + len(sub)
               for sub in subs):
            return [batch]
        return subs

    def work_item(self, msg):
        from ..semantic.images import ImageError

        meta: dict = {}
        try:
            meta, img = image_from_pdu(msg)
            if min(img.shape[:2]) < 64:
                raise ValueError(f"{img.shape[1]}x{img.shape[0]} is below the 64x64 the Seb codec needs")
        except (ImageError, ValueError) as exc:
            self.message_port_pub(_STATUS, _status(event="encode_error", name=str(meta.get("name", "")),
                                                   error=str(exc)))
            return
        if not self._pending:
            self._first = time.monotonic()
        self._pending.append((str(meta.get("name", "")), img))

    def encode_set(self, batch):
        names, images = [n for n, _ in batch], [im for _, im in batch]
        try:
            pdus = seb_set_pdus(self.codec, names, images, self.spec, self.cbr, self.sets_sent & 0xFF,
                                seed=self.seed + self.sets_sent, stop=self._stop)
        except Cancelled:  # flowgraph stopping: nothing half-sent
            return
        for meta, pkt in pdus:
            self.publish(_OUT, make_pdu(meta, pkt))
            self.images_sent += meta["kind"] == "image"
        self.sets_sent += 1


def seb_set_pdus(codec, names, images, spec, cbr: float, set_id: int = 0, seed: int = 0, stop=None) -> list:
    """(metadata, packet) pairs for one image set at the CBR budget of
    ``spec``: the set packet (if the codec sends bases) then one packet per
    image, as ``seb_encoder`` sends them (also used to make recordings)."""
    t = time.perf_counter()
    plan = plan_seb(codec, images, spec, cbr, seed=seed, set_id=set_id, search_codewords=False, stop=stop)
    if plan is None:
        raise ValueError(f"CBR {cbr:g} does not carry even the set packet")
    seconds = time.perf_counter() - t
    sset, out = plan["set"], []
    model = codec.names[plan["model_id"]]
    if sset.packet:
        out.append(({"kind": "set", "set_id": set_id, "payload_type": PT_SET, "images": len(images),
                     "bases": sset.k, "model": model}, sset.packet))
    for i, name in enumerate(names):
        pkt = plan["packets"][i]
        out.append(({"kind": "image", "set_id": set_id, "name": name, "payload_type": PT_IMAGE,
                     "gain": plan["gains"][i], "bytes": len(pkt), "budget_bytes": plan["max_bytes"][i],
                     "model": model, "encode_seconds": seconds / len(images),
                     # the transmitter's own reconstruction (all packets intact)
                     "tx_psnr": psnr(plan["tx_recon"][i], images[i])}, pkt))
    return out


class seb_decoder(_worker_block):
    keep_sets = 8

    def __init__(self, models: str = "", mode: str = "seb", codec=None):
        _worker_block.__init__(self, "semcom_seb_decoder")
        self.codec = codec if codec is not None else make_seb_codec(models, mode)
        self.bases: OrderedDict = OrderedDict()
        self.decoded = 0
        self.message_port_register_in(_IN)
        self.message_port_register_out(_OUT)
        self.set_msg_handler(_IN, self.handle)

    def handle(self, msg):
        self.enqueue((msg,))

    def work_item(self, msg):
        from ..semantic.images import png_bytes
        from ..semantic.seb.codec import packet_set_id

        got = self.received(msg)
        if got is None:
            return
        meta, data, missing = got
        ptype = meta.get("payload_type")
        if ptype == PT_SET or (ptype is None and data[:2] == b"SS"):
            got = self.codec.decode_set_id(data, missing)
            if got is None:
                self.message_port_pub(_STATUS, _status(event="set_lost", msg_id=meta.get("msg_id")))
                return
            self.bases[got[0]] = got[1]
            while len(self.bases) > self.keep_sets:
                self.bases.popitem(last=False)
            return
        sid = packet_set_id(data) if not missing or all(s >= 21 for s, _ in missing) else None
        bases = self.bases.get(sid) if sid is not None else None
        dec = self.codec.decode_image(data, bases, missing)
        complete = not dec.failed and all(dec.parts.values())
        self.publish(_OUT, make_pdu({"set_id": sid, "failed": dec.failed, "parts": dec.parts,
                                              "complete": complete,
                                              "shape": list(dec.image.shape), "msg_id": meta.get("msg_id")},
                                             png_bytes(dec.image)))
        self.decoded += 1
