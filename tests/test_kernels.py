"""The compiled receiver kernels (gr_semcom/phy/kernels.py) against the numpy
reference they replace, on the same inputs."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from gr_semcom.phy import kernels
from shared import allzero_llrs
from gr_semcom.phy.fec import get_code, read_alist
from gr_semcom.phy.frame import BurstDemodulator, FrameSpec, simulated_burst
from gr_semcom.phy.ldpc import MinSumDecoder

pytestmark = pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba not installed")


@pytest.mark.parametrize("method", ["spa", "minsum"])
@pytest.mark.parametrize("rate,esn0", [("1/4", -1.5), ("2/5", 0.0), ("1/2", 1.5), ("1/2", 5.0)])
def test_ldpc_kernel_equals_numpy_reference(rate, esn0, method):
    """Hard bits, parity flags and iteration counts identical to the numpy
    decoder, codeword for codeword (near threshold, so many iterate long and
    some fail; at 5 dB most stop after 0-2 iterations)."""
    code = get_code(rate)
    dec = MinSumDecoder(read_alist(code.alist), 50, 0.8 if method == "minsum" else 1.0, method, kernels="numba")
    L = allzero_llrs(code, esn0, 40, np.random.default_rng(11))
    h1, ok1, it1 = dec.decode_numpy(L)
    h2, ok2, it2 = dec.decode_numba(L)
    assert h2.dtype == np.uint8 and h2.shape == (40, code.n)
    np.testing.assert_array_equal(ok2, ok1)
    np.testing.assert_array_equal(it2, it1)
    np.testing.assert_array_equal(h2, h1)
    if esn0 < 3:
        assert 0.02 < 1 - ok1.mean() < 0.98, "not near threshold: the comparison would be trivial"
        assert it1.max() == 50
    else:
        assert ok1.all() and it1.max() <= 5
    # the decoded codewords are the sent (all-zero) one where the checks hold
    assert (h2[ok2] == 0).mean() > 0.99
    assert dec.decode(L)[0].tobytes() == h2.tobytes()  # decode() uses the kernel


def test_ldpc_kernel_bad_input_and_backend_switch(monkeypatch):
    code = get_code("1/2")
    dec = MinSumDecoder(read_alist(code.alist), method="spa", kernels="numba")
    with pytest.raises(ValueError):
        dec.decode_numba(np.zeros(code.n + 1, np.float32))
    monkeypatch.setenv("GR_SEMCOM_KERNELS", "numpy")
    assert kernels.backend() == "numpy"
    assert MinSumDecoder(read_alist(code.alist)).kernels == "numpy"
    assert BurstDemodulator(FrameSpec()).kernels == "numpy"
    monkeypatch.setenv("GR_SEMCOM_KERNELS", "fortran")
    with pytest.raises(ValueError, match="GR_SEMCOM_KERNELS"):
        kernels.backend()
    monkeypatch.delenv("GR_SEMCOM_KERNELS")
    assert kernels.backend() == "numba" and kernels.backend("numpy") == "numpy"


def _burst(spec, dem, rng, esn0, cfo, delay, lead):
    x = simulated_burst(spec, rng.integers(0, 2, spec.coded_bits).astype(np.uint8), esn0, cfo, delay, rng)
    x = np.concatenate([np.zeros(lead, np.complex64), x.astype(np.complex64)])
    n = dem.samples_needed + 8
    return np.concatenate([x, np.zeros(max(0, n - x.size), np.complex64)])[:n]


@pytest.mark.parametrize("mod", ["bpsk", "qpsk", "16qam", "64qam"])
def test_burst_demod_kernels_match_numpy_reference(mod):
    """Timing, CFO, SNR estimate and LLRs of the compiled demodulator equal
    the numpy reference's to float32 rounding, over CFOs and timing offsets."""
    spec = FrameSpec(modulation=mod, code_rate="1/2")
    dem = BurstDemodulator(spec, search=32, kernels="numba")
    rng = np.random.default_rng(5)
    for k, (cfo, delay, lead) in enumerate([(0.0, 0.0, 0), (0.004, 0.3, 3), (-0.008, 0.7, 7), (0.01, 0.45, 12)]):
        x = _burst(spec, dem, rng, 12.0 + 2 * k, cfo, delay, lead)
        a, b = dem.demodulate_numpy(x), dem.demodulate_numba(x)
        assert a.ok and b.ok, (a.reason, b.reason)
        assert abs(a.timing - b.timing) < 1e-6 and abs(a.cfo - b.cfo) < 1e-9
        assert abs(a.cfo - cfo) < 2e-3  # and both are right
        assert abs(a.snr_db - b.snr_db) < 1e-3
        assert b.llr.dtype == np.float32 and b.llr.shape == a.llr.shape == (spec.coded_bits,)
        scale = np.abs(a.llr).max()
        assert np.abs(a.llr - b.llr).max() < 1e-4 * scale
        assert np.abs(a.symbols - b.symbols).max() < 1e-4


def test_burst_demod_kernels_match_at_four_samples_per_symbol_and_at_the_edges():
    """sps 4, and bursts whose preamble starts at the first sample or whose
    last samples are cut off (zeros in both): the same decisions and values."""
    spec = FrameSpec(modulation="qpsk", code_rate="1/2", sps=4)
    dem = BurstDemodulator(spec, search=32, kernels="numba")
    rng = np.random.default_rng(8)
    for cfo, delay, lead, cut in [(0.003, 0.2, 0, 0), (-0.005, 0.6, 4, 0), (0.0, 0.9, 2, 300)]:
        x = _burst(spec, dem, rng, 14.0, cfo, delay, lead)
        if cut:
            x[-cut:] = 0
        a, b = dem.demodulate_numpy(x), dem.demodulate_numba(x)
        assert a.ok and b.ok, (cfo, lead, a.reason, b.reason)
        assert abs(a.timing - b.timing) < 1e-6 and abs(a.cfo - b.cfo) < 1e-9
        scale = np.abs(a.llr).max()
        assert np.abs(a.llr - b.llr).max() < 1e-4 * scale


def test_interp_phases_equals_the_reference_interpolator():
    """kernels.interp_phases (the demodulator's polyphase FIR) against
    frame._interp_at for steps 1-5, positions before the first sample and
    past the last (zeros there)."""
    from gr_semcom.phy.frame import _interp_at, _interp_taps

    rng = np.random.default_rng(9)
    x = (rng.standard_normal(300) + 1j * rng.standard_normal(300)).astype(np.complex64)
    for t0, step, count in [(0.3, 2, 100), (-5.7, 1, 40), (-20.2, 3, 60), (250.5, 4, 30), (10.0, 5, 70),
                            (290.1, 1, 20)]:
        first, h = _interp_taps(t0)
        got = kernels.interp_phases(x, first, step, count, np.ascontiguousarray(h.real))
        want = _interp_at(x, t0, step, count)
        assert np.abs(got - want).max() < 1e-5 * np.abs(x).max(), (t0, step)


@pytest.mark.parametrize("esn0,min_agree", [(-5.0, 0.99), (10.0, 1.0)])
def test_cfo_search_agrees_with_the_fft_periodogram(esn0, min_agree):
    """kernels.sc_cfo (coarse bins, then the main lobe around the best)
    against the 2048-point FFT periodogram of the reference, on 600
    preambles with CFOs across the whole +-0.5 cycles/symbol: the same
    estimate for nearly all at the demodulator's SNR floor, for all above it."""
    from gr_semcom.phy.frame import CFO_NFFT, PREAMBLE, PREAMBLE_LEN

    dem = BurstDemodulator(FrameSpec(), search=32, kernels="numba")
    rng = np.random.default_rng(10)
    k = np.arange(PREAMBLE_LEN)
    agree = 0
    for _ in range(600):
        f = rng.uniform(-0.5, 0.5)
        nv = 10 ** (-esn0 / 10)
        r = (PREAMBLE * np.exp(2j * np.pi * (f * k + rng.uniform())) + np.sqrt(nv / 2) * (
            rng.standard_normal(PREAMBLE_LEN) + 1j * rng.standard_normal(PREAMBLE_LEN))).astype(np.complex64)
        got = kernels.sc_cfo(r, dem._conj_pre, dem._twiddle, CFO_NFFT // 128)
        want = dem._cfo(r * dem._conj_pre)
        agree += abs(got - want) < 1e-9
    assert agree / 600 >= min_agree


def test_burst_demod_kernels_reject_like_the_reference():
    spec = FrameSpec(modulation="qpsk", code_rate="1/2")
    dem = BurstDemodulator(spec, search=32, kernels="numba")
    rng = np.random.default_rng(2)
    n = dem.samples_needed + 8
    noise = ((rng.standard_normal(n) + 1j * rng.standard_normal(n)) / np.sqrt(2)).astype(np.complex64)
    for x in (noise, noise[: n - 20]):
        a, b = dem.demodulate_numpy(x), dem.demodulate_numba(x)
        assert not a.ok and not b.ok and a.reason == b.reason
    x = _burst(spec, dem, rng, 10.0, 0.0, 0.0, 3)
    x[100] = np.nan
    a, b = dem.demodulate_numpy(x), dem.demodulate_numba(x)
    assert not a.ok and not b.ok and a.reason == b.reason == "non-finite samples"


def test_copy_finite_and_first_use_log(caplog):
    x = np.arange(10, dtype=np.float32).astype(np.complex64) * (1 + 1j)
    x[[2, 7]] = [np.nan, complex(1.0, np.inf)]
    y = np.empty_like(x)
    assert kernels.copy_finite(x, y) == 2
    ref = x.copy()
    ref[[2, 7]] = 0
    np.testing.assert_array_equal(y, ref)
    with caplog.at_level(logging.INFO, logger="gr_semcom.phy.kernels"):
        assert kernels.first_use("test_kernel_once", lambda a: a + 1, 1) == 2
        assert kernels.first_use("test_kernel_once", lambda a: a + 1, 2) == 3
    lines = [r.getMessage() for r in caplog.records if "test_kernel_once" in r.getMessage()]
    assert len(lines) == 1 and "compiled at first use" in lines[0]


def test_local_pdus_round_trip():
    pmt = pytest.importorskip("pmt")
    from gr_semcom.blocks.pdu_util import make_pdu
    from gr_semcom.blocks.phy_blocks import LocalPdus

    reg = LocalPdus()
    arr = np.arange(5, dtype=np.float32)
    m1, m2 = reg.wrap({"offset": 3}, arr), reg.wrap({"offset": 4}, arr * 2)
    assert len(reg) == 2 and pmt.length(pmt.cdr(m1)) == 0
    meta, got = reg.parts(m2)
    assert meta == {"offset": 4} and np.array_equal(got, arr * 2)
    assert reg.parts(m1)[0] == {"offset": 3} and len(reg) == 0
    with pytest.raises(ValueError):
        reg.parts(m1)  # taken already
    meta, got = reg.parts(make_pdu({"a": 1}, arr))  # an ordinary PDU passes through
    assert meta == {"a": 1} and np.array_equal(got, arr)


def test_ofdm_timing_metric_kernel_matches_reference():
    from gr_semcom.phy.ofdm import OfdmBurstDemodulator, OfdmSpec

    spec = OfdmSpec(modulation="16qam", code_rate="1/2")
    dem = OfdmBurstDemodulator(spec, search=192, kernels="numba")
    rng = np.random.default_rng(4)
    n = dem.samples_needed
    x = ((rng.standard_normal(n) + 1j * rng.standard_normal(n)) / np.sqrt(2)).astype(np.complex64)
    # a sync pair planted at 77 (body of symbol 1, then symbol 2 one symbol later)
    L = spec.fft_len + spec.cp_len
    x[77:77 + spec.fft_len] += 3 * dem.s1
    x[77 + L:77 + L + spec.fft_len] += 3 * dem.s2
    starts = np.arange(dem.BACKOFF, dem.search + 1)
    ref = dem._metric(x, starts)
    got, bad = kernels.ofdm_metric(x, dem.BACKOFF, dem.search, dem._conj_s1, dem._conj_s2, L)
    assert bad == 0 and got.shape == ref.shape
    assert np.abs(got - ref).max() < 1e-5 * ref.max()
    assert starts[np.argmax(got)] == starts[np.argmax(ref)] == 77
    x[500] = np.inf
    assert kernels.ofdm_metric(x, dem.BACKOFF, dem.search, dem._conj_s1, dem._conj_s2, L)[1] == 1
    assert dem.demodulate(x).reason == "non-finite samples"


@pytest.mark.parametrize("mod", ["bpsk", "qpsk", "16qam", "64qam"])
def test_ofdm_equalizer_kernel_matches_reference(mod):
    """OfdmSpec.equalize_numba against the numpy equalize on a synthetic
    payload grid: a 3-tap channel, a residual CFO ramp across the symbols,
    AWGN, and a noisy sync-symbol channel estimate. Symbols, gains, N0 and
    the LLRs agree to float32 rounding; with the decisions the same."""
    from gr_semcom.phy.ofdm import OfdmSpec

    spec = OfdmSpec(modulation=mod, code_rate="1/2")
    n, nsym = spec.fft_len, spec.ofdm_symbols - 3
    rng = np.random.default_rng(5)
    taps = np.array([1.0, 0.35 - 0.2j, 0.1j])
    H = np.fft.fftshift(np.fft.fft(taps, n)).astype(np.complex64)
    occ = np.array(spec.occupied) + n // 2
    pil = np.array(spec.pilots) + n // 2
    pts = spec.constellation.points.astype(np.complex64)
    X = np.zeros((nsym, n), np.complex64)
    X[:, occ] = pts[rng.integers(0, pts.size, (nsym, occ.size))]
    X[:, pil] = spec.pilot_values(nsym)
    ramp = np.exp(1j * (0.02 * np.arange(nsym) + 0.3))[:, None]
    noise = 0.08 * (rng.standard_normal((nsym, n)) + 1j * rng.standard_normal((nsym, n)))
    grid = (X * H[None, :] * ramp + noise).astype(np.complex64)
    h_est = (H + 0.05 * (rng.standard_normal(n) + 1j * rng.standard_normal(n))).astype(np.complex64)
    y1, g1, n01, _ = spec.equalize(grid, h_est)
    y2, g2, n02 = spec.equalize_numba(grid, h_est)
    assert y2.dtype == np.complex64 and g2.dtype == np.float32 and y2.shape == y1.shape
    np.testing.assert_allclose(y2, y1, rtol=0, atol=2e-5 * np.abs(y1).max())
    np.testing.assert_allclose(g2, g1, rtol=2e-5)
    assert abs(n02 - n01) < 1e-4 * n01
    l1, s1, _ = spec.soft_demap(grid, h_est, kernels="numpy")
    l2, s2, _ = spec.soft_demap(grid, h_est, kernels="numba")
    assert abs(s1 - s2) < 1e-3
    np.testing.assert_allclose(l2, l1, rtol=0, atol=1e-4 * np.abs(l1).max())
    assert (np.sign(l1) == np.sign(l2)).mean() > 0.9999
    # the equaliser found the sent symbols (well above the decision threshold)
    ser = np.mean(np.abs(spec.constellation.nearest(y2) - X[:, occ].ravel()) > 1e-3)
    assert ser < {"bpsk": 1e-3, "qpsk": 1e-3, "16qam": 0.03, "64qam": 0.3}[mod], ser
    # without a channel estimate: flat start
    y3, _, _ = spec.equalize_numba(grid, None)
    y4, _, _, _ = spec.equalize(grid, None)
    np.testing.assert_allclose(y3, y4, rtol=0, atol=2e-5 * np.abs(y4).max())
