"""OFDM mode: GNU Radio's OFDM transmitter blocks, our burst receiver."""
import numpy as np
import pytest

from gr_semcom.phy.ofdm import OfdmSpec

gr = pytest.importorskip("gnuradio.gr")


def test_sync_words_match_gnuradio_defaults():
    from gnuradio.digital import ofdm_txrx

    s = OfdmSpec()
    w1, w2 = s.sync_words()
    occ, pil = [list(s.occupied)], [list(s.pilots)]
    assert np.allclose(w1, ofdm_txrx._make_sync_word1(64, occ, pil))
    assert np.allclose(w2, ofdm_txrx._make_sync_word2(64, occ, pil))


def test_spec_sizes_and_limits():
    s = OfdmSpec(modulation="16qam", code_rate="1/2", codewords=4)
    assert s.padded_bits % 8 == 0 and s.padded_bits % 4 == 0
    assert s.payload_symbols * 4 == s.padded_bits
    with pytest.raises(ValueError):
        OfdmSpec(codewords=40)  # > 4095 payload bytes per packet_header_ofdm frame


@pytest.mark.parametrize("mod,chan_kw,snr", [
    ("qpsk", dict(model="awgn", cfo=0.3), 10.0),
    ("16qam", dict(model="awgn", cfo=-0.2), 16.0),
])
def test_ofdm_link_decodes_with_cfo(mod, chan_kw, snr):
    from gr_semcom.phy.channel import ChannelSpec
    from gr_semcom.link.sim import run_link

    data = np.random.default_rng(3).integers(0, 256, 6000, dtype=np.uint8).tobytes()
    r = run_link(data, OfdmSpec(modulation=mod), ChannelSpec(esn0_db=snr, **chan_kw), timeout=30)
    assert r.complete and r.received == data, r.summary()
    assert abs(r.mean_snr_db - snr) < 1.0


def test_ofdm_static_multipath_decodes():
    """Static 4-path channel (delays up to 12 samples < 16-sample CP) via channel_model taps."""
    from gnuradio import channels
    import pmt, time
    from gr_semcom.blocks.ofdm_hier import ofdm_phy_rx, ofdm_phy_tx
    from gr_semcom.blocks.pdu_util import make_pdu, pdu_parts
    from gr_semcom.link.sim import _collector

    spec = OfdmSpec()
    taps = np.zeros(13, complex)
    taps[[0, 3, 7, 12]] = [1.0, 0.6j, -0.4, 0.25]
    taps /= np.linalg.norm(taps)
    tb = gr.top_block()
    tx, rx = ofdm_phy_tx(spec), ofdm_phy_rx(spec)
    ch = channels.channel_model(noise_voltage=10 ** (-14 / 20), frequency_offset=0.1 / 64,
                                taps=taps.tolist(), noise_seed=5)
    out = _collector()
    tb.connect(tx, ch, rx)
    tb.msg_connect(rx, "out", out, "in")
    data = np.random.default_rng(4).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    tb.start()
    tx.framer._post(pmt.intern("in"), make_pdu({}, data))
    t0 = time.monotonic()
    while not out.items and time.monotonic() - t0 < 30:
        out.event.wait(0.05)
    tb.stop()
    tb.wait()
    assert out.items, "no PDU"
    meta, arr = pdu_parts(out.items[0])
    assert meta["complete"] and arr.tobytes() == data


def test_ofdm_demod_rejects_noise_and_bad_samples():
    from gr_semcom.phy.ofdm import OfdmBurstDemodulator

    spec = OfdmSpec()
    dem = OfdmBurstDemodulator(spec, search=64)
    rng = np.random.default_rng(0)
    n = dem.samples_needed + 10
    fa = 0
    for _ in range(50):
        x = (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(np.complex64)
        fa += dem.demodulate(x).ok
    assert fa == 0
    x[100] = np.nan
    assert dem.demodulate(x).reason == "non-finite samples"
    assert dem.demodulate(x[:100]).reason == "short burst"
