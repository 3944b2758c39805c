"""The GNU Radio chain end to end: phy_tx -> gr-channels -> phy_rx."""
import numpy as np
import pytest

from gr_semcom.phy.channel import ChannelSpec
from gr_semcom.phy.frame import FrameSpec
from gr_semcom.link.sim import run_link


def _data(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


@pytest.mark.parametrize("mod", ["bpsk", "qpsk"])
def test_decodes_at_10db_with_cfo_and_timing_offset(mod):
    data = _data(12000)
    res = run_link(data, FrameSpec(modulation=mod, code_rate="1/2"),
                   ChannelSpec(esn0_db=10, cfo=0.01, timing_offset=0.4, seed=1), timeout=60)
    assert res.complete and res.received == data
    assert res.frames_crc_fail == 0
    assert abs(res.mean_snr_db - 10) < 1.0


@pytest.mark.parametrize("rate", ["none", "1/4", "2/5"])
def test_all_code_rates_cross_the_chain(rate):
    data = _data(3000, 2)
    res = run_link(data, FrameSpec(modulation="qpsk", code_rate=rate), ChannelSpec(esn0_db=15), timeout=60)
    assert res.received == data


def test_largest_pdu_64kib():
    data = _data(64 * 1024 + 100, 3)
    res = run_link(data, FrameSpec(modulation="16qam"), ChannelSpec(esn0_db=20), timeout=120)
    assert res.complete and res.received == data


def test_measured_snr_matches_requested():
    res = run_link(_data(8000), FrameSpec(), ChannelSpec(esn0_db=6), timeout=60)
    assert abs(res.mean_snr_db - 6) < 0.5


def _check_erasures(res, data):
    """The received PDU holds the sent bytes wherever a frame came through and
    marks exactly the frames that did not as missing byte ranges."""
    per = FrameSpec(modulation="16qam").capacity - 18
    assert res.frames_ok + res.frames_crc_fail + res.frames_undetected == res.frames_sent
    assert res.frames_sent == len(res.frame_outcomes) == -(-len(data) // per)
    assert res.received is not None and len(res.received) == len(data)
    lost = [i for i, o in enumerate(res.frame_outcomes) if o != "ok"]
    assert res.lost_segments == lost
    want = []
    for i in lost:  # contiguous lost frames merge into one range
        a, b = i * per, min((i + 1) * per, len(data))
        if want and want[-1][1] == a:
            want[-1] = (want[-1][0], b)
        else:
            want.append((a, b))
    assert res.missing == want
    assert res.complete == (not lost)
    good = np.ones(len(data), bool)
    for a, b in res.missing:
        good[a:b] = False
    got, sent = np.frombuffer(res.received, np.uint8), np.frombuffer(data, np.uint8)
    assert np.array_equal(got[good], sent[good])
    assert not got[~good].any()  # holes are zero-filled, never stale bytes


def test_lost_frames_are_reported_as_erasures():
    """16QAM at 7 dB: about half the frames fail; the PDU still comes out with
    exactly those frames' bytes marked missing, and every frame is accounted
    for (at 7 dB every burst is detected, so failures are CRC failures)."""
    data = _data(20000, 4)
    res = run_link(data, FrameSpec(modulation="16qam"), ChannelSpec(esn0_db=7.0))
    assert res.drained, res.stop_reason
    assert 0 < res.frames_ok < res.frames_sent and res.frames_undetected == 0, res.summary()
    _check_erasures(res, data)


def test_every_frame_is_accounted_for_on_a_loaded_machine():
    """The same 16QAM 7 dB link with a CPU burner on every core: the runner
    waits for the loaded receiver instead of calling frames still being
    decoded lost, so the outcome equals the unloaded one frame by frame."""
    import os
    import subprocess
    import sys

    data = _data(20000, 4)
    spec, chan = FrameSpec(modulation="16qam"), ChannelSpec(esn0_db=7.0)
    quiet = run_link(data, spec, chan)
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
               for _ in range(2 * (os.cpu_count() or 2))]
    try:
        loaded = run_link(data, spec, chan)
    finally:
        for p in burners:
            p.kill()
            p.wait()
    assert loaded.drained, loaded.stop_reason
    assert loaded.frames_ok + loaded.frames_crc_fail + loaded.frames_undetected == loaded.frames_sent == 47
    assert loaded.frame_outcomes == quiet.frame_outcomes  # the channel is seeded: same noise, same frames
    assert loaded.received == quiet.received
    _check_erasures(loaded, data)


def test_more_frames_than_the_old_stream_queue():
    """>256 bursts in one PDU: pdu_to_stream_c used to drop bursts past its queue depth."""
    spec = FrameSpec(modulation="qpsk", code_rate="1/4", codewords=2)
    data = np.random.default_rng(11).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    r = run_link(data, spec, ChannelSpec(esn0_db=10.0), timeout=60)
    assert r.frames_sent > 256
    assert r.complete and r.received == data, r.summary()
