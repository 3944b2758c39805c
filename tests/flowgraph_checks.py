"""Content checks for running flowgraphs (in-process and in the GUI runner's
subprocess): what left the receiver is compared with what entered the
transmitter, byte for byte, not merely counted."""
from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import numpy as np
import pmt
from gnuradio import blocks

REPO = Path(__file__).resolve().parents[1]


def attach(tb):
    """Store every PDU entering the flowgraph's transmitter and every PDU its
    digital receiver puts out; returns (sent, received) message_debug blocks
    (sent is None for a flowgraph with no transmitter: a replay)."""
    received = blocks.message_debug()
    tb.msg_connect((tb.rx, "out"), (received, "store"))
    if hasattr(tb, "pdu_src"):
        src = (tb.pdu_src, "pdus")
    elif hasattr(tb, "enc"):
        src = (tb.enc, "slice" if hasattr(tb, "atx") else "out")
    else:
        return None, received
    sent = blocks.message_debug()
    tb.msg_connect(src, (sent, "store"))
    return sent, received


def _payloads(dbg) -> list[tuple[dict, bytes]]:
    out = []
    for i in range(dbg.num_messages()):
        m = dbg.get_message(i)
        out.append((pmt.to_python(pmt.car(m)) or {}, bytes(np.asarray(pmt.u8vector_elements(pmt.cdr(m)), np.uint8))))
    return out


def complete(received) -> int:
    """How many complete PDUs the receiver has delivered so far."""
    return sum(1 for meta, _ in _payloads(received) if meta.get("complete"))


def check(tb, sent, received, recording: str | None = None) -> int:
    """Every complete PDU the receiver delivered is one that was sent (or, for
    a replay, one whose SHA-256 the recording lists); every incomplete one
    agrees with a sent PDU outside its missing ranges. Returns how many
    complete PDUs matched; raises AssertionError on any mismatch."""
    got = _payloads(received)
    if sent is not None:
        sent_set = {p for _, p in _payloads(sent)}
        sent_list = [p for _, p in _payloads(sent)]
    else:
        meta = __import__("gr_semcom.phy.recording", fromlist=["read_meta"]).read_meta(REPO / recording)
        listed = meta["semcom:payloads"]
        listed = ast.literal_eval(listed) if isinstance(listed, str) else listed
        hashes = {d["sha256"] for d in listed}
    good = 0
    for meta, data in got:
        if meta.get("complete"):
            if sent is not None:
                assert data in sent_set, f"a complete PDU of {len(data)} B that was never sent"
            else:
                assert hashlib.sha256(data).hexdigest() in hashes, "a complete PDU the recording does not list"
            good += 1
        elif sent is not None:
            keep = np.ones(len(data), bool)
            for a, b in meta.get("missing") or []:
                keep[a:b] = False
            arr = np.frombuffer(data, np.uint8)
            assert any(len(s) == len(data) and np.array_equal(np.frombuffer(s, np.uint8)[keep], arr[keep])
                       for s in sent_list), "an incomplete PDU that matches no sent PDU where it was received"
    return good
