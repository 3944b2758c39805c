"""The compiled C++ LDPC decoder (gr_semcom/phy/native/ldpc_native.cc) against
the numpy reference it must agree with, on the same LLRs. Its phi is glibc's
vectorised tanhf/logf, not numpy's, so the comparison is on decisions:
parity flags, iteration counts and hard bits. The set-up builds the module
(scripts/build_native.sh), so a missing module fails here."""
from __future__ import annotations

import os

import numpy as np
import pytest

from gr_semcom.phy import kernels
from gr_semcom.phy.fec import get_code, read_alist
from gr_semcom.phy.ldpc import MinSumDecoder, ldpc_kernels
from shared import allzero_llrs

native = kernels.native_ldpc()
needs_native = pytest.mark.skipif(native is None and os.environ.get("GR_SEMCOM_NATIVE") == "0",
                                  reason="compiled parts switched off (GR_SEMCOM_NATIVE=0)")


def test_the_module_is_built():
    if os.environ.get("GR_SEMCOM_NATIVE") == "0":
        assert kernels.native_ldpc() is None and ldpc_kernels() != "native"
        return
    assert native is not None, "gr_semcom/phy/_ldpc_native is not built: bash scripts/build_native.sh"
    assert ldpc_kernels() == "native"
    assert MinSumDecoder.for_code(get_code("1/2")).kernels == "native"


def test_loading_it_leaves_subnormal_floats_alone():
    """A module linked with -ffast-math would switch the whole process to
    flush-to-zero when it loads (crtfastmath.o); the build compiles with it
    and links without it."""
    tiny = np.array([1e-39], np.float32)  # a float32 subnormal
    assert (tiny * np.float32(0.5))[0] > 0
    assert np.float64(5e-324) * 1.0 > 0


@needs_native
@pytest.mark.parametrize("method", ["spa", "minsum"])
@pytest.mark.parametrize("rate,esn0", [("1/4", -1.5), ("2/5", 0.0), ("1/2", 1.5), ("1/2", 5.0)])
def test_native_decoder_agrees_with_numpy_reference(rate, esn0, method):
    """Near threshold (many codewords iterate to the limit, some fail) and
    well above it: the same parity flags and iteration counts for at least
    95 % of codewords, the same hard bits wherever both decoders satisfied
    every check, and every such codeword the one that was sent. Measured on
    these inputs: identical for every codeword (tests run this to catch a
    kernel that drifts, with a margin for last-bit differences of phi)."""
    code = get_code(rate)
    dec = MinSumDecoder(read_alist(code.alist), 50, 0.8 if method == "minsum" else 1.0, method, kernels="native")
    assert dec.kernels == "native"
    L = allzero_llrs(code, esn0, 60, np.random.default_rng(11))
    h1, ok1, it1 = dec.decode_numpy(L)
    h2, ok2, it2 = dec.decode_native(L)
    assert h2.dtype == np.uint8 and h2.shape == (60, code.n) and ok2.dtype == np.bool_ and it2.dtype == np.int32
    assert (ok1 == ok2).mean() >= 0.95
    assert (it1 == it2).mean() >= 0.95
    both = ok1 & ok2
    np.testing.assert_array_equal(h2[both], h1[both])
    assert (h2[ok2] == 0).mean() > 0.99  # a near-threshold decoder may converge to another codeword
    if esn0 < 3:
        assert 0.02 < 1 - ok1.mean() < 0.98, "not near threshold: the comparison would be trivial"
        assert it2.max() == 50
    else:
        assert ok2.all() and it2.max() <= 5
        np.testing.assert_array_equal(it2, it1)
    assert dec.decode(L)[0].tobytes() == h2.tobytes()  # decode() takes the C++ path


@needs_native
@pytest.mark.parametrize("method", ["spa", "minsum"])
def test_native_decoder_on_a_shape_without_its_own_loops(method):
    """The C++ decoder compiles separate loops for the check/variable degrees
    of the project's codes (6/3, 5/3, 4/3); any other code takes the general
    ones. A random irregular code (rows of 5-8 ones, padded; columns of 2-4)
    near its threshold and above it: the same decisions as the reference."""
    rng = np.random.default_rng(4)
    m, n = 120, 240
    h = np.zeros((m, n), np.uint8)
    for v in range(n):  # every column 2-4 ones
        h[rng.choice(m, int(rng.integers(2, 5)), replace=False), v] = 1
    for i in range(m):  # every row at least 5
        short = 5 - int(h[i].sum())
        if short > 0:
            h[i, rng.choice(np.flatnonzero(h[i] == 0), short, replace=False)] = 1
    dec = MinSumDecoder(h, 50, 0.8 if method == "minsum" else 1.0, method, kernels="native")
    assert dec._rows_cm.shape[1] not in (4, 5, 6) or dec._ve_cm.shape[1] != 3
    for esn0 in (2.0, 8.0):
        L = allzero_llrs(dec, esn0, 40, rng)
        h1, ok1, it1 = dec.decode_numpy(L)
        h2, ok2, it2 = dec.decode_native(L)
        assert (ok1 == ok2).mean() >= 0.95 and (it1 == it2).mean() >= 0.95
        both = ok1 & ok2
        np.testing.assert_array_equal(h2[both], h1[both])
    assert ok2.all()  # 8 dB: every codeword decoded


@needs_native
def test_native_decoder_bad_input():
    code = get_code("1/2")
    dec = MinSumDecoder(read_alist(code.alist), method="spa", kernels="native")
    with pytest.raises(ValueError):
        dec.decode_native(np.zeros(code.n + 1, np.float32))  # not whole codewords
    L = np.zeros((2, code.n), np.float32)
    hard = np.empty((2, code.n), np.uint8)
    with pytest.raises(ValueError):  # outputs of the wrong size
        native.decode(L, dec._rows_cm, dec._ve_cm, 10, False, 1.0, hard[:1], np.empty(2, np.bool_),
                      np.empty(2, np.int32))
    with pytest.raises(ValueError):  # an edge table pointing outside the code
        bad = dec._rows_cm.copy()
        bad[0, 0] = code.n + 5
        native.decode(L, bad, dec._ve_cm, 10, False, 1.0, hard, np.empty(2, np.bool_), np.empty(2, np.int32))
    with pytest.raises(ValueError):
        native.decode(L, dec._rows_cm, dec._ve_cm, 0, False, 1.0, hard, np.empty(2, np.bool_),
                      np.empty(2, np.int32))
    # all-zero LLRs (no information): decisions 0, every check holds at once
    h, ok, it = dec.decode_native(L)
    assert ok.all() and (it == 0).all() and not h.any()
    # NaN and inf are replaced before the kernel (the reference's rule)
    L[0, :4] = [np.nan, np.inf, -np.inf, np.nan]
    h, ok, it = dec.decode_native(L)
    hr, okr, itr = dec.decode_numpy(L)
    np.testing.assert_array_equal(h, hr)


def test_switching_it_off_falls_back_to_numba(monkeypatch):
    monkeypatch.setenv("GR_SEMCOM_NATIVE", "0")
    assert kernels.native_ldpc() is None
    assert ldpc_kernels() == kernels.backend()
    assert ldpc_kernels("numpy") == "numpy"
    monkeypatch.setenv("GR_SEMCOM_KERNELS", "numpy")
    assert ldpc_kernels() == "numpy"
    with pytest.raises(ValueError):
        ldpc_kernels("fortran")
    dec = MinSumDecoder(read_alist(get_code("1/2").alist), method="spa", kernels="numba")
    with pytest.raises(RuntimeError):
        dec.decode_native(np.zeros(dec.n, np.float32))


@needs_native
def test_async_decoder_returns_decode_native_results_in_submission_order():
    """AsyncNative (the C++ decoder on its own thread): bursts of 1-4
    codewords at SNRs from hopeless to clean come back in the order submitted,
    each equal to decode_native on the same LLRs; nothing before a submit,
    nothing after a close."""
    dec = MinSumDecoder.for_code(get_code("1/2"), 50, 1.0, "spa", "native")
    a = dec.async_native()
    assert a is not None
    assert a.take(False) is None and a.take(True) is None and a.outstanding() == 0
    rng = np.random.default_rng(11)
    bursts = [allzero_llrs(dec, snr, int(rng.integers(1, 5)), rng) for snr in (-2.0, 1.0, 3.0, 8.0) * 5]
    for L in bursts:
        assert a.submit(L)
    got = []
    while len(got) < len(bursts):
        r = a.take(True)
        assert r is not None
        got.append(r)
    assert a.take(True) is None and a.outstanding() == 0
    for L, (hard, ok, iters) in zip(bursts, got):
        want = dec.decode_native(L)
        assert np.array_equal(hard, want[0]) and np.array_equal(ok, want[1]) and np.array_equal(iters, want[2])
    with pytest.raises(ValueError):
        a.submit(np.zeros(dec.n + 1, np.float32))  # not whole codewords
    a.close()
    assert not a.submit(bursts[0]) and a.take(True) is None


def test_async_decoder_is_none_without_the_compiled_decoder():
    assert MinSumDecoder.for_code(get_code("1/2"), 50, 1.0, "spa", "numba").async_native() is None
