"""Multi-SC as GNU Radio message blocks: thin wrappers over
:class:`gr_semcom.semantic.multisc.codec.MultiScCodec` (the object the CLI,
the sweep and the tests use). Model work runs on each block's worker thread.

* ``multisc_encoder``: image PDU (file bytes, from ``image_source``) ->
  ``slice``: u8 PDU of the slice payload (header + JPEG 2000) for
  ``phy_tx``; ``captions``: one PDU per region caption, in region order:
  c32 QPSK symbols of the 6-bit text (``text_mode`` uncoded, for
  ``analog_tx``), c32 DeepSC symbols (deepsc, for ``analog_tx``) or the
  UTF-8 bytes (digital, payload type MULTISC_CAPTIONS, for the same
  ``phy_tx`` as the slice); metadata: ``region``, ``n_regions``, ``box``,
  ``caption``.
* ``multisc_decoder``: ``slice`` = reassembled PDUs of ``phy_rx`` (missing
  byte ranges are erasures; caption PDUs of the digital mode arriving here
  are told apart by their frame header's payload type), ``captions`` =
  caption PDUs of ``analog_rx`` (c32: uncoded or DeepSC symbols, as
  ``text_mode`` says) or of another ``phy_rx`` (u8), in order. A slice waits ``pair_timeout`` s for its
  captions (the header says how many); captions that never come are empty.
  ``out``: PDU for ``generator_client`` (pipeline ``ip_adapter``): metadata
  ``captions`` (corrected), ``captions_received``, ``slice_box``,
  ``source_height``, ``source_width``, ``ip_adapter_scale``,
  ``image_prompt_png`` (the slice).
"""
from __future__ import annotations

import time

import numpy as np
import pmt

from ..semantic.multisc.codec import MultiScCodec, MultiScConfig, caption_count
from ..phy.constellations import get_constellation
from ..semantic.multisc.textcode import bits_to_text, text_to_bits
from .pdu_util import make_pdu, pdu_parts
from .phy_blocks import IN as _IN, OUT as _OUT, STATUS as _STATUS, _status
from .ulbsc_blocks import _worker_block, image_from_pdu
from ..common import PayloadType

_SLICE, _CAPTIONS = pmt.intern("slice"), pmt.intern("captions")


# uncoded captions: the text code's bits on the PHY's constellation (semantic/ knows no constellations)
def text_to_symbols(text: str, modulation: str = "qpsk") -> np.ndarray:
    c = get_constellation(modulation)
    bits = text_to_bits(text)
    k = c.bits_per_symbol
    bits = np.concatenate([bits, np.zeros((-bits.size) % k, np.uint8)])
    return c.map_bits(bits).astype(np.complex64)


def symbols_to_text(symbols: np.ndarray, modulation: str = "qpsk") -> str:
    return bits_to_text(get_constellation(modulation).hard_bits(np.asarray(symbols, np.complex64)))


def load_text_model(text_mode: str, path: str = "", model=None):
    """The DeepSC model of the deepsc caption mode (None for the others)."""
    from ..semantic.multisc.codec import TEXT_MODES

    if text_mode not in TEXT_MODES:
        raise ValueError(f"text_mode is one of {TEXT_MODES}")
    if text_mode != "deepsc":
        return None
    if model is not None:
        return model
    from ..semantic.deepsc import DeepSC
    from ..semantic.ulbsc.codec import DEFAULT_DEEPSC

    return DeepSC.load(path or DEFAULT_DEEPSC)


def caption_data(text: str, text_mode: str, deepsc=None) -> np.ndarray:
    """One caption's PDU data as the encoder block sends it: uncoded QPSK
    symbols, DeepSC symbols (c32) or UTF-8 bytes (u8)."""
    if text_mode == "digital":
        return np.frombuffer(text.encode("utf-8") or b" ", np.uint8)
    if text_mode == "deepsc":
        return deepsc.text_to_symbols([text])[0].astype(np.complex64)
    return text_to_symbols(text)


def caption_uses(text: str, text_mode: str, spec, aspec) -> int:
    """Channel uses of one caption as the encoder block sends it: one analog
    burst of ``aspec`` (uncoded symbols) or a PDU on the digital ``spec``."""
    from ..phy.mcs import burst_symbols, pdu_channel_uses

    if text_mode == "digital":
        return pdu_channel_uses(len(text.encode("utf-8") or b" "), spec)
    return burst_symbols(aspec)


def slice_budget(shape: tuple, cbr: float, spec, aspec, text_mode: str = "uncoded"):
    """The same-budget rule at a fixed PHY: a ``budget(captions)`` for
    ``MultiScCodec.encode`` keeping the captions (the last, smallest regions
    dropped while the slice PDU would not carry its header) and giving the
    slice PDU every byte the rest of ``cbr`` x 3 H W channel uses carries in
    whole bursts of ``spec``."""
    from ..phy.mcs import byte_budget, cbr_channel_uses
    from ..semantic.multisc.codec import HEADER

    total = cbr_channel_uses(shape[0], shape[1], cbr)

    def budget(captions: list) -> tuple[int, int | None]:
        keep = len(captions)
        while True:
            rest = total - sum(caption_uses(c, text_mode, spec, aspec) for c in captions[:keep])
            b = byte_budget(max(0, rest), spec, search=False)
            if b.payload_bytes >= HEADER or keep <= 1:
                break
            keep -= 1
        return keep, (b.payload_bytes if b.payload_bytes >= HEADER else None)

    budget.spec, budget.channel_uses = spec, total
    return budget


class multisc_encoder(_worker_block):
    """Image PDUs -> ``slice`` (the main-object slice PDU, for ``phy_tx``) and
    ``captions`` (one PDU per region: uncoded QPSK symbols for ``analog_tx``,
    or UTF-8 bytes). ``cbr`` > 0: captions and slice within CBR x 3 H W
    channel uses at the given slice PHY (modulation, LDPC rate, codewords per
    burst, as in PHY TX) and one analog burst of ``analog_codewords`` per
    caption (as in Analog TX); 0: the slice at ``slice_bytes`` alone.
    ``deepsc``: DeepSC weights of the deepsc mode ("" = models/deepsc_text)."""

    def __init__(self, text_mode: str = "uncoded", split: str = "fusion", eps: float = 0.25, max_regions: int = 4,
                 slice_side: int = 64, slice_bytes: int = 400, vlm: str = "auto", vlm_model: str = "",
                 cbr: float = 1 / 30, modulation: str = "qpsk", code_rate: str = "1/2", codewords: int = 4,
                 analog_codewords: int = 1, seed: int = 0, deepsc: str = "", codec=None, deepsc_model=None):
        from ..phy.frame import FrameSpec
        from .analog import analog_spec

        _worker_block.__init__(self, "semcom_multisc_encoder")
        self.text_mode = text_mode
        self.deepsc = load_text_model(text_mode, deepsc, deepsc_model)
        self.codec = codec if codec is not None else MultiScCodec.build(
            MultiScConfig(split=split, eps=eps, max_regions=max_regions, slice_side=slice_side,
                          slice_bytes=slice_bytes, seed=int(seed)), vlm=vlm, vlm_model=vlm_model)
        self.cbr = float(cbr)
        self.spec = FrameSpec(modulation=modulation, code_rate=code_rate, codewords=int(codewords))
        self.aspec = analog_spec(codewords=int(analog_codewords))
        self.encoded = 0
        self.message_port_register_in(_IN)
        self.message_port_register_out(_SLICE)
        self.message_port_register_out(_CAPTIONS)
        self.set_msg_handler(_IN, self.handle)

    def work_item(self, msg):
        from ..semantic.images import ImageError

        meta: dict = {}
        try:
            meta, img = image_from_pdu(msg)
            t = time.perf_counter()
            budget = slice_budget(img.shape[:2], self.cbr, self.spec, self.aspec, self.text_mode) if self.cbr > 0 \
                else None
            p = self.codec.encode(img, budget) if budget else self.codec.encode(img)
            seconds = time.perf_counter() - t
        except (ImageError, ValueError) as exc:
            self.message_port_pub(_STATUS, _status(event="encode_error", name=str(meta.get("name", "")),
                                                   error=str(exc)))
            return
        name = meta.get("name", "")
        out = p.meta()
        out.update(name=name, encode_seconds=seconds, payload_type=int(PayloadType.MULTISC_SLICE))
        self.publish(_SLICE, make_pdu(out, p.slice_data))
        for k, (c, b) in enumerate(zip(p.captions, p.regions)):
            cm = {"name": name, "region": k, "n_regions": len(p.captions), "box": b.as_list(), "caption": c}
            if self.text_mode == "digital":
                cm["payload_type"] = int(PayloadType.MULTISC_CAPTIONS)
            self.publish(_CAPTIONS, make_pdu(cm, caption_data(c, self.text_mode, self.deepsc)))
        self.encoded += 1


class multisc_decoder(_worker_block):
    def __init__(self, corrector: str = "symspell", corrector_model: str = "", ip_adapter_scale: float = 0.6,
                 pair_timeout: float = 3.0, slice_side: int = 64, text_mode: str = "uncoded", deepsc: str = "",
                 codec=None, deepsc_model=None):
        _worker_block.__init__(self, "semcom_multisc_decoder")
        self.text_mode = text_mode
        self.deepsc = load_text_model(text_mode, deepsc, deepsc_model)
        self.codec = codec if codec is not None else MultiScCodec.build(
            MultiScConfig(slice_side=slice_side), segmenter="", detector="", vlm="", corrector=corrector,
            corrector_model=corrector_model)
        self.ip_adapter_scale, self.pair_timeout = float(ip_adapter_scale), float(pair_timeout)
        self.decoded = 0
        self.digital_in = 0  # slice PDUs arrived
        self.analog_in = 0  # caption PDUs arrived
        self._decoding = False
        self._slices: list = []
        self._caps: list = []
        self.message_port_register_in(_SLICE)
        self.message_port_register_in(_CAPTIONS)
        self.message_port_register_out(_OUT)
        self.set_msg_handler(_SLICE, self.handle_slice)
        self.set_msg_handler(_CAPTIONS, self.handle_caption)

    def handle_slice(self, msg):
        try:
            meta = pdu_parts(msg)[0]
        except ValueError:
            meta = {}  # _arrive reports it
        is_caption = meta.get("payload_type") == int(PayloadType.MULTISC_CAPTIONS)
        self._arrive(self._caps if is_caption else self._slices, msg)
        self.digital_in += 1  # after it is queued: a runner waiting on it sees the slice pending

    def handle_caption(self, msg):
        self._arrive(self._caps, msg)
        self.analog_in += 1  # after it is queued (see digital_in)

    def work_item(self, *_):
        pass

    def settled(self) -> bool:
        """Every slice and caption that arrived decoded (captions whose slice
        never comes are decoded after two pairing windows)."""
        with self._lock:
            return not self._slices and not self._caps and not self._decoding and self.items_done >= self.items_in

    def idle(self):
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._slices:
                    if self._caps and now - self._caps[0][0] > 2 * self.pair_timeout:
                        # captions whose slice was lost: decoded with the slice erased (the captions that
                        # came within one pairing window of the first belong to the same image)
                        t_first = self._caps[0][0]
                        caps = [c for c in self._caps if c[0] - t_first <= self.pair_timeout]
                        self._caps = self._caps[len(caps):]
                        self.message_port_pub(_STATUS, _status(event="orphan_captions", captions=len(caps)))
                    else:
                        return
                else:
                    caps = None
                if caps is not None:
                    raw, missing, n = b"", [(0, 1 << 30)], None
                else:
                    t0, meta, data = self._slices[0]
                    raw = np.asarray(data, np.uint8).tobytes()
                    missing = [tuple(m) for m in (meta.get("missing") or [])]
                    n = caption_count(raw, missing)
                    ready = n is not None and len(self._caps) >= n
                    if not ready and now - t0 < self.pair_timeout:
                        return
                    self._slices.pop(0)
                    take = n if n is not None else len(self._caps)
                    caps, self._caps = self._caps[:take], self._caps[take:]
                self._decoding = True  # taken off the queues, not yet published: not settled
            try:
                self.decode_one(raw, missing, caps, n)
            finally:
                self._decoding = False

    def decode_one(self, raw: bytes, missing, caps, n: int | None):
        """``n``: the captions the slice header announces (None: header lost,
        the captions that came are used)."""
        from ..bridge.protocol import png_encode
        from ..semantic.data import pdu_text

        texts = []
        for _, _, d in caps:
            d = np.asarray(d)
            if not np.iscomplexobj(d):
                texts.append(pdu_text(d.astype(np.uint8).tobytes()))
            elif self.text_mode == "deepsc":
                n_sym = self.deepsc.cfg.n_symbols
                texts.append(self.deepsc.symbols_to_text(d[:n_sym])[0] if d.size >= n_sym else "")
            else:
                texts.append(symbols_to_text(d))
        n = len(texts) if n is None else n
        texts += [""] * max(0, n - len(texts))
        rec = self.codec.decode(raw, missing, texts)
        out = rec.meta()
        # width/height of a generator_client PDU are the generated size: the source's go by other names
        out["source_height"], out["source_width"] = out.pop("height"), out.pop("width")
        out.update(complete=not rec.slice_erased and all(rec.captions_received), n_captions=int(n),
                   captions=[c for c in rec.captions_corrected if c] or [""], pipeline="ip_adapter",
                   ip_adapter_scale=self.ip_adapter_scale,
                   image_prompt_png=np.frombuffer(png_encode(rec.slice_image), np.uint8))
        self.publish(_OUT, make_pdu(out, np.zeros(0, np.uint8)))
        self.decoded += 1
