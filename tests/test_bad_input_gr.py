"""Bad input through the running GNU Radio chain: clear error or erasure, never a hang."""
import time

import numpy as np
import pmt
import pytest

gr = pytest.importorskip("gnuradio.gr")
from gnuradio import blocks, pdu  # noqa: E402

from shared import wait_for  # noqa: E402
from gr_semcom.blocks.pdu_util import make_pdu  # noqa: E402
from gr_semcom.blocks.phy_hier import phy_rx, phy_tx  # noqa: E402
from gr_semcom.phy.frame import FrameSpec  # noqa: E402
from gr_semcom.link.sim import _collector  # noqa: E402


def _wait(pred, timeout=10.0):
    return wait_for(pred, timeout)


def _status_events(col):
    return [pmt.to_python(m) for m in col.items]


def test_empty_and_oversize_and_wrong_type_pdus_reported_not_sent():
    spec = FrameSpec()
    tb = gr.top_block()
    tx = phy_tx(spec)
    st, sink = _collector(), blocks.null_sink(gr.sizeof_gr_complex)
    tb.connect(tx, sink)
    tb.msg_connect(tx, "status", st, "in")
    tb.start()
    try:
        post = lambda m: tx.framer._post(pmt.intern("in"), m)  # noqa: E731
        post(make_pdu({}, b""))
        post(make_pdu({}, np.zeros(65535 * spec.capacity + 1, np.uint8)))
        post(make_pdu({}, np.zeros(8, np.float32)))
        post(pmt.intern("not a pdu"))
        post(make_pdu({}, b"ok after errors"))
        assert _wait(lambda: len(st.items) >= 5)
    finally:
        tb.stop()
        tb.wait()
    ev = _status_events(st)
    errors = [e for e in ev if e.get("event") == "tx_error"]
    assert len(errors) == 4, ev
    assert any("empty" in e["error"] for e in errors)
    assert ev[-1]["event"] == "tx_pdu" and ev[-1]["bytes"] == 15


def _run_rx(samples: np.ndarray, spec: FrameSpec, seconds: float = 1.0, expect_out: bool = True):
    tb = gr.top_block()
    rx = phy_rx(spec, threshold=0.3, timeout=2.0)
    # a PDU-fed stream never ends, so the message side keeps running (a
    # finished vector_source would shut the flowgraph down mid-decode)
    src = pdu.pdu_to_stream_c(pdu.EARLY_BURST_APPEND, 64)
    out, st = _collector(), _collector()
    tb.connect(src, rx)
    tb.msg_connect(rx, "out", out, "in")
    tb.msg_connect(rx, "status", st, "in")
    tb.start()
    tail = (np.random.default_rng(9).standard_normal(20000) * 0.01).astype(np.complex64)
    src._post(pmt.intern("pdus"), make_pdu({}, np.concatenate([samples.astype(np.complex64), tail])))
    if expect_out:  # bounded wait for the PDU (the reassembly timeout emits partial ones)
        _wait(lambda: bool(out.items), timeout=20.0)
    else:
        time.sleep(seconds)
    tb.stop()
    tb.wait()
    return out, _status_events(st)


def _tx_samples(spec, data: bytes) -> np.ndarray:
    tb = gr.top_block()
    tx = phy_tx(spec)
    snk = blocks.vector_sink_c()
    tb.connect(tx, snk)
    tb.start()
    tx.framer._post(pmt.intern("in"), make_pdu({}, data))
    n_frames = -(-(len(data)) // (spec.capacity - 18))
    _wait(lambda: len(snk.data()) >= n_frames * spec.burst_samples + spec.flush_symbols * spec.sps)
    tb.stop()
    tb.wait()
    return np.array(snk.data(), np.complex64)


def test_pure_noise_gives_no_frames_and_no_pdu():
    spec = FrameSpec()
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(400_000) + 1j * rng.standard_normal(400_000)) / np.sqrt(2)
    out, ev = _run_rx(x, spec, seconds=1.5, expect_out=False)
    assert not out.items
    assert not [e for e in ev if e.get("event") == "frame" and e.get("crc_ok")]


@pytest.mark.parametrize("span,lost", [(50, False), (1200, True)])
def test_nan_and_inf_samples_do_not_break_the_receiver(span, lost):
    """NaN/inf become zeros (reported): a short run is corrected by the LDPC
    code, a run over the middle burst's preamble makes that frame an erasure;
    either way the frames after it still decode."""
    spec = FrameSpec()
    data = np.random.default_rng(1).integers(0, 256, 3 * spec.capacity - 60, dtype=np.uint8).tobytes()
    x = np.concatenate([np.zeros(500, np.complex64), _tx_samples(spec, data)])
    start = 500 + spec.burst_samples + (0 if lost else spec.burst_samples // 2)
    x[start:start + span] = np.nan
    x[start + span // 2] = np.inf
    noise = (np.random.default_rng(2).standard_normal(x.size) * 0.05).astype(np.complex64)
    out, ev = _run_rx(x + noise, spec, seconds=1.5)
    assert out.items, ev
    assert any(e.get("event") == "non_finite" and e["samples"] >= span for e in ev)
    meta = pmt.to_python(pmt.car(out.items[0]))
    frames_ok = {e["seg_index"] for e in ev if e.get("event") == "frame" and e.get("crc_ok")}
    assert 2 in frames_ok and 0 in frames_ok
    assert meta["complete"] is (not lost)
    if lost:
        assert meta["erasures"] == 1 and len(meta["missing"]) == 1


def test_truncated_last_frame_is_an_erasure():
    spec = FrameSpec()
    data = np.random.default_rng(5).integers(0, 256, 2 * spec.capacity - 40, dtype=np.uint8).tobytes()
    x = _tx_samples(spec, data)
    cut = spec.burst_samples + spec.burst_samples // 3  # second burst cut short
    tail = (np.random.default_rng(6).standard_normal(30000) * 0.05).astype(np.complex64)
    out, ev = _run_rx(np.concatenate([np.zeros(300, np.complex64), x[:cut], tail]), spec, seconds=1.0)
    assert out.items
    meta = pmt.to_python(pmt.car(out.items[0]))
    assert not meta["complete"] and meta["erasures"] == 1
    a, b = meta["missing"][0]
    assert a == spec.capacity - 18 and b == len(data)


def test_second_tag_on_a_taken_burst_is_dropped_without_demodulation(monkeypatch):
    """A second capture of a burst already decoded is rejected before any DSP
    (the same decision the non-overlap rule takes after demodulation)."""
    from gr_semcom.blocks.phy_blocks import burst_demod
    from gr_semcom.phy.frame import simulated_burst as _burst

    spec = FrameSpec(modulation="qpsk", code_rate="1/2")
    rng = np.random.default_rng(4)
    x = _burst(spec, rng.integers(0, 2, spec.coded_bits).astype(np.uint8), 12.0, 0.0, 0.2, rng)
    dem = burst_demod(spec, search=32)
    x = np.concatenate([np.zeros(10, np.complex64), x.astype(np.complex64)])[: dem.dem.samples_needed + 8]
    calls = []
    real = dem.dem.demodulate
    monkeypatch.setattr(dem.dem, "demodulate", lambda s, **kw: calls.append(1) or real(s, **kw))
    dem.handle(make_pdu({"offset": 1000}, x))
    assert dem.dropped == 0 and len(calls) == 1
    dem.handle(make_pdu({"offset": 1020}, x))  # 20 samples later: inside the first burst
    assert dem.dropped == 1 and len(calls) == 1
    dem.handle(make_pdu({"offset": 1000 + spec.n_symbols * spec.sps + 200}, x))  # after it: demodulated
    assert len(calls) == 2 and dem.dropped == 1


def test_stopping_receiver_never_leaves_the_capture_waiting():
    """GNU Radio calls a block's stop() only after its thread has ended, so a
    capture blocked on a full backlog inside work() must be released by the
    demodulator leaving (its stop), not by its own stop: otherwise wait()
    hangs when one work() call completes more bursts than the backlog holds."""
    import threading

    from gr_semcom.blocks.phy_blocks import Backlog

    rx = phy_rx(FrameSpec(modulation="qpsk", code_rate="1/2"))
    bl = rx.backlog
    assert rx.burst.backlog is bl and rx.demod.backlog is bl
    never = threading.Event()
    for _ in range(bl.max_pending):
        assert bl.acquire(never)
    got = []
    t = threading.Thread(target=lambda: got.append(bl.acquire(never)), daemon=True)
    t.start()
    t.join(0.3)
    assert t.is_alive()  # full: the producer waits (back-pressure)
    rx.demod.stop()  # the consumer's thread has ended
    t.join(2.0)
    assert not t.is_alive() and got == [False]
    assert not bl.acquire(never)  # and never waits again while closed
    rx.demod.start()  # a restart: empty and open, the old run's slots are gone
    assert bl.pending == 0 and bl.acquire(never) and bl.pending == 1
    b = Backlog(1)
    assert b.acquire(never)
    b.release()
    b.release()  # an extra release never makes the count negative
    assert b.pending == 0
