"""Seb as GNU Radio message blocks: thin wrappers over
:class:`gr_semcom.semantic.seb.codec.SebCodec` and the rate control of
:func:`gr_semcom.systems.images.plan_seb` (the objects the CLI, the benchmark
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
import numpy as np

from .pdu_util import make_pdu, pdu_parts
from .phy_blocks import IN as _IN, OUT as _OUT, STATUS as _STATUS, _status
from .ulbsc_blocks import _worker_block, image_from_pdu
from ..common import MODELS, PayloadType

PT_SET, PT_IMAGE = int(PayloadType.SEB_SET), int(PayloadType.SEB_IMAGE)


def make_seb_codec(models: str = "", mode: str = "seb"):
    from pathlib import Path

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
                 cbr: float = 1 / 30, modulation: str = "qpsk", code_rate: str = "1/2", codewords: int = 4):
        from ..phy.frame import FrameSpec

        _worker_block.__init__(self, "semcom_seb_encoder")
        self.codec = make_seb_codec(models, mode)
        self.set_size = max(1, int(set_size))
        self.flush_timeout = float(flush_timeout)
        self.cbr = float(cbr)
        self.spec = FrameSpec(modulation=modulation, code_rate=code_rate, codewords=int(codewords))
        self.sets_sent = 0
        self.images_sent = 0
        self._pending: list = []
        self._first = None
        self.message_port_register_in(_IN)
        self.message_port_register_out(_OUT)
        self.set_msg_handler(_IN, self.handle)

    def handle(self, msg):
        self.enqueue((msg,))

    def idle(self):
        if self._pending and (len(self._pending) >= self.set_size
                              or time.monotonic() - self._first > self.flush_timeout):
            batch, self._pending = self._pending, []
            try:
                self.encode_set(batch)
            except Exception as exc:
                self.message_port_pub(_STATUS, _status(event="encode_error", error=f"{type(exc).__name__}: {exc}",
                                                       images=[n for n, _ in batch]))

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
        from ..systems.images import Cancelled

        names, images = [n for n, _ in batch], [im for _, im in batch]
        try:
            pdus = seb_set_pdus(self.codec, names, images, self.spec, self.cbr, self.sets_sent & 0xFF,
                                seed=self.sets_sent, stop=self._stop)
        except Cancelled:  # flowgraph stopping: nothing half-sent
            return
        for meta, pkt in pdus:
            self.message_port_pub(_OUT, make_pdu(meta, pkt))
            self.images_sent += meta["kind"] == "image"
        self.sets_sent += 1


def seb_set_pdus(codec, names, images, spec, cbr: float, set_id: int = 0, seed: int = 0, stop=None) -> list:
    """(metadata, packet) pairs for one image set at the CBR budget of
    ``spec``: the set packet (if the codec sends bases) then one packet per
    image, as ``seb_encoder`` sends them (also used to make recordings)."""
    from ..systems.images import plan_seb

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
                     "model": model, "encode_seconds": seconds / len(images)}, pkt))
    return out


class seb_decoder(_worker_block):
    keep_sets = 8

    def __init__(self, models: str = "", mode: str = "seb"):
        _worker_block.__init__(self, "semcom_seb_decoder")
        self.codec = make_seb_codec(models, mode)
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

        try:
            meta, arr = pdu_parts(msg)
        except ValueError as exc:
            self.message_port_pub(_STATUS, _status(event="decode_error", error=str(exc)))
            return
        data = np.asarray(arr, np.uint8).tobytes()
        missing = [tuple(m) for m in (meta.get("missing") or [])]
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
        self.message_port_pub(_OUT, make_pdu({"set_id": sid, "failed": dec.failed, "parts": dec.parts,
                                              "complete": complete,
                                              "shape": list(dec.image.shape), "msg_id": meta.get("msg_id")},
                                             png_bytes(dec.image)))
        self.decoded += 1
