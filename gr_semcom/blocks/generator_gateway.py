"""Gateway between GNU Radio's stock ZeroMQ message blocks and the generator
server, so a GRC user can reach the server without our client block.

GNU Radio's ``ZMQ PUSH Message Sink`` / ``ZMQ PULL Message Source`` carry one
ZeroMQ frame per message: ``pmt.serialize_str(msg)``. The server speaks JSON +
raw frames (it needs no GNU Radio on the GPU machine), so this small process,
run where GNU Radio is installed, translates::

    flowgraph: [fields PDU] -> ZMQ PUSH Message Sink (bind tcp://127.0.0.1:5560)
    gateway:   PULL connect :5560 -> GenerateRequest -> server (DEALER, CURVE keys if given)
               -> reply PDU -> PUSH connect :5561
    flowgraph: ZMQ PULL Message Source (bind tcp://127.0.0.1:5561) -> [image PDU]

Request PDU: the same fields as our ``generator_client`` block (metadata
``captions``, ``seed``, ``steps``, ``width``, ``height``, ``control_shape``,
``image_prompt_png``; u8 data = control map), e.g. straight from the ULBSC
decoder. Reply PDU: the same as the client block's (request fields + ``id``,
``pipeline``, ``round_trip``, ``seconds``, ``shape``; data = PNG bytes). Failures (timeout, server error, malformed
message) are PDUs with metadata ``error`` and ``detail`` and empty data, so
the flowgraph sees them in order. A message that is not a serialised PMT is
answered the same way, never crashes the gateway. The ZeroMQ loop itself is
``gr_semcom.bridge.gateway.Gateway`` (no GNU Radio); this module adds the
PMT codec.

    semcom gateway --server tcp://gpu-host:5555 --client-key keys/lab-pc.key_secret --server-key keys/server.key \
        --pull tcp://127.0.0.1:5560 --push tcp://127.0.0.1:5561
"""
from __future__ import annotations

import numpy as np
import pmt

from ..bridge.gateway import Gateway
from .generator_blocks import reply_pdu, request_from_pdu
from .pdu_util import make_pdu, pdu_parts


class PmtCodec:
    """Serialised PMT PDUs <-> GenerateRequest / reply (``bridge.gateway`` codec)."""

    @staticmethod
    def decode(raw: bytes):
        msg = pmt.deserialize_str(raw)  # RuntimeError on garbage
        meta, data = pdu_parts(msg)
        return meta, request_from_pdu(meta, np.asarray(data))

    @staticmethod
    def reply(meta, rep) -> bytes:
        return pmt.serialize_str(reply_pdu(meta, rep))

    @staticmethod
    def error(meta, code: str, detail: str) -> bytes:
        out = {k: v for k, v in meta.items() if k != "image_prompt_png"}
        out.update(error=code, detail=detail)
        return pmt.serialize_str(make_pdu(out, b""))


class GrGateway(Gateway):
    """``semcom gateway``: stock GNU Radio ZMQ message blocks <-> generator server."""

    def __init__(self, server: str, pull: str, push: str, timeout: float = 60.0, context=None, curve=None):
        super().__init__(PmtCodec(), server, pull, push, timeout=timeout, context=context, curve=curve)
