"""The JPEG2000 + LDPC baseline as GNU Radio message blocks, over
:mod:`gr_semcom.semantic.jpeg2000` (OpenJPEG through Pillow).

* ``jpeg2000_encoder``: image PDUs (file bytes, e.g. from ``image_source``)
  -> ``out``: the largest J2K code stream that fits the CBR budget of the
  given frame settings (channel uses = CBR x 3 H W, whole bursts of this
  PHY), metadata ``name``, ``height``, ``width``, ``bytes``,
  ``budget_bytes``, ``payload_type``; connect ``out`` to ``phy_tx``.
* ``jpeg2000_decoder``: reassembled PDUs of ``phy_rx`` (``missing`` byte
  ranges are erasures; a stream is cut at its first lost byte) -> ``out``:
  PNG bytes of the decoded image, metadata ``failed``, ``shape``,
  ``msg_id``. A stream that does not decode gives a grey image of
  ``height`` x ``width``, flagged failed.
"""
from __future__ import annotations

import time

import numpy as np

from ..common import PayloadType
from ..phy.mcs import byte_budget, cbr_channel_uses
from .pdu_util import make_pdu
from .phy_blocks import OUT as _OUT, STATUS as _STATUS, _status
from .ulbsc_blocks import _pdu_block


class jpeg2000_encoder(_pdu_block):
    def __init__(self, cbr: float = 1 / 30, modulation: str = "qpsk", code_rate: str = "1/2", codewords: int = 4):
        from ..phy.frame import FrameSpec

        _pdu_block.__init__(self, "semcom_jpeg2000_encoder")
        self.cbr = float(cbr)
        self.spec = FrameSpec(modulation=modulation, code_rate=code_rate, codewords=int(codewords))
        self.encoded = 0

    def work_item(self, msg):
        from ..semantic import jpeg2000
        from ..semantic.metrics import psnr

        got = self.image_input(msg)
        if got is None:
            return
        meta, img = got
        h, w = img.shape[:2]
        t = time.perf_counter()
        b = byte_budget(cbr_channel_uses(h, w, self.cbr), self.spec, search=False)
        stream = jpeg2000.encode_to_budget(img, b.payload_bytes) if b.payload_bytes > 0 else None
        seconds = time.perf_counter() - t
        if not stream:
            self.message_port_pub(_STATUS, _status(event="encode_error", name=str(meta.get("name", "")),
                                                   error=f"CBR {self.cbr:g} carries {b.payload_bytes} B on this PHY: "
                                                         "below the smallest JPEG2000 stream"))
            return
        out = {"name": str(meta.get("name", "")), "height": h, "width": w, "bytes": len(stream),
               "budget_bytes": b.payload_bytes, "payload_type": int(PayloadType.J2K), "encode_seconds": seconds,
               "tx_psnr": psnr(jpeg2000.decode(stream, (h, w))[0], img)}
        self.publish(_OUT, make_pdu(out, np.frombuffer(stream, np.uint8)))
        self.encoded += 1


class jpeg2000_decoder(_pdu_block):
    def __init__(self, height: int = 256, width: int = 256):
        _pdu_block.__init__(self, "semcom_jpeg2000_decoder")
        self.shape = (int(height), int(width))
        self.decoded = 0

    def work_item(self, msg):
        from ..semantic import jpeg2000
        from ..semantic.images import png_bytes

        got = self.received(msg)
        if got is None:
            return
        meta, data, missing = got
        img, failed = jpeg2000.decode(data, self.shape, missing)
        if failed:  # the stream's own size when its header arrived
            img, failed = _decode_any_size(data, missing) or (img, failed)
        self.publish(_OUT, make_pdu({"failed": failed, "shape": list(img.shape),
                                              "msg_id": meta.get("msg_id"), "complete": not failed and not missing},
                                             png_bytes(img)))
        self.decoded += 1


def _decode_any_size(data: bytes, missing) -> tuple[np.ndarray, bool] | None:
    """Decode a stream whose size differs from the block's ``height`` x
    ``width`` (the J2K SIZ marker carries it); None if it does not decode."""
    import io

    from PIL import Image

    from ..semantic import jpeg2000

    cut = min([s for s, _ in missing], default=len(data))
    try:
        w, h = Image.open(io.BytesIO(data[:cut])).size
    except Exception:
        return None
    img, failed = jpeg2000.decode(data, (h, w), missing)
    return None if failed else (img, failed)
