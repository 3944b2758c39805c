"""The GNU Radio chain end to end: phy_tx -> gr-channels -> phy_rx."""
import numpy as np
import pytest

from gr_semcom.phy.channel import ChannelSpec
from gr_semcom.phy.frame import FrameSpec
from gr_semcom.sim import run_link


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


def test_lost_frames_are_reported_as_erasures():
    """At an SNR where some frames fail, the PDU still comes out, marked."""
    data = _data(20000, 4)
    res = run_link(data, FrameSpec(modulation="16qam"), ChannelSpec(esn0_db=7.0), timeout=60)
    assert res.received is not None and len(res.received) == len(data)
    if not res.complete:
        assert res.missing
        for a, b in res.missing:
            assert 0 <= a < b <= len(data)
        good = np.ones(len(data), bool)
        for a, b in res.missing:
            good[a:b] = False
        assert np.array_equal(np.frombuffer(res.received, np.uint8)[good], np.frombuffer(data, np.uint8)[good])


def test_more_frames_than_the_old_stream_queue():
    """>256 bursts in one PDU: pdu_to_stream_c used to drop bursts past its queue depth."""
    spec = FrameSpec(modulation="qpsk", code_rate="1/4", codewords=2)
    data = np.random.default_rng(11).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    r = run_link(data, spec, ChannelSpec(esn0_db=10.0), timeout=60)
    assert r.frames_sent > 256
    assert r.complete and r.received == data, r.summary()
