"""Link-layer framing: segmentation, header, CRC32, reassembly with erasures.

Pure Python/numpy (no GNU Radio import) so that the CLI, the blocks and the
tests share one implementation.

Frame payload (before LDPC), big endian::

    u8  version (=1)
    u8  payload_type     (application field, e.g. which semantic field)
    u16 msg_id           (identifies the PDU a segment belongs to)
    u16 seg_index
    u16 seg_count
    u16 seg_len          (payload bytes in this frame)
    u32 total_len        (bytes of the whole PDU)
    ... payload (seg_len bytes), zero padding to the frame capacity
    u32 CRC32 over header+payload (zlib / IEEE 802.3 polynomial), placed right
        after the payload so padding is not covered and can be any value.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

HEADER = struct.Struct(">BBHHHHI")
HEADER_LEN = HEADER.size  # 14
CRC_LEN = 4
OVERHEAD = HEADER_LEN + CRC_LEN
VERSION = 1
MAX_SEGMENTS = 0xFFFF


class FramingError(ValueError):
    """Raised for PDUs that cannot be framed (empty, too large)."""


@dataclass(frozen=True)
class FrameHeader:
    payload_type: int
    msg_id: int
    seg_index: int
    seg_count: int
    seg_len: int
    total_len: int


def max_pdu_len(capacity: int) -> int:
    return (capacity - OVERHEAD) * MAX_SEGMENTS


def frame_count(nbytes: int, capacity: int) -> int:
    """Frames a PDU of ``nbytes`` takes at ``capacity`` bytes per frame."""
    return -(-nbytes // (capacity - OVERHEAD))


def segment(pdu: bytes, capacity: int, msg_id: int, payload_type: int = 0) -> list[bytes]:
    """Split ``pdu`` into frame payloads of exactly ``capacity`` bytes each."""
    per = capacity - OVERHEAD
    if per <= 0:
        raise FramingError(f"frame capacity {capacity} B leaves no room after {OVERHEAD} B of header+CRC")
    if len(pdu) == 0:
        raise FramingError("empty PDU: nothing to send")
    if len(pdu) > 0xFFFFFFFF:
        raise FramingError("PDU larger than 4 GiB")
    count = frame_count(len(pdu), capacity)
    if count > MAX_SEGMENTS:
        raise FramingError(
            f"PDU of {len(pdu)} B needs {count} frames; at most {MAX_SEGMENTS} "
            f"({max_pdu_len(capacity)} B) per PDU with this frame size")
    frames = []
    for i in range(count):
        chunk = pdu[i * per:(i + 1) * per]
        hdr = HEADER.pack(VERSION, payload_type & 0xFF, msg_id & 0xFFFF, i, count, len(chunk), len(pdu))
        body = hdr + chunk
        body += struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
        frames.append(body + bytes(capacity - len(body)))
    return frames


def parse(frame: bytes) -> tuple[FrameHeader | None, bytes, str]:
    """Check and parse one received frame payload.

    Returns ``(header, payload, status)`` with status ``"ok"``, ``"crc"``
    (CRC failure, an erasure) or ``"header"`` (CRC passed but fields are
    inconsistent; treated as an erasure too).
    """
    if len(frame) < OVERHEAD:
        return None, b"", "header"
    ver, ptype, msg_id, idx, count, seg_len, total = HEADER.unpack_from(frame)
    end = HEADER_LEN + seg_len
    if ver != VERSION or end + CRC_LEN > len(frame):
        return None, b"", "crc"  # most likely a corrupted length field
    (crc,) = struct.unpack_from(">I", frame, end)
    if zlib.crc32(frame[:end]) & 0xFFFFFFFF != crc:
        return None, b"", "crc"
    if count == 0 or idx >= count or seg_len > total:
        return None, b"", "header"
    return FrameHeader(ptype, msg_id, idx, count, seg_len, total), frame[HEADER_LEN:end], "ok"


@dataclass
class _Partial:
    header: FrameHeader
    per: int
    data: bytearray
    got: np.ndarray  # bool per segment
    last_seen: float  # time of the last good segment (the flush timeout counts from it)


class Reassembler:
    """Collects segments per ``msg_id``; emits a PDU when complete or flushed.

    A PDU emitted with missing segments has those bytes zero-filled and lists
    the missing byte ranges ``[(start, stop), ...]``, so the application can
    treat them as erasures.
    """

    def __init__(self, capacity: int):
        self.per = capacity - OVERHEAD
        self.partial: dict[int, _Partial] = {}

    def add(self, header: FrameHeader, payload: bytes, now: float = 0.0):
        """Add a good segment; returns a finished ``(header, bytes, missing)`` or None."""
        p = self.partial.get(header.msg_id)
        if p is not None and (p.header.total_len != header.total_len or p.header.seg_count != header.seg_count):
            # A new PDU reuses the id before the old one finished: flush the old.
            done = self._finish(header.msg_id)
            self.partial[header.msg_id] = self._new(header, now)
            self._put(self.partial[header.msg_id], header, payload)
            return done
        if p is None:
            p = self.partial[header.msg_id] = self._new(header, now)
        p.last_seen = max(p.last_seen, now)
        self._put(p, header, payload)
        if p.got.all():
            return self._finish(header.msg_id)
        return None

    def _new(self, header: FrameHeader, now: float) -> _Partial:
        return _Partial(header, self.per, bytearray(header.total_len),
                        np.zeros(header.seg_count, dtype=bool), now)

    @staticmethod
    def _put(p: _Partial, header: FrameHeader, payload: bytes) -> None:
        start = header.seg_index * p.per
        p.data[start:start + len(payload)] = payload
        p.got[header.seg_index] = True

    def _finish(self, msg_id: int):
        p = self.partial.pop(msg_id)
        missing = []
        for i in np.flatnonzero(~p.got):
            a = int(i) * p.per
            b = min(a + p.per, p.header.total_len)
            if missing and missing[-1][1] == a:
                missing[-1] = (missing[-1][0], b)
            else:
                missing.append((a, b))
        return p.header, bytes(p.data), missing

    def flush_except(self, msg_id: int):
        """Emit every incomplete PDU other than ``msg_id`` (a good frame of
        ``msg_id`` arrived; on one in-order link that ends the earlier PDUs)."""
        return [self._finish(m) for m in list(self.partial) if m != msg_id]

    def flush(self, older_than: float | None = None, now: float = 0.0):
        """Emit incomplete PDUs (all, or those with no new segment since
        ``now - older_than``: an inactivity timeout, so a long PDU that is
        still arriving is never cut short)."""
        out = []
        for mid in list(self.partial):
            if older_than is None or now - self.partial[mid].last_seen >= older_than:
                out.append(self._finish(mid))
        return out


def bytes_to_bits(data: bytes) -> np.ndarray:
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8))


def bits_to_bytes(bits: np.ndarray) -> bytes:
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes()
