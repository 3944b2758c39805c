"""The compiled receiver blocks (gr_semcom/blocks/native/semcom_native.cc)
against their Python references: the same samples out of the NaN guard, the
same bursts cut at the same tags by the capture, the same back-pressure; and
a receiver on either set decodes the same frames. The set-up builds the
module (scripts/build_native.sh), so a missing module fails here."""
import os
import threading

import numpy as np
import pmt
import pytest

gr = pytest.importorskip("gnuradio.gr")
from gnuradio import blocks  # noqa: E402

from gr_semcom.blocks import phy_blocks  # noqa: E402
from gr_semcom.blocks.phy_blocks import (Backlog, LocalPdus, burst_capture, make_burst_capture,  # noqa: E402
                                         native_blocks, sanitize_cc)
from gr_semcom.link.sim import _collector  # noqa: E402

native = phy_blocks._native


def test_the_module_is_built():
    assert native is not None, "gr_semcom/blocks/_native is not built: bash scripts/build_native.sh"
    assert native_blocks() or os.environ.get("GR_SEMCOM_NATIVE") == "0"


def _signal(n=200_000, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(np.complex64)
    x[1000:1050] = np.nan
    x[5000] = np.inf
    x[5001] = complex(-np.inf, 1.0)
    x[7000] = complex(2.0, np.nan)
    x[150_000:150_010] = complex(np.nan, np.nan)
    return x


def _through(block, x, port, tags=()):
    tb = gr.top_block()
    src = blocks.vector_source_c(x.tolist(), False, 1, list(tags))
    st = _collector()
    tb.msg_connect(block, port, st, "in")
    if port == "status":
        snk = blocks.vector_sink_c()
        tb.connect(src, block, snk)
        tb.run()
        return np.array(snk.data(), np.complex64), st
    tb.connect(src, block)
    tb.run()
    return None, st


@pytest.mark.skipif(native is None, reason="module not built (test_the_module_is_built fails)")
def test_nan_guard_equals_the_python_reference():
    x = _signal()
    y_c, st_c = _through(native.nan_guard_cc(), x, "status")
    py = sanitize_cc()
    y_p, st_p = _through(py, x, "status")
    ref = x.copy()
    ref[~np.isfinite(x)] = 0
    assert np.array_equal(y_c, ref) and np.array_equal(y_p, ref)
    ev_c = [pmt.to_python(m) for m in st_c.items]
    ev_p = [pmt.to_python(m) for m in st_p.items]
    # one report per work() call that met a non-finite sample, with the running count
    assert ev_c and ev_p and ev_c[-1]["samples"] == ev_p[-1]["samples"] == int((~np.isfinite(x)).sum())
    assert all(e["event"] == "non_finite" for e in ev_c)


def _tags(offsets, key="corr_start"):
    out = []
    for off in offsets:
        t = gr.tag_t()
        t.offset, t.key, t.value = int(off), pmt.intern(key), pmt.PMT_T
        out.append(t)
    return out


def _bursts(cap, local, st):
    got = []
    for m in st.items:
        meta, arr = local.parts(m)
        got.append((meta["offset"], np.asarray(arr).copy()))
    return got


@pytest.mark.skipif(native is None, reason="module not built (test_the_module_is_built fails)")
def test_burst_capture_cuts_the_same_bursts_as_the_python_reference():
    x = _signal(60_000, seed=1)
    x[~np.isfinite(x)] = 0
    # overlapping captures, tags within min_gap of the last one taken (410,
    # 9016: skipped; 9017 is 17 after 9000: taken), a tag too close to the
    # start for its lead, one near the end whose burst never completes
    offsets = [5, 400, 410, 2000, 2600, 9000, 9016, 9017, 30_000, 59_500]
    length, lead, gap = 3000, 16, 16
    cap_c = native.burst_capture_c(length, lead, "corr_start", 64, gap, 100)
    local_c = phy_blocks.NativeBursts(cap_c)
    _, st_c = _through(cap_c, x, "pdus", _tags(offsets))
    cap_p = burst_capture(length, lead=lead, min_gap=gap)
    cap_p.local, cap_p.backlog = LocalPdus(), Backlog(100)
    _, st_p = _through(cap_p, x, "pdus", _tags(offsets))
    b_c, b_p = _bursts(cap_c, local_c, st_c), _bursts(cap_p, cap_p.local, st_p)
    assert [o for o, _ in b_c] == [o for o, _ in b_p] == [o - lead for o in offsets if o not in (410, 9016, 59_500)]
    for (oc, ac), (op, ap) in zip(b_c, b_p):
        assert ac.dtype == np.complex64 and np.array_equal(ac, ap) and ac.size == length
        lo = max(oc, 0)
        # a burst whose lead reaches before the stream's first sample starts with the history's zeros
        assert np.array_equal(ac[lo - oc:], x[lo:oc + length])
    assert cap_c.skipped == cap_p.skipped == 2 and cap_c.published == cap_p.published == len(b_c)
    assert cap_c.held() == 0  # every burst handed over
    with pytest.raises(ValueError):
        local_c.parts(st_c.items[0])  # taken once only


def _lagged(x, delay, offsets):
    """x delayed by ``delay`` (a correlator's output lags its input so), with
    tags at ``offsets``."""
    return blocks.vector_source_c(np.concatenate([np.zeros(delay, np.complex64), x[:-delay]]).tolist(), False,
                                  1, _tags(offsets))


def _two_input_capture(cap, x, offsets, delay):
    """Samples x on input 0; tags at ``offsets`` on a stream that lags x by
    ``delay`` (input 1)."""
    tb = gr.top_block()
    src = blocks.vector_source_c(x.tolist(), False)
    lagged = _lagged(x, delay, offsets)
    st = _collector()
    tb.msg_connect(cap, "pdus", st, "in")
    tb.connect(src, (cap, 0))
    tb.connect(lagged, (cap, 1))
    tb.run()
    return st


@pytest.mark.skipif(native is None, reason="module not built (test_the_module_is_built fails)")
@pytest.mark.parametrize("compiled", [True, False])
def test_two_input_capture_equals_delay_and_tag_share_in_front(compiled):
    """tag_delay > 0 (the receivers' wiring since 2026-12-07: samples from
    the matched filter, tags from the correlator): the same bursts at the
    same offsets as GNU Radio's delay + tag_share in front of a one-input
    capture, the C++ capture and the Python reference alike."""
    x = _signal(40_000, seed=2)
    x[~np.isfinite(x)] = 0
    delay, length, lead, gap = 128, 3000, 16, 16
    offsets = [5, 140, 400, 410, 2000, 9000, 9017, 20_000, 39_900]

    def make(tag_delay):
        if compiled:
            c = native.burst_capture_c(length, lead, "corr_start", 64, gap, 100, tag_delay)
            return c, phy_blocks.NativeBursts(c)
        c = burst_capture(length, lead=lead, min_gap=gap, tag_delay=tag_delay)
        c.local, c.backlog = LocalPdus(), Backlog(100)
        return c, c.local

    # reference: x delayed by a GNU Radio delay block, the lagged stream's tags moved onto it by tag_share
    ref, ref_local = make(0)
    tb = gr.top_block()
    src = blocks.vector_source_c(x.tolist(), False)
    lagged = _lagged(x, delay, offsets)
    dl = blocks.delay(gr.sizeof_gr_complex, delay)
    share = blocks.tag_share(gr.sizeof_gr_complex, gr.sizeof_gr_complex)
    st_r = _collector()
    tb.msg_connect(ref, "pdus", st_r, "in")
    tb.connect(src, dl, (share, 0))
    tb.connect(lagged, (share, 1))
    tb.connect(share, ref)
    tb.run()
    cap, local = make(delay)
    assert cap.tag_delay == delay
    st = _two_input_capture(cap, x, offsets, delay)
    b_r, b_2 = _bursts(ref, ref_local, st_r), _bursts(cap, local, st)
    assert len(b_r) == 7  # 410 within min_gap of 400 (9017 is 17 after 9000: taken); 39_900's never completes
    assert [o for o, _ in b_2] == [o for o, _ in b_r] == [o - lead for o in offsets if o not in (410, 39_900)]
    for (o2, a2), (_, ar) in zip(b_2, b_r):
        assert np.array_equal(a2, ar)
        lo = max(o2, delay)  # the delayed stream: x[k - delay], zeros before
        assert np.array_equal(a2[lo - o2:], x[lo - delay:o2 + length - delay])
    assert cap.published == ref.published == 7
    with pytest.raises(ValueError):
        (native.burst_capture_c(10, 0, "corr_start", 64, 0, 8, -1) if compiled
         else burst_capture(10, tag_delay=-1))


@pytest.mark.skipif(native is None, reason="module not built (test_the_module_is_built fails)")
def test_native_backlog_waits_and_stops_like_the_python_one():
    cap, bl, _ = make_burst_capture(100, max_pending=2)
    assert isinstance(bl, phy_blocks.NativeBacklog) and bl.max_pending == 2
    never = threading.Event()
    assert bl.acquire(never) and bl.acquire(never) and bl.pending == 2
    got = []
    t = threading.Thread(target=lambda: got.append(bl.acquire(never)), daemon=True)
    t.start()
    t.join(0.3)
    assert t.is_alive()  # full: waits
    bl.release()
    t.join(2.0)
    assert got == [True] and bl.pending == 2
    stop = threading.Event()
    t = threading.Thread(target=lambda: got.append(bl.acquire(stop)), daemon=True)
    t.start()
    bl.close()  # the consumer left: nobody waits
    t.join(2.0)
    assert got == [True, False] and not bl.acquire(never)
    bl.reopen()
    assert bl.pending == 0 and bl.acquire(never)
    bl.release()
    bl.release()
    assert bl.pending == 0


def test_fallback_builds_the_python_blocks(monkeypatch):
    monkeypatch.setenv("GR_SEMCOM_NATIVE", "0")
    cap, bl, local = make_burst_capture(100)
    assert isinstance(cap, burst_capture) and isinstance(bl, Backlog) and isinstance(local, LocalPdus)
    assert isinstance(phy_blocks.make_sanitize(), sanitize_cc)
    from gr_semcom.blocks.phy_hier import preamble_detector, sync_waveform
    from gr_semcom.phy.frame import FrameSpec

    det = preamble_detector(sync_waveform(FrameSpec()), 2)
    assert not det.fused and len(det.stream_blocks()) == 7  # GNU Radio's blocks


def _detector_run(x, fused, tags=(), key="corr_start"):
    """x (with ``tags``) through a preamble detector: (detector, samples out,
    sorted (offset, key) of the output tags with ``key``)."""
    from gr_semcom.blocks.phy_hier import preamble_detector, sync_waveform
    from gr_semcom.phy.frame import FrameSpec

    spec = FrameSpec()
    tb = gr.top_block()
    src = blocks.vector_source_c(x.tolist(), False, 1, list(tags))
    det = preamble_detector(sync_waveform(spec), spec.sps, 0.3, fused=fused)
    snk = blocks.vector_sink_c()
    tb.connect(src, det, snk)
    tb.run()
    got = sorted((t.offset, pmt.symbol_to_string(t.key)) for t in snk.tags()
                 if pmt.symbol_to_string(t.key) == key)
    return det, np.array(snk.data(), np.complex64), got


@pytest.mark.skipif(native is None, reason="module not built (test_the_module_is_built fails)")
def test_fused_preamble_detector_equals_gnu_radios_chain():
    """rms_normalize_cc + tag_align_cc against rms_cf, add_const_ff,
    float_to_complex, divide_cc, delay and tag_share: bursts at gains from
    0.1 to 5 between noise and silence (an all-zero stretch: 0 / eps, no
    NaN); the same samples out (the input, delayed by the correlator's
    delay) and a corr_start tag at the same offset for every burst."""
    from gr_semcom.phy.frame import FrameSpec, simulated_burst

    spec = FrameSpec()
    rng = np.random.default_rng(3)
    parts, starts = [], []
    for k, gain in enumerate((0.1, 1.0, 5.0, 0.3)):
        parts.append((0.02 * (rng.standard_normal(4000) + 1j * rng.standard_normal(4000))).astype(np.complex64))
        if k == 2:
            parts.append(np.zeros(3000, np.complex64))
        starts.append(sum(p.size for p in parts))
        b = simulated_burst(spec, rng.integers(0, 2, spec.coded_bits).astype(np.uint8), 10.0, 0.001, 0.4, rng)
        parts.append((gain * b).astype(np.complex64))
    parts.append(np.zeros(6000, np.complex64))
    x = np.concatenate(parts)
    ref, y0, t0 = _detector_run(x, fused=False)
    det, y1, t1 = _detector_run(x, fused=True)
    assert det.fused and len(det.stream_blocks()) == 3 and not ref.fused
    d = det.delay_samples
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_array_equal(y1[d:], x[:y1.size - d])  # the input, delayed; zeros first
    assert not y1[:d].any()
    assert t1 == t0
    for s in starts:  # every burst found within a few samples of its preamble (tags on the delayed stream)
        assert any(abs(off - d - s) <= 2 * spec.sps + spec.rrc.size for off, _ in t1), s
    # a tag of the input stream (a radio's rx_time) comes out once, moved by the delay
    t = gr.tag_t()
    t.offset, t.key, t.value = 1000, pmt.intern("rx_time"), pmt.from_double(1.5)
    assert _detector_run(x[:20_000], True, [t], key="rx_time")[2] == [(1000 + d, "rx_time")]


@pytest.mark.skipif(native is None, reason="module not built (test_the_module_is_built fails)")
def test_rms_normalize_matches_the_chain_arithmetic():
    """x / (sqrt(single-pole average of |x|^2) + eps), alpha as rms_cf's,
    computed here in numpy (float64 average, float32 output)."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(5000) + 1j * rng.standard_normal(5000)).astype(np.complex64) * 3
    x[2000:2500] = 0
    alpha = 1 / 64
    tb = gr.top_block()
    src = blocks.vector_source_c(x.tolist(), False)
    blk = native.rms_normalize_cc(alpha)
    snk = blocks.vector_sink_c()
    tb.connect(src, blk, snk)
    tb.run()
    y = np.array(snk.data(), np.complex64)
    p = (x.real.astype(np.float32) ** 2 + x.imag.astype(np.float32) ** 2).astype(np.float64)
    avg, want = 0.0, np.empty_like(x)
    for i in range(x.size):
        avg = (1 - alpha) * avg + alpha * p[i]
        r = np.float32(np.sqrt(avg)) + np.float32(1e-12)
        want[i] = x[i] / r
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)
    assert np.isfinite(y).all()
    # and against GNU Radio's own blocks (divide_cc divides by r + 0j: 1 ulp)
    tb = gr.top_block()
    src = blocks.vector_source_c(x.tolist(), False)
    rms, floor, f2c, div = (blocks.rms_cf(alpha), blocks.add_const_ff(1e-12), blocks.float_to_complex(),
                            blocks.divide_cc())
    snk = blocks.vector_sink_c()
    tb.connect(src, (div, 0))
    tb.connect(src, rms, floor, f2c, (div, 1))
    tb.connect(div, snk)
    tb.run()
    np.testing.assert_allclose(y, np.array(snk.data(), np.complex64), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError):
        native.rms_normalize_cc(0.0)
    with pytest.raises(ValueError):
        native.tag_align_cc(-1)
