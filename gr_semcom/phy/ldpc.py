"""Batched LDPC decoder in numpy, flooding schedule: sum-product (``spa``, the
receivers' default, gr-fec's algorithm) or normalised min-sum (``minsum``).

Why this exists next to gr-fec's ``ldpc_decoder`` (which stays selectable,
``phy_rx(..., ldpc_decoder="gr-fec")``, and is the reference it is tested
against): the receiver must keep up with at least 2 Msps on one core
(issue 2). gr-fec's sum-product decoder works one codeword at a time and
measured 0.55 ms per (1800, 902) codeword at Es/N0 10 dB, QPSK (1.1 Msps
for the decoder alone at 2 samples/symbol), and the ``ldpc`` package from
PyPI (a C++ belief-propagation decoder built for syndrome decoding)
0.45 ms for a single iteration, so neither leaves room for the rest of
the receiver (benchmarks/README.md, "RX chain throughput"). All codewords
of a burst are decoded together here, as dense ``(codewords, checks,
row degree)`` arrays: the three gr-fec codes have check degrees 4, 5 and
6 (rows of lower degree are padded with a dummy variable of infinite
reliability: never the minimum, phi of it is 0), so every step is one vectorised numpy operation, and a
codeword stops iterating once its syndrome is zero.

Message passing: a variable sends its channel LLR plus the other incoming
check messages; a check sends to each of its variables the product of the
other incoming signs times, for ``spa``, phi(sum of phi(other magnitudes))
with phi(x) = -ln tanh(x/2) (the tanh rule), or, for ``minsum`` (Chen &
Fossorier 2002), ``alpha`` times the smallest other magnitude (``alpha =
0.8`` is near the optimum these authors report for (3, 6) regular codes).
The tests decode the same LLRs with gr-fec's decoder and compare
(tests/test_ldpc.py).

LLR convention: ``log P(bit = 0) / P(bit = 1)`` (the demodulator's).

Three implementations of the same decoder (``kernels``):

* ``numpy``: :meth:`MinSumDecoder.decode_numpy`, the vectorised numpy code
  above, the tested reference (``GR_SEMCOM_KERNELS=numpy`` everywhere);
* ``numba``: :meth:`MinSumDecoder.decode_numba`, kernels of phy/kernels.py
  (one codeword at a time, the same float32 operations in the same order,
  GIL released per kernel);
* ``native`` (the default when built): :meth:`MinSumDecoder.decode_native`,
  the C++ decoder of phy/native/ldpc_native.cc, the whole burst in one call
  with the GIL released (built by scripts/build_native.sh; ``GR_SEMCOM_NATIVE=0``
  or not built: ``numba``). Its phi is glibc's vectorised tanhf/logf, so it
  is tested on its decisions and iteration counts, not bit for bit
  (tests/test_ldpc_native.py); why it exists: docs/receiver_speed.md.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from . import kernels as _k
from .fec import CodeSpec, read_alist

BIG = np.float32(1e30)
METHODS = ("minsum", "spa")
KERNELS = ("native", "numba", "numpy")
_PHI_LO, _PHI_HI = np.float32(1e-7), np.float32(30.0)


def _phi(x: np.ndarray) -> np.ndarray:
    """-ln tanh(x / 2) for x >= 0, clipped so that phi(phi(x)) == x to float32 precision."""
    x = np.clip(x, _PHI_LO, _PHI_HI)
    return -np.log(np.tanh(x * np.float32(0.5)))


def _phi_inplace(x: np.ndarray) -> np.ndarray:
    """:func:`_phi` written over ``x`` (the same ufuncs in the same order,
    no temporaries): the kernels' sum-product calls it twice per iteration."""
    np.clip(x, _PHI_LO, _PHI_HI, out=x)
    np.multiply(x, np.float32(0.5), out=x)
    np.tanh(x, out=x)
    np.log(x, out=x)
    return np.negative(x, out=x)


def ldpc_kernels(choice: str | None = None) -> str:
    """The decoder implementation ``choice`` resolves to: ``native`` (the C++
    decoder) when asked for or by default where it is built and the kernels
    are not switched to numpy; else what :func:`kernels.backend` says."""
    if choice is not None and choice not in KERNELS:
        raise ValueError(f"kernels must be one of {KERNELS}, got {choice!r}")
    if choice == "native" or (choice is None and _k.backend() == "numba"):
        if _k.native_ldpc() is not None:
            return "native"
        return _k.backend(None if choice == "native" else choice)
    return _k.backend(choice)


class MinSumDecoder:
    def __init__(self, h: np.ndarray, max_iterations: int = 50, alpha: float = 0.8, method: str = "minsum",
                 kernels: str | None = None):
        if method not in METHODS:
            raise ValueError(f"method is one of {METHODS}")
        self.method = method
        h = np.asarray(h, np.uint8)
        self.m, self.n = h.shape
        if max_iterations < 1:
            raise ValueError("max_iterations >= 1")
        self.max_iterations = int(max_iterations)
        self.alpha = np.float32(alpha)
        deg = h.sum(1).astype(int)
        if deg.min() < 1:
            raise ValueError("every check needs at least one variable")
        self.dc = int(deg.max())
        # rows[j, i]: the j-th variable of check i (n: the padding variable)
        rows = np.full((self.dc, self.m), self.n, np.int64)
        for i in range(self.m):
            idx = np.flatnonzero(h[i])
            rows[: idx.size, i] = idx
        self.rows = rows
        self.pad = rows == self.n
        self.has_pad = bool(self.pad.any())
        # edges of each variable as flat indices into the (dc * m) messages, padded
        # with dc * m (an all-zero message row)
        dv = h.sum(0).astype(int)
        self.dv = int(dv.max())
        ve = np.full((self.n, self.dv), self.dc * self.m, np.int64)
        fill = np.zeros(self.n, int)
        for e, v in enumerate(rows.ravel()):
            if v < self.n:
                ve[v, fill[v]] = e
                fill[v] += 1
        self.var_edges = ve
        self.kernels = ldpc_kernels(kernels)
        self._native = _k.native_ldpc() if self.kernels == "native" else None
        # the kernels' check-major edge layout (e = i * dc + j), same edges and orders
        self._rows_cm = np.ascontiguousarray(rows.T).astype(np.int32)
        e_ref = np.arange(self.dc * self.m)
        remap = np.append((e_ref % self.m) * self.dc + e_ref // self.m, self.dc * self.m)
        self._ve_cm = remap[ve].astype(np.int32)

    @classmethod
    def for_code(cls, code: CodeSpec, max_iterations: int = 50, alpha: float = 0.8,
                 method: str = "minsum", kernels: str | None = None) -> "MinSumDecoder":
        return _cached(str(code.alist), max_iterations, float(alpha), method, ldpc_kernels(kernels))

    def _codewords(self, llr: np.ndarray) -> np.ndarray:
        """``llr`` as float32 (codewords, n); ``ValueError`` if it is not a
        whole number of codewords."""
        llr = np.asarray(llr, np.float32)
        if llr.size % self.n:
            raise ValueError(f"{llr.size} LLRs is not a whole number of {self.n}-bit codewords")
        return llr.reshape(-1, self.n)

    def _prepare(self, llr: np.ndarray) -> np.ndarray:
        llr = self._codewords(llr)
        # one reduction decides: the demodulators' LLRs are finite (nan_to_num is
        # seven numpy calls, measured ~40 us per burst on the CI box); a sum
        # that is not finite (NaN/inf, or finite values overflowing it) takes
        # the exact replacement
        with np.errstate(over="ignore", invalid="ignore"):
            finite = np.isfinite(np.add.reduce(llr, axis=None))
        if finite:
            return llr
        return np.nan_to_num(llr, nan=0.0, posinf=BIG, neginf=-BIG)

    def decode(self, llr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``llr``: (codewords, n) or flat codewords * n. Returns (hard bits
        (codewords, n) uint8, parity satisfied per codeword (bool), iterations
        used per codeword). Compiled kernel or numpy reference (``kernels``)."""
        if self.kernels == "numpy":
            return self.decode_numpy(llr)
        if self.kernels == "native":
            return self.decode_native(llr)
        return self.decode_numba(llr)

    def decode_native(self, llr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The C++ decoder (phy/native/ldpc_native.cc): every codeword of the
        batch in one call, GIL released throughout."""
        mod = self._native
        if mod is None:
            raise RuntimeError("the compiled LDPC decoder is not built (bash scripts/build_native.sh) "
                               "or is switched off (GR_SEMCOM_NATIVE=0)")
        L = np.ascontiguousarray(self._prepare(llr))
        b = L.shape[0]
        hard = np.empty((b, self.n), np.uint8)
        ok = np.empty(b, np.bool_)
        iters = np.empty(b, np.int32)
        mod.decode(L, self._rows_cm, self._ve_cm, self.max_iterations, self.method == "minsum",
                   float(self.alpha), hard, ok, iters)
        return hard, ok, iters

    def async_native(self) -> "AsyncNative | None":
        """This decoder on a C++ thread of its own (:class:`AsyncNative`), or
        None when the compiled decoder is not in use (not built, switched off,
        or other kernels asked for)."""
        if self._native is None or not hasattr(self._native, "AsyncDecoder"):
            return None
        return AsyncNative(self)

    def decode_numba(self, llr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Compiled kernels (phy/kernels.py), GIL released while they run.
        Min-sum runs entirely in one kernel; sum-product runs its message
        bookkeeping in kernels and phi in numpy (its SIMD log/tanh are 20x
        faster than numba's scalar ones), so both give the reference's
        float32 results."""
        L = np.ascontiguousarray(self._prepare(llr))
        b = L.shape[0]
        hard = np.empty((b, self.n), np.uint8)
        ok = np.empty(b, np.bool_)
        iters = np.empty(b, np.int32)
        if self.method == "minsum":
            _k.first_use("ldpc_minsum", _k.ldpc_minsum, L, self._rows_cm, self._ve_cm, self.max_iterations,
                         np.float32(self.alpha), hard, ok, iters)
            return hard, ok, iters
        _k.first_use("ldpc_syndrome_init", _k.ldpc_syndrome_init, L, self._rows_cm, hard, ok, iters)
        active = np.flatnonzero(~ok)
        if active.size == 0:
            return hard, ok, iters
        e = self.dc * self.m
        La = L[active]
        total = np.empty((active.size, self.n + 1), np.float32)
        total[:, : self.n] = La
        total[:, self.n] = BIG
        c2v = np.zeros((active.size, e + 1), np.float32)  # + the zero message of padded variable edges
        mag = np.empty((active.size, e), np.float32)
        flip = np.empty((active.size, e), np.bool_)
        arg = np.empty((active.size, e), np.float32)
        ha = np.empty((active.size, self.n), np.uint8)
        done = np.empty(active.size, np.bool_)
        for it in range(1, self.max_iterations + 1):
            _k.first_use("spa_check_in", _k.spa_check_in, total, c2v, self._rows_cm, mag, flip)
            # mag and arg are rewritten by the kernels every iteration: phi in place
            _k.first_use("spa_check_sums", _k.spa_check_sums, _phi_inplace(mag), self._rows_cm, arg)
            _k.first_use("spa_var_update", _k.spa_var_update, _phi_inplace(arg), flip, self._rows_cm, self._ve_cm,
                         La, c2v, total, ha, done)
            iters[active] = it
            hard[active] = ha
            if done.any():
                ok[active[done]] = True
                keep = ~done
                active = active[keep]
                if active.size == 0:
                    break
                La, c2v, total, ha = La[keep], c2v[keep], total[keep], ha[keep]
                mag, flip, arg, done = mag[keep], flip[keep], arg[keep], done[keep]
        return hard, ok, iters

    def decode_numpy(self, llr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The numpy reference (all codewords of the batch at once)."""
        L = self._prepare(llr)
        b = L.shape[0]
        hard = (L < 0).astype(np.uint8)
        iters = np.zeros(b, np.int32)
        # codewords along the last axis: variables (n + 1, B), messages (dc, m, B)
        Lt = np.concatenate([L.T, np.full((1, b), BIG, np.float32)], axis=0)
        ok = self._syndrome_ok(Lt < 0)
        active = np.flatnonzero(~ok)
        if active.size == 0:
            return hard, ok, iters
        La = np.ascontiguousarray(Lt[:, active])
        total = La.copy()
        c2v = np.zeros((self.dc * self.m + 1, active.size), np.float32)  # + the zero row
        e = self.dc * self.m
        for it in range(1, self.max_iterations + 1):
            v2c = total[self.rows] - c2v[:e].reshape(self.dc, self.m, -1)
            if self.has_pad:
                v2c[self.pad] = BIG
            mag = np.abs(v2c)
            neg = v2c < 0
            parity = neg[0].copy()
            for j in range(1, self.dc):
                parity ^= neg[j]
            if self.method == "spa":
                # tanh rule through phi(x) = -ln tanh(x / 2) (its own inverse):
                # |out_j| = phi(sum over the other edges of phi(|in|)); padding: phi(BIG) = 0
                ph = _phi(mag)
                out = _phi(ph.sum(axis=0)[None] - ph)
            else:
                min1 = mag[0].copy()
                min2 = np.full_like(min1, BIG)
                for j in range(1, self.dc):
                    np.minimum(min2, np.maximum(min1, mag[j]), out=min2)
                    np.minimum(min1, mag[j], out=min1)
                # each edge gets the smallest *other* magnitude: min2 on the edge that holds min1
                out = np.where(mag == min1[None], min2[None], min1[None])
                out *= self.alpha
            np.negative(out, out=out, where=neg ^ parity[None])
            if self.has_pad:
                out[self.pad] = 0
            c2v[:e] = out.reshape(e, -1)
            total = La.copy()
            total[: self.n] += c2v[self.var_edges].sum(axis=1)
            neg_t = total < 0
            done = self._syndrome_ok(neg_t)
            iters[active] = it
            hard[active] = neg_t[: self.n].T
            if done.any():
                ok[active[done]] = True
                keep = ~done
                active = active[keep]
                if active.size == 0:
                    break
                La, c2v, total = La[:, keep], c2v[:, keep], total[:, keep]
        return hard, ok, iters

    def _syndrome_ok(self, bits: np.ndarray) -> np.ndarray:
        """``bits``: (n + 1, B) bool, the padding variable last (0)."""
        g = bits[self.rows]  # (dc, m, B)
        p = g[0].copy()
        for j in range(1, self.dc):
            p ^= g[j]
        return ~p.any(axis=0)


@lru_cache(maxsize=None)
def _cached(alist: str, max_iterations: int, alpha: float, method: str, kernels: str) -> MinSumDecoder:
    return MinSumDecoder(read_alist(alist), max_iterations, alpha, method, kernels)


def info_bits(hard: np.ndarray, code: CodeSpec) -> np.ndarray:
    """Information bits of gr-fec's systematic encoder: the last k of each codeword."""
    return np.ascontiguousarray(hard[:, code.n - code.k:]).ravel()


class AsyncNative:
    """:meth:`MinSumDecoder.decode_native` on a C++ thread of its own
    (phy/native/ldpc_native.cc ``AsyncDecoder``): :meth:`submit` queues one
    burst's LLRs and returns at once, :meth:`take` returns the results in
    submission order, the same arrays ``decode`` returns. Why: a receiver's
    Python work runs fastest in one thread on the 2-core box, and the
    decode, which needs no Python, then overlaps it on the other core
    (docs/receiver_speed.md). :meth:`close` stops the thread; what is queued
    is dropped."""

    def __init__(self, dec: MinSumDecoder):
        self._dec = dec
        self._impl = dec._native.AsyncDecoder(dec._rows_cm, dec._ve_cm, dec.max_iterations,
                                              dec.method == "minsum", float(dec.alpha))

    def submit(self, llr: np.ndarray) -> bool:
        """Queue one burst (``ValueError`` if not whole codewords, as
        ``decode``); False if closed. Values that are not finite are
        replaced as ``decode`` replaces them, by the C++ copy (the numpy
        check cost more than the decode's queueing)."""
        return self._impl.submit(np.ascontiguousarray(self._dec._codewords(llr)))

    def take(self, block: bool = False):
        """(hard, ok, iters) of the oldest burst not yet taken; None if it is
        not decoded yet (``block`` false), or nothing is queued or closed."""
        return self._impl.take(block)

    def outstanding(self) -> int:
        return self._impl.outstanding()

    def close(self) -> None:
        self._impl.close()
