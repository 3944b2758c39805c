"""The DeepJSCC baseline (analog image transmission) as GNU Radio message
blocks over :mod:`gr_semcom.semantic.image_jscc`.

* ``deepjscc_encoder``: image PDUs (file bytes) -> ``out``: c32 PDU of the
  first symbols of the image's latent that one analog burst of the given
  layout carries (the image is edge-padded to multiples of 16; the latent is
  sent channel by channel, so a burst shorter than the latent drops whole
  latent channels, which the receiver fills with zeros); metadata ``name``,
  ``height``, ``width``, ``symbols``, ``symbols_sent``. Connect ``out`` to
  ``analog_tx`` with the same layout. A burst longer than the CBR budget
  (CBR x 3 H W channel uses) is refused on ``status``.
* ``deepjscc_decoder``: equalised symbols of ``analog_rx`` -> ``out``: PNG
  bytes of the decoded ``height`` x ``width`` image, metadata ``symbols``,
  ``snr_db``, ``shape``.
"""
from __future__ import annotations

import time

import numpy as np

from ..common import MODELS
from ..phy.mcs import burst_symbols, cbr_channel_uses
from .pdu_util import make_pdu, pdu_parts
from .phy_blocks import OUT as _OUT, STATUS as _STATUS, _status
from .ulbsc_blocks import _pdu_block


def load_deepjscc(models: str = ""):
    from ..semantic.image_jscc import load_model

    return load_model(models or MODELS / "image_deepjscc" / "model.safetensors")


def _padded(h: int, w: int) -> tuple[int, int]:
    return h + (-h % 16), w + (-w % 16)


class deepjscc_encoder(_pdu_block):
    def __init__(self, models: str = "", cbr: float = 1 / 30, modulation: str = "qpsk", codewords: int = 8,
                 model=None):
        from .analog import analog_spec

        _pdu_block.__init__(self, "semcom_deepjscc_encoder")
        self.model = model if model is not None else load_deepjscc(models)
        self.cbr = float(cbr)
        self.aspec = analog_spec(modulation=modulation, codewords=int(codewords))
        self.encoded = 0

    def work_item(self, msg):

        got = self.image_input(msg)
        if got is None:
            return
        meta, img = got
        h, w = img.shape[:2]
        if burst_symbols(self.aspec) > cbr_channel_uses(h, w, self.cbr):
            self.message_port_pub(_STATUS, _status(
                event="encode_error", name=str(meta.get("name", "")),
                error=f"one analog burst of {burst_symbols(self.aspec)} channel uses exceeds CBR {self.cbr:g} "
                      f"of a {w}x{h} image ({cbr_channel_uses(h, w, self.cbr)})"))
            return
        ph, pw = _padded(h, w)
        x = np.pad(img, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge") if (ph, pw) != (h, w) else img
        t = time.perf_counter()
        sym = self.model.encode_image(x)
        n = min(sym.size, self.aspec.n_data)
        out = {"name": str(meta.get("name", "")), "height": h, "width": w, "symbols": int(sym.size),
               "symbols_sent": int(n), "encode_seconds": time.perf_counter() - t}
        self.publish(_OUT, make_pdu(out, sym[:n].astype(np.complex64)))
        self.encoded += 1


class deepjscc_decoder(_pdu_block):
    def __init__(self, models: str = "", height: int = 256, width: int = 256, model=None):
        _pdu_block.__init__(self, "semcom_deepjscc_decoder")
        self.model = model if model is not None else load_deepjscc(models)
        self.shape = (int(height), int(width))
        self.decoded = 0

    def work_item(self, msg):
        from ..semantic.images import png_bytes

        try:
            meta, y = pdu_parts(msg)
        except ValueError as exc:
            self.message_port_pub(_STATUS, _status(event="decode_error", error=str(exc)))
            return
        h, w = self.shape
        ph, pw = _padded(h, w)
        full = np.zeros(self.model.symbols_for(ph, pw), np.complex64)  # punctured tail: zeros
        y = np.asarray(y, np.complex64).ravel()[: full.size]
        full[: y.size] = y
        img = self.model.decode_image(full, ph, pw)[:h, :w]
        self.publish(_OUT, make_pdu({"symbols": int(y.size), "snr_db": meta.get("snr_db"),
                                              "shape": list(img.shape), "failed": False}, png_bytes(img)))
        self.decoded += 1
