"""The receiver's worker threads (OrderedWorkers): results leave in the order
bursts arrived whatever order they finish in, nothing is lost or counted
twice, and a receiver on 1 or 2 workers decodes the same frames in the same
order."""
import random
import threading
import time

import numpy as np
import pmt
import pytest

gr = pytest.importorskip("gnuradio.gr")
from gnuradio import blocks, channels  # noqa: E402

from shared import wait_for  # noqa: E402
from gr_semcom.blocks.pdu_util import make_pdu  # noqa: E402
from gr_semcom.blocks.phy_blocks import OrderedWorkers, rx_workers  # noqa: E402
from gr_semcom.blocks.phy_hier import phy_rx, phy_tx  # noqa: E402
from gr_semcom.link.sim import _collector  # noqa: E402
from gr_semcom.phy import framing  # noqa: E402
from gr_semcom.phy.frame import FrameSpec  # noqa: E402
from gr_semcom.phy.ldpc import MinSumDecoder  # noqa: E402


def _wait(pred, timeout=20.0):
    return wait_for(pred, timeout)


def test_results_emitted_in_submission_order_with_random_finish_times():
    rng = random.Random(0)
    delays = [rng.uniform(0, 0.004) for _ in range(200)]
    out, lock_held = [], threading.Lock()

    def compute(i):
        time.sleep(delays[i])  # later items often finish first
        if i % 37 == 5:
            raise ValueError(f"bad item {i}")
        return i * i

    def emit(i, res):
        assert lock_held.acquire(blocking=False), "two emits at once"
        try:
            out.append((i, res))
        finally:
            lock_held.release()

    pool = OrderedWorkers(3, compute, emit, "test")
    pool.start()
    try:
        for i in range(200):
            pool.submit(i)
        assert _wait(lambda: pool.pending() == 0)
    finally:
        pool.stop()
    assert [i for i, _ in out] == list(range(200))
    for i, (ok, val) in out:
        if i % 37 == 5:
            assert not ok and isinstance(val, ValueError) and str(i) in str(val)
        else:
            assert ok and val == i * i


def test_stop_drops_queued_items_and_restart_starts_clean():
    gate = threading.Event()
    out = []
    pool = OrderedWorkers(1, lambda i: gate.wait(2) and i, lambda i, r: out.append(i), "test")
    pool.start()
    for i in range(5):
        pool.submit(i)
    gate.set()
    pool.stop()
    done_before = list(out)
    assert done_before == list(range(len(done_before)))  # a prefix, in order
    pool.start()
    for i in range(3):
        pool.submit(10 + i)
    assert _wait(lambda: pool.pending() == 0)
    pool.stop()
    assert out[len(done_before):] == [10, 11, 12]


def test_rx_workers_choice(monkeypatch):
    monkeypatch.setenv("GR_SEMCOM_RX_WORKERS", "3")
    assert rx_workers() == 3
    assert rx_workers(1) == 1
    monkeypatch.delenv("GR_SEMCOM_RX_WORKERS")
    assert rx_workers() == 1  # the default: one per stage (measured fastest on 2 cores)
    with pytest.raises(ValueError):
        rx_workers(0)


def test_ldpc_prepare_fast_path_still_replaces_non_finite():
    dec = MinSumDecoder.for_code(FrameSpec().code, 5)
    llr = np.full(dec.n, 3.0, np.float32)
    assert dec._prepare(llr) is not None and np.array_equal(dec._prepare(llr)[0], llr)
    bad = llr.copy()
    bad[[0, 1, 2]] = [np.nan, np.inf, -np.inf]
    got = dec._prepare(bad)[0]
    assert np.isfinite(got).all() and got[0] == 0 and got[1] > 1e29 and got[2] < -1e29
    big = np.full(dec.n, 3e38, np.float32)  # finite, but the sum overflows: exact path, unchanged
    assert np.array_equal(dec._prepare(big)[0], big)


@pytest.mark.parametrize("asynchronous", [True, False])
def test_receiver_with_the_cpp_decoder_thread_decodes_every_frame_in_order(asynchronous, monkeypatch):
    """The LDPC decode on the C++ decoder's own thread (GR_SEMCOM_RX_ASYNC_LDPC,
    the default on 2 CPUs or more) or in the demodulator's: the same frames in
    the same order, nothing left in flight."""
    monkeypatch.setenv("GR_SEMCOM_RX_ASYNC_LDPC", "1" if asynchronous else "0")
    spec = FrameSpec()
    data = np.random.default_rng(5).integers(0, 256, 20 * spec.capacity - 3, dtype=np.uint8).tobytes()
    order, received, rx = _receive(1, data, spec)
    assert rx.decoder.can_submit() == (asynchronous and MinSumDecoder.for_code(spec.code).kernels == "native")
    assert order == list(range(framing.frame_count(len(data), spec.capacity)))
    assert received == data
    assert rx.decoder.outstanding() == 0 and rx.in_flight() == 0


def _receive(workers: int, data: bytes, spec: FrameSpec):
    tb = gr.top_block()
    tx = phy_tx(spec)
    noise = channels.channel_model(10 ** (-12 / 20), 0.0, 1.0, [1.0], 7)
    rx = phy_rx(spec, timeout=0.0, workers=workers)
    st, out = _collector(), _collector()
    tb.connect(tx, noise, rx)
    tb.msg_connect(rx, "status", st, "in")
    tb.msg_connect(rx, "out", out, "in")
    assert rx.demod.workers == workers and rx.decoder.workers == workers
    tb.start()
    try:
        n = framing.frame_count(len(data), spec.capacity)
        tx.framer._post(pmt.intern("in"), make_pdu({}, data))
        assert _wait(lambda: rx.deframer.judged >= n), (rx.deframer.judged, n)
        rx.deframer.flush()
        assert _wait(lambda: len(out.items) >= 1)
        assert _wait(lambda: rx.in_flight() == 0)
    finally:
        tb.stop()
        tb.wait()
    frames = [pmt.to_python(m) for m in st.items]
    order = [f["seg_index"] for f in frames if f.get("event") == "frame" and f["crc_ok"]]
    received = bytes(pmt.u8vector_elements(pmt.cdr(out.items[0])))
    return order, received, rx


@pytest.mark.parametrize("workers,native", [(1, True), (2, True), (2, False)])
def test_receiver_on_workers_decodes_every_frame_in_order(workers, native, monkeypatch):
    """Also with the Python NaN guard and capture (GR_SEMCOM_NATIVE=0)."""
    monkeypatch.setenv("GR_SEMCOM_NATIVE", "1" if native else "0")
    spec = FrameSpec()
    data = np.random.default_rng(3).integers(0, 256, 12 * spec.capacity - 17, dtype=np.uint8).tobytes()
    order, received, _ = _receive(workers, data, spec)
    assert order == list(range(framing.frame_count(len(data), spec.capacity)))
    assert received == data


class _SlowDecoder:
    def __init__(self, dec, seconds):
        self.dec, self.seconds = dec, seconds

    def decode(self, llr):
        time.sleep(self.seconds)
        return self.dec.decode(llr)


@pytest.mark.parametrize("inline,frames_inline", [(True, True), (False, False), (True, False), (False, True)])
@pytest.mark.parametrize("workers", [1, 2])
def test_backpressure_covers_the_ldpc_stage(workers, inline, frames_inline, monkeypatch):
    """A decoder slower than the demodulator holds the capture back: the
    bursts inside the receiver never exceed the backlog (the decoder's
    message queue was unbounded), and every frame is still decoded. Both
    with the decoder's work run by the demodulator (the default) and with a
    message per burst to the decoder block (GR_SEMCOM_RX_INLINE_LDPC=0), and
    with the frame decoder called by the decoder block (the default) or sent
    a message per burst (GR_SEMCOM_RX_INLINE_FRAMES=0)."""
    monkeypatch.setenv("GR_SEMCOM_RX_INLINE_LDPC", "1" if inline else "0")
    monkeypatch.setenv("GR_SEMCOM_RX_INLINE_FRAMES", "1" if frames_inline else "0")
    spec = FrameSpec()
    data = np.random.default_rng(4).integers(0, 256, 30 * spec.capacity, dtype=np.uint8).tobytes()
    tb = gr.top_block()
    tx = phy_tx(spec)
    noise = channels.channel_model(10 ** (-12 / 20), 0.0, 1.0, [1.0], 7)
    rx = phy_rx(spec, timeout=0.0, workers=workers)
    assert (rx.demod.inline_decoder is rx.decoder) == inline
    assert (rx.decoder.inline_deframer is rx.deframer) == frames_inline
    rx.decoder.dec = _SlowDecoder(rx.decoder.dec, 0.02)
    assert rx.demod.release_downstream and rx.decoder.backlog is rx.backlog
    tb.connect(tx, noise, rx)
    worst = held = 0
    tb.start()
    try:
        n = framing.frame_count(len(data), spec.capacity)
        tx.framer._post(pmt.intern("in"), make_pdu({}, data))
        t0 = time.monotonic()
        while rx.deframer.judged < n and time.monotonic() - t0 < 60:
            worst = max(worst, rx.demod.passed - rx.decoder.frames - rx.decoder.rejected)
            held = max(held, rx.backlog.pending)
            time.sleep(0.005)
    finally:
        tb.stop()
        tb.wait()
    assert rx.deframer.frames_ok == n
    assert rx.decoder.frames == n
    assert worst <= rx.backlog.max_pending and held <= rx.backlog.max_pending
    # the slow decoder (20 ms a burst, bursts arrive every ~1 ms) filled the backlog
    assert held == rx.backlog.max_pending
    if not inline:
        assert worst >= 1  # bursts queued in front of the decoder block
