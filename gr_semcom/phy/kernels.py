"""Compiled (numba) kernels of the receiver's hot paths, and the switch
between them and the numpy reference.

Why numba: the receiver's per-burst work (LDPC message passing, preamble
search, interpolation, pilot channel estimate, soft demapping) is hundreds of
small numpy calls per burst, so it is bound by interpreter and dispatch
overhead, not arithmetic, and it holds the GIL, so GNU Radio's message
blocks could not use the second core. ``@njit(nogil=True, cache=True)``
compiles the same loops to machine code at first use (cached on disk under
``__pycache__``, or ``NUMBA_CACHE_DIR``), releases the GIL while they run
and needs nothing beyond the wheel already in the set-up (no compiler, no
build step). See docs/receiver_speed.md.

Selection: ``GR_SEMCOM_KERNELS=numpy`` (environment) runs the numpy
reference everywhere; the default ``numba`` uses these kernels when numba
imports, and falls back to numpy (with one warning) when it does not.
``backend()`` reports the choice; callers may also pass ``kernels="numpy"``
to the decoder/demodulator objects.

Numerics: the LDPC kernels do exactly the numpy reference's float32
operations in the same order (min-sum is bit-identical; sum-product may
differ in the last bit of log/tanh, which numpy evaluates with its own SIMD
routines). The demodulator kernels match the reference to float32 rounding,
except the CFO search of a preamble at the SNR floor (``sc_cfo``)
(tests/test_kernels.py).
"""
from __future__ import annotations

import logging
import os
import time

import numpy as np

log = logging.getLogger(__name__)

try:  # pragma: no cover - numba is part of the set-up
    import numba
    from numba import njit

    HAVE_NUMBA = True
except Exception:  # pragma: no cover
    numba = None
    HAVE_NUMBA = False

    def njit(*a, **k):
        def deco(f):
            return f
        return deco if not (a and callable(a[0])) else a[0]

BACKENDS = ("numba", "numpy")
_warned = False


def backend(choice: str | None = None) -> str:
    """``numba`` or ``numpy``: ``choice`` if given, else ``GR_SEMCOM_KERNELS``
    (default ``numba``); ``numba`` falls back to ``numpy`` if numba is missing."""
    global _warned
    b = (choice or os.environ.get("GR_SEMCOM_KERNELS") or "numba").strip().lower()
    if b not in BACKENDS:
        raise ValueError(f"kernels must be one of {BACKENDS}, got {b!r} (GR_SEMCOM_KERNELS)")
    if b == "numba" and not HAVE_NUMBA:
        if not _warned:
            log.warning("numba is not importable: the receiver runs the numpy reference kernels")
            _warned = True
        return "numpy"
    return b


_compiled: set = set()


def first_use(name: str, fn, *args):
    """Call a kernel; on its first call in this process, log that it is
    compiled (or loaded from numba's cache) and how long that took."""
    if name in _compiled:
        return fn(*args)
    t = time.perf_counter()
    out = fn(*args)
    dt = time.perf_counter() - t
    _compiled.add(name)
    log.info("gr_semcom kernels: %s ready in %.2f s (numba JIT, compiled at first use and cached on disk)",
             name, dt)
    return out


# ------------------------------------------------ compiled C++ (LDPC) ----

_native_ldpc = False  # not looked for yet


def env_flag(name: str, default: bool = True) -> bool:
    """A receiver switch from the environment: unset or empty gives
    ``default``; ``0``, ``no``, ``false`` or ``off`` (any case) false; anything
    else true. The one parser of every ``GR_SEMCOM_*`` on/off variable."""
    v = os.environ.get(name, "").strip().lower()
    if not v:
        return default
    return v not in ("0", "no", "false", "off")


def native_wanted() -> bool:
    """``GR_SEMCOM_NATIVE=0`` (or no/false/off) switches every compiled C++
    part of the receiver off: the LDPC decoder here, the stream blocks in
    blocks/phy_blocks.py."""
    return env_flag("GR_SEMCOM_NATIVE")


def native_ldpc():
    """The compiled LDPC decoder (phy/native/ldpc_native.cc, built by
    scripts/build_native.sh), or None when it is not built or switched off
    (the decoder then runs the numba kernels; one INFO line says so)."""
    global _native_ldpc
    if not native_wanted():
        return None
    if _native_ldpc is False:
        try:
            from . import _ldpc_native as mod
        except ImportError:
            mod = None
            log.info("gr_semcom: compiled LDPC decoder not built (bash scripts/build_native.sh); "
                     "the numba kernels decode")
        _native_ldpc = mod
    return _native_ldpc


BIG = np.float32(1e30)


# ---------------------------------------------------------------- LDPC ----

# Edge layout of the kernels: check-major, e = i * dc + j for the j-th
# variable of check i (``rows``: (m, dc) int32, padding n), so a check's
# edges are contiguous; ``var_edges`` (n, dv) int32 lists each variable's
# edges in the numpy reference's order (padding E = m * dc, a zero message).
# Every sum is taken in the reference's order, so results are the same.

@njit(nogil=True, cache=True)
def _syndrome_ok(hard, rows, n):
    m, dc = rows.shape
    for i in range(m):
        p = 0
        for j in range(dc):
            v = rows[i, j]
            if v < n:
                p ^= hard[v]
        if p:
            return False
    return True


@njit(nogil=True, cache=True)
def ldpc_minsum(L, rows, var_edges, max_iterations, alpha, hard, ok, iters):
    """Normalised min-sum flooding-schedule decoding of each row of ``L``
    ((B, n) float32 LLRs log P0/P1, finite) in the layout above. Writes
    ``hard`` (B, n) uint8, ``ok`` (B,) bool, ``iters`` (B,) int32: the numpy
    reference's float32 operations, one codeword at a time, stopping at a
    zero syndrome.

    Sum-product is not in here: a check's messages need phi(x) = -ln tanh(x/2)
    twice per edge, and numba's scalar log/tanh (libm, ~24 ns) are 20x slower
    than numpy's SIMD float32 ones (~1.1 ns): see :func:`spa_check_sums` for how
    the sum-product decoder is split between kernels and numpy's phi."""
    B, n = L.shape
    m, dc = rows.shape
    E = dc * m
    dv = var_edges.shape[1]
    c2v = np.zeros(E + 1, np.float32)
    mag = np.empty(dc, np.float32)
    neg = np.empty(dc, np.bool_)
    total = np.empty(n + 1, np.float32)
    hb = np.empty(n, np.uint8)
    for b in range(B):
        iters[b] = 0
        for v in range(n):
            hb[v] = 1 if L[b, v] < 0 else 0
        if _syndrome_ok(hb, rows, n):
            ok[b] = True
            for v in range(n):
                hard[b, v] = hb[v]
            continue
        ok[b] = False
        for e in range(E + 1):
            c2v[e] = 0.0
        for v in range(n):
            total[v] = L[b, v]
        total[n] = BIG
        for it in range(1, max_iterations + 1):
            for i in range(m):
                parity = False
                for j in range(dc):
                    v = rows[i, j]
                    x = BIG if v == n else total[v] - c2v[i * dc + j]
                    mag[j] = abs(x)
                    neg[j] = x < 0
                    parity ^= neg[j]
                min1 = mag[0]
                min2 = BIG
                for j in range(1, dc):
                    mx = min1 if min1 > mag[j] else mag[j]
                    if mx < min2:
                        min2 = mx
                    if mag[j] < min1:
                        min1 = mag[j]
                for j in range(dc):
                    o = min2 if mag[j] == min1 else min1
                    o = o * alpha
                    if neg[j] ^ parity:
                        o = -o
                    c2v[i * dc + j] = 0.0 if rows[i, j] == n else o
            for v in range(n):
                s = c2v[var_edges[v, 0]]
                for k in range(1, dv):
                    s = s + c2v[var_edges[v, k]]
                t = L[b, v] + s
                total[v] = t
                hb[v] = 1 if t < 0 else 0
            iters[b] = it
            if _syndrome_ok(hb, rows, n):
                ok[b] = True
                break
        for v in range(n):
            hard[b, v] = hb[v]


@njit(nogil=True, cache=True)
def ldpc_syndrome_init(L, rows, hard, ok, iters):
    """Hard decisions of the channel LLRs and whether they already satisfy
    every check (those codewords need no iteration)."""
    B, n = L.shape
    for b in range(B):
        iters[b] = 0
        for v in range(n):
            hard[b, v] = 1 if L[b, v] < 0 else 0
        ok[b] = _syndrome_ok(hard[b], rows, n)


@njit(nogil=True, cache=True)
def spa_check_in(total, c2v, rows, mag, flip):
    """Sum-product, step 1 of an iteration, for each active codeword a:
    variable-to-check messages total[v] - c2v[e] (padding: BIG), their
    magnitudes into ``mag`` (A, E) and in ``flip`` whether the outgoing
    message of each edge is negative (its sign xor the check's parity)."""
    A = total.shape[0]
    m, dc = rows.shape
    n = total.shape[1] - 1
    neg = np.empty(dc, np.bool_)
    for a in range(A):
        for i in range(m):
            parity = False
            for j in range(dc):
                e = i * dc + j
                v = rows[i, j]
                x = BIG if v == n else total[a, v] - c2v[a, e]
                mag[a, e] = abs(x)
                neg[j] = x < 0
                parity ^= neg[j]
            for j in range(dc):
                flip[a, i * dc + j] = neg[j] ^ parity


@njit(nogil=True, cache=True)
def spa_check_sums(ph, rows, arg):
    """Sum-product, step 2: with ph = phi(mag) (numpy's float32 SIMD phi,
    the reference's own function), arg = (sum of the check's ph) - ph, the
    sum taken over j in order as numpy's reduction over axis 0 does."""
    A = ph.shape[0]
    m, dc = rows.shape
    for a in range(A):
        for i in range(m):
            e0 = i * dc
            s = ph[a, e0]
            for j in range(1, dc):
                s = s + ph[a, e0 + j]
            for j in range(dc):
                arg[a, e0 + j] = s - ph[a, e0 + j]


@njit(nogil=True, cache=True)
def spa_var_update(out, flip, rows, var_edges, L, c2v, total, hard, done):
    """Sum-product, step 3: with out = phi(arg), the signed check-to-variable
    messages (padding 0), the variables' totals L + sum of their messages (in
    the reference's edge order), hard decisions and the syndrome test."""
    A, n = L.shape
    m, dc = rows.shape
    dv = var_edges.shape[1]
    for a in range(A):
        for i in range(m):
            for j in range(dc):
                e = i * dc + j
                if rows[i, j] == n:
                    c2v[a, e] = 0.0
                else:
                    o = out[a, e]
                    c2v[a, e] = -o if flip[a, e] else o
        for v in range(n):
            s = c2v[a, var_edges[v, 0]]
            for k in range(1, dv):
                s = s + c2v[a, var_edges[v, k]]
            t = L[a, v] + s
            total[a, v] = t
            hard[a, v] = 1 if t < 0 else 0
        done[a] = _syndrome_ok(hard[a], rows, n)


# ------------------------------------------------- single-carrier demod ----

@njit(nogil=True, cache=True)
def sc_coarse(x, search, pre_pos, conj_pre, segs):
    """Segmented non-coherent preamble metric at every start 0..search;
    returns (best start, its metric, energy of x at that start's preamble
    positions). Same sums as BurstDemodulator._metric."""
    npre = conj_pre.size
    seg = npre // segs
    best, bm = 0, np.float32(-1.0)
    for s in range(search + 1):
        mtot = np.float32(0.0)
        for g in range(segs):
            acc = np.complex64(0)
            for k in range(g * seg, (g + 1) * seg):
                acc += x[s + pre_pos[k]] * conj_pre[k]
            mtot += acc.real * acc.real + acc.imag * acc.imag
        if mtot > bm:
            bm, best = mtot, s
    e = np.float32(0.0)
    for k in range(npre):
        z = x[best + pre_pos[k]]
        e += z.real * z.real + z.imag * z.imag
    return best, bm, e


@njit(nogil=True, cache=True)
def derotate(r, f):
    """r * exp(-2j pi f k): the reference's block phasor (frame._phasor: 64
    inner rotations times one per block of 64, complex128, then complex64)."""
    n = r.size
    block = 64
    nb = (n + block - 1) // block
    inner = np.empty(block, np.complex128)
    for i in range(block):
        ph = -2.0 * np.pi * f * i
        inner[i] = complex(np.cos(ph), np.sin(ph))
    out = np.empty_like(r)
    for q in range(nb):
        ph = -2.0 * np.pi * f * block * q
        o = complex(np.cos(ph), np.sin(ph))
        for i in range(block):
            k = q * block + i
            if k >= n:
                break
            out[k] = r[k] * np.complex64(o * inner[i])
    return out


@njit(nogil=True, cache=True)
def _smooth_k(h, kern, out):
    """np.convolve(h, kern, 'same') / (same of ones): edge-normalised smoothing."""
    n = h.size
    K = kern.size
    c = K // 2
    for i in range(n):
        acc = 0j
        wsum = 0.0
        for j in range(K):
            p = i + c - j
            if 0 <= p < n:
                acc += h[p] * kern[j]
                wsum += kern[j]
        out[i] = acc / wsum


@njit(nogil=True, cache=True)
def smooth_loo(h, est_var):
    """frame._smooth_loo: kernels [1,2,1] .. [1..5..1], least estimated MSE."""
    n = h.size
    best = h.copy()
    best_err = est_var
    tmp = np.empty(n, np.complex128)
    for half in range(1, 5):
        K = 2 * half + 1
        if K > n:
            break
        k = np.empty(K, np.float64)
        for j in range(K):
            k[j] = min(j, K - 1 - j) + 1.0
        w = k.copy()
        w[half] = 0.0
        _smooth_k(h, w, tmp)
        err = 0.0
        for i in range(n):
            d = h[i] - tmp[i]
            err += d.real * d.real + d.imag * d.imag
        err /= n
        ks, ws, k2, w2 = k.sum(), w.sum(), 0.0, 0.0
        for j in range(K):
            k2 += (k[j] / ks) ** 2
            w2 += (w[j] / ws) ** 2
        err -= est_var * (1.0 + w2 - k2)
        if err < best_err:
            best_err = err
            _smooth_k(h, k, best)
    return best


@njit(nogil=True, cache=True)
def sc_channel(r, npre, conj_pre, pilot_idx, conj_pilots, pl):
    """Preamble and pilot-group channel estimates and the noise variance
    (frame.BurstDemodulator step 4). Returns (hs: preamble then group
    estimates (complex128), centres, noise_var, lag-1 signal power)."""
    G = pilot_idx.size // pl
    hs = np.empty(G + 1, np.complex128)
    centres = np.empty(G + 1, np.float64)
    acc = 0j
    for k in range(npre):
        acc += r[k] * conj_pre[k]
    h_pre = acc / npre
    res = 0.0
    for k in range(npre):
        d = r[k] - h_pre * np.conj(conj_pre[k])
        res += d.real * d.real + d.imag * d.imag
    nv_pre = res / npre * npre / (npre - 1)
    hs[0] = h_pre
    centres[0] = (npre - 1) / 2.0
    scat = 0.0
    for g in range(G):
        a = 0j
        c = 0.0
        for q in range(pl):
            p = g * pl + q
            a += r[pilot_idx[p]] * conj_pilots[p]
            c += pilot_idx[p]
        a /= pl
        hs[g + 1] = a
        centres[g + 1] = c / pl
        for q in range(pl):
            p = g * pl + q
            d = r[pilot_idx[p]] * conj_pilots[p] - a
            scat += d.real * d.real + d.imag * d.imag
    if pl > 1:
        nv_pil = scat / (G * pl) * pl / (pl - 1)
        w_pre, w_pil = npre - 1, G * pl - G
        noise_var = (nv_pre * w_pre + nv_pil * w_pil) / (w_pre + w_pil)
    else:
        noise_var = nv_pre
    if G > 1:
        s = 0j
        for g in range(1, G):
            s += hs[g + 1] * np.conj(hs[g])
        sig = abs(s / (G - 1))
    else:
        sig = abs(hs[1]) ** 2 - noise_var / pl
    return hs, centres, noise_var, sig


@njit(nogil=True, cache=True)
def llr_maxlog(y, nv, bpd, levels, labels, scale, out):
    """Max-log LLRs of square Gray QAM (bpd bits per dimension; bpd = 0:
    BPSK), as Constellation.llr: out has len(y) * bits_per_symbol entries."""
    n = y.size
    if bpd == 0:
        for k in range(n):
            v = nv[k] if nv[k] > 1e-12 else np.float32(1e-12)
            out[k] = np.float32(4.0) * y[k].real / v
        return
    M = levels.size
    bps = 2 * bpd
    if bpd == 1:
        a0 = np.float32(0.0)
        for q in range(M):
            if labels[q] == 0:
                a0 = np.float32(scale * levels[q])
        for k in range(n):
            v = nv[k] if nv[k] > 1e-12 else np.float32(1e-12)
            g = np.float32(4.0) * a0 / v
            out[2 * k] = g * y[k].real
            out[2 * k + 1] = g * y[k].imag
        return
    d = np.empty(M, np.float32)
    for k in range(n):
        v = nv[k] if nv[k] > 1e-12 else np.float32(1e-12)
        for dim in range(2):
            xv = y[k].real if dim == 0 else y[k].imag
            for q in range(M):
                e = xv - np.float32(scale * levels[q])
                d[q] = -(e * e) / v
            for b in range(bpd):
                m0 = np.float32(-3e38)
                m1 = np.float32(-3e38)
                sh = bpd - 1 - b
                for q in range(M):
                    if (labels[q] >> sh) & 1:
                        if d[q] > m1:
                            m1 = d[q]
                    else:
                        if d[q] > m0:
                            m0 = d[q]
                out[k * bps + dim * bpd + b] = m0 - m1


@njit(nogil=True, cache=True)
def interp_taps(t0, table, out):
    """frame._interp_taps in float64: the taps at t0's fractional part, linear
    between the rows of the Kaiser-sinc ``table``, unit sum, into ``out``;
    returns the first sample index."""
    t0i = np.floor(t0)
    mu = t0 - t0i
    steps = table.shape[0] - 1
    pos = mu * steps
    i = min(int(pos), steps - 1)
    a = pos - i
    ntap = table.shape[1]
    s = 0.0
    for j in range(ntap):
        v = (1.0 - a) * table[i, j] + a * table[i + 1, j]
        out[j] = v
        s += v
    for j in range(ntap):
        out[j] /= s
    return int(t0i) - ntap // 2 + 1


@njit(nogil=True, cache=True)
def sc_fine_timing(x, n0, sps, conj_pre, segs, grid, table):
    """frame.BurstDemodulator._fine_timing: the segmented preamble metric of
    the burst Kaiser-interpolated at n0 + grid[d] (d < grid.size; ``grid``
    ascending, its ends within a few samples: they size the lag table), its argmax
    and a parabolic refinement. The interpolation is linear, so the metric's
    segment sums are formed once per integer lag (``corr``) and each delay
    then costs one 2*half-tap sum per segment instead of one per symbol."""
    npre = conj_pre.size
    seg = npre // segs
    ntap = table.shape[1]
    half = ntap // 2
    mlo = int(np.floor(grid[0])) - half + 1
    mhi = int(np.floor(grid[grid.size - 1])) + half
    nm = mhi - mlo + 1
    nx = x.size
    corr = np.zeros((segs, nm), np.complex128)
    for g in range(segs):
        for m in range(nm):
            acc = 0j
            for k in range(g * seg, (g + 1) * seg):
                p = n0 + mlo + m + k * sps
                if 0 <= p < nx:
                    acc += complex(x[p]) * complex(conj_pre[k])
            corr[g, m] = acc
    h = np.empty(ntap, np.float64)
    nd = grid.size
    mf = np.empty(nd, np.float64)
    for d in range(nd):
        first = interp_taps(grid[d], table, h)  # relative to n0
        mtot = 0.0
        for g in range(segs):
            acc = 0j
            for j in range(ntap):
                acc += h[j] * corr[g, first + j - mlo]
            mtot += acc.real * acc.real + acc.imag * acc.imag
        mf[d] = mtot
    b = 0
    for d in range(1, nd):
        if mf[d] > mf[b]:
            b = d
    frac = grid[b]
    if 0 < b < nd - 1:
        y0, y1, y2 = mf[b - 1], mf[b], mf[b + 1]
        den = y0 - 2 * y1 + y2
        if den < 0:
            frac += 0.5 * (y0 - y2) / den * (grid[1] - grid[0])
    return n0 + frac


@njit(nogil=True, cache=True)
def _power_at(zp, k, twiddle):
    """|sum_n zp[n] exp(-2j pi k n / N)|^2, N = twiddle.size (twiddle[m] =
    exp(-2j pi m / N), N a power of two): one bin of the zero-padded N-point
    periodogram."""
    mask = twiddle.size - 1  # a power of two
    acc = 0j
    for n in range(zp.size):
        acc += zp[n] * twiddle[(k * n) & mask]
    return acc.real * acc.real + acc.imag * acc.imag


@njit(nogil=True, cache=True)
def sc_cfo(r, conj_pre, twiddle, stride):
    """frame.BurstDemodulator._cfo without the FFT: the periodogram of
    r * conj(preamble), zero-padded to N = twiddle.size bins, on every
    ``stride``-th bin, then every bin within 2 strides of the best one, its
    argmax and a parabolic refinement (cycles/symbol). Equals the full
    N-point search whenever the peak's main lobe holds the best coarse bin
    (the fine search covers that lobe's half-width, N/64 bins, either side of
    it): a coarse stride of N/128 samples the lobe of the 64-symbol preamble
    at no more than 0.9 dB below its peak, while a tone's sidelobes are 13 dB
    down. Where noise lifts another lobe that high the two can differ
    (measured: 0.15 % of preambles at -5 dB Es/N0, the demodulator's SNR
    floor, neither more often wrong; tests/test_kernels.py)."""
    nfft = twiddle.size
    npre = conj_pre.size
    zp = np.empty(npre, np.complex128)
    for n in range(npre):
        zp[n] = complex(r[n]) * complex(conj_pre[n])
    kc, pc = 0, -1.0
    for k in range(0, nfft, stride):
        p = _power_at(zp, k, twiddle)
        if p > pc:
            kc, pc = k, p
    w = 2 * stride  # N/64: the main lobe's half-width for stride N/128
    kb, pb = 0, -1.0
    for dk in range(-w, w + 1):
        k = (kc + dk) % nfft
        p = _power_at(zp, k, twiddle)
        # np.argmax takes the lowest index of equal maxima
        if p > pb or (p == pb and k < kb):
            kb, pb = k, p
    km = _power_at(zp, (kb - 1) % nfft, twiddle)
    kp = _power_at(zp, (kb + 1) % nfft, twiddle)
    den = km - 2 * pb + kp
    delta = 0.5 * (km - kp) / den if den < 0 else 0.0
    return ((kb + delta + nfft / 2) % nfft - nfft / 2) / nfft


@njit(nogil=True, cache=True)
def sc_equalize(r, data_idx, centres, hs, noise_var, y, nv):
    """Linear interpolation of the smoothed channel at the data symbols
    (np.interp: clamped at the ends, data_idx ascending), zero-forcing with
    CSI: the equalised symbols into y and the per-symbol noise variance
    noise_var / |h|^2 into nv; in two passes, the second (one division per
    symbol, no complex division) a loop the compiler vectorises."""
    nd = data_idx.size
    G1 = centres.size
    fr = np.empty(nd, np.float32)
    fi = np.empty(nd, np.float32)
    seg = 0
    for k in range(nd):
        t = float(data_idx[k])
        if t <= centres[0]:
            hr, hi = hs[0].real, hs[0].imag
        elif t >= centres[G1 - 1]:
            hr, hi = hs[G1 - 1].real, hs[G1 - 1].imag
        else:
            while centres[seg + 1] < t:
                seg += 1
            a = (t - centres[seg]) / (centres[seg + 1] - centres[seg])
            hr = hs[seg].real + a * (hs[seg + 1].real - hs[seg].real)
            hi = hs[seg].imag + a * (hs[seg + 1].imag - hs[seg].imag)
        fr[k] = hr
        fi[k] = hi
    vr = np.empty(nd, np.float32)
    vi = np.empty(nd, np.float32)
    for k in range(nd):
        v = r[data_idx[k]]
        vr[k] = v.real
        vi[k] = v.imag
    nvf = np.float32(noise_var)
    yv = y.view(np.float32)
    for k in range(nd):
        pw = max(fr[k] * fr[k] + fi[k] * fi[k], np.float32(1e-12))
        inv = np.float32(1.0) / pw
        yv[2 * k] = (vr[k] * fr[k] + vi[k] * fi[k]) * inv
        yv[2 * k + 1] = (vi[k] * fr[k] - vr[k] * fi[k]) * inv
        nv[k] = nvf * inv


@njit(nogil=True, cache=True)
def interp_phases(x, first, step, count, h):
    """frame._interp_at (``h`` the real float32 taps of frame._interp_taps)
    as a polyphase FIR: x split into its ``step`` phases (real
    and imaginary parts apart, zero outside x), then each tap added to all
    outputs at once, which the compiler vectorises (contiguous loads, no
    reduction across lanes): y[k] = sum_j h[j] x[first + k * step + j]."""
    ntap = h.size
    base = first - (first % step)  # floor to a multiple of step (first may be < 0)
    m_len = count + (ntap + step - 1) // step + 1
    # phase ph at [ph * m_len, (ph + 1) * m_len); loops over slices, whose
    # indices numba knows are >= 0 (an index it must check for wraparound
    # keeps LLVM from vectorising: 4x slower)
    pr = np.zeros(step * m_len, np.float32)
    pi = np.zeros(step * m_len, np.float32)
    nx = x.size
    for ph in range(step):
        dr = pr[ph * m_len:(ph + 1) * m_len]
        di = pi[ph * m_len:(ph + 1) * m_len]
        mlo = max(0, -((base + ph) // step))  # m with 0 <= base + m * step + ph < nx
        mhi = min(m_len, (nx - 1 - base - ph) // step + 1)
        if mhi <= mlo:
            continue
        src = x[base + ph + mlo * step:base + ph + (mhi - 1) * step + 1:step]
        for m in range(mhi - mlo):
            v = src[m]
            dr[mlo + m] = v.real
            di[mlo + m] = v.imag
    yr = np.zeros(count, np.float32)
    yi = np.zeros(count, np.float32)
    for j in range(ntap):
        off = first - base + j
        o = (off % step) * m_len + off // step
        hj = h[j]
        a = pr[o:o + count]
        for k in range(count):
            yr[k] += hj * a[k]
        b = pi[o:o + count]
        for k in range(count):
            yi[k] += hj * b[k]
    y = np.empty(count, np.complex64)
    yv = y.view(np.float32)
    for k in range(count):
        yv[2 * k] = yr[k]
        yv[2 * k + 1] = yi[k]
    return y


@njit(nogil=True, cache=True)
def sc_demod(x, search, pre_pos, conj_pre, segs, sps, nsym, min_rho2, grid, table, twiddle, cfo_stride,
             pilot_idx, conj_pilots, pl, data_idx, min_snr_db, bpd, levels, labels, scale, llr, y):
    """The whole single-carrier burst demodulation (BurstDemodulator.
    demodulate_numpy's steps) in one call, one GIL release per burst:
    non-finite check, preamble search, fine timing, interpolation at the
    symbol instants, CFO, derotation, pilot channel, SNR test, equalisation
    and LLRs into ``llr``, symbols into ``y``. Returns
    (code, t0, rho2, cfo, snr_db, noise_var): code 0 passed, 1 non-finite
    samples, 2 no preamble, 3 no signal."""
    bad = count_nonfinite(x)
    if bad:
        return 1, 0.0, 0.0, 0.0, 0.0, 0.0
    n0, mmax, e_pre = sc_coarse(x, search, pre_pos, conj_pre, segs)
    rho2 = float(mmax) / ((conj_pre.size // segs) * max(float(e_pre), 1e-30))
    if rho2 < min_rho2:
        return 2, 0.0, rho2, 0.0, 0.0, 0.0
    n0 = max(n0, 2)
    t0 = sc_fine_timing(x, n0, sps, conj_pre, segs, grid, table)
    h = np.empty(table.shape[1], np.float64)
    first = interp_taps(t0, table, h)
    r = interp_phases(x, first, sps, nsym, h.astype(np.float32))
    cfo = sc_cfo(r, conj_pre, twiddle, cfo_stride)
    rr = derotate(r, cfo)
    npre = conj_pre.size
    hs, centres, noise_var, sig = sc_channel(rr, npre, conj_pre, pilot_idx, conj_pilots, pl)
    hs = smooth_loo(hs, noise_var / pl)
    snr_db = 10.0 * np.log10(max(sig, 1e-20) / max(noise_var, 1e-20))
    if snr_db < min_snr_db:
        return 3, t0, rho2, cfo, snr_db, noise_var
    nv = np.empty(data_idx.size, np.float32)
    sc_equalize(rr, data_idx, centres, hs, noise_var, y, nv)
    llr_maxlog(y, nv, bpd, levels, labels, scale, llr)
    return 0, t0, rho2, cfo, snr_db, noise_var


# ------------------------------------------------------------------ OFDM ----

@njit(nogil=True, cache=True)
def ofdm_metric(x, first, last, conj_s1, conj_s2, L):
    """OfdmBurstDemodulator._metric at every start first..last (four
    non-coherent segments of each sync symbol body, symbol 2 at +L), and
    whether any sample of x is non-finite. Returns (metrics, non-finite count)."""
    bad = 0
    for i in range(x.size):
        if not (np.isfinite(x[i].real) and np.isfinite(x[i].imag)):
            bad += 1
    n = conj_s1.size
    seg = n // 4
    out = np.zeros(last - first + 1, np.float32)
    if bad:
        return out, bad
    for s in range(first, last + 1):
        m = np.float32(0.0)
        for g in range(4):
            a1 = np.complex64(0)
            a2 = np.complex64(0)
            for k in range(g * seg, (g + 1) * seg):
                a1 += x[s + k] * conj_s1[k]
                a2 += x[s + L + k] * conj_s2[k]
            m += a1.real * a1.real + a1.imag * a1.imag + a2.real * a2.real + a2.imag * a2.imag
        out[s - first] = m
    return out, 0


@njit(nogil=True, cache=True)
def _nearest_axis(x, m, scale):
    """Nearest level of an m-level PAM (levels (2k - (m-1)) * scale)."""
    k = np.floor((x / scale + (m - 1)) * 0.5 + 0.5)
    if k < 0:
        k = 0.0
    elif k > m - 1:
        k = float(m - 1)
    return (2.0 * k - (m - 1)) * scale


@njit(nogil=True, cache=True)
def _ofdm_pilot_rot(grid, h, pil, psym, rot):
    """OfdmSpec.pilot_phase and the 9-symbol sliding phase of
    OfdmSpec.equalize: fills rot[s] = exp(-1j phase[s]); returns the slope."""
    nsym = grid.shape[0]
    npil = pil.size
    corr = np.zeros(nsym, np.complex128)
    for s in range(nsym):
        a = 0j
        for p in range(npil):
            c = pil[p]
            a += complex(grid[s, c]) * np.conj(complex(h[c]) * complex(psym[s, p]))
        corr[s] = a
    acc = 0j
    for s in range(1, nsym):
        acc += corr[s] * np.conj(corr[s - 1])
    slope = np.angle(acc) if nsym > 1 else 0.0
    flat = np.empty(nsym, np.complex128)
    for s in range(nsym):
        flat[s] = corr[s] * np.exp(-1j * slope * s)
    for s in range(nsym):
        a = 0j
        for i in range(max(s - 4, 0), min(s + 5, nsym)):
            a += flat[i]
        rot[s] = np.exp(-1j * (np.angle(a) + slope * s))
    return slope


@njit(nogil=True, cache=True)
def _smooth_active(h, active, smoother, tmp):
    """h[active] = smoother @ tmp (the delay-domain projection of
    OfdmSpec._smoother), written into the complex64 channel h."""
    na = active.size
    for i in range(na):
        a = 0j
        for j in range(na):
            a += smoother[i, j] * tmp[j]
        h[active[i]] = a


@njit(nogil=True, cache=True)
def ofdm_equalize(grid, h0, smooth_first, active, occ, pil, psym, smoother, passes, m_axis, scale, y, g):
    """OfdmSpec.equalize (the numpy reference) in one kernel: channel from
    the sync-symbol-2 estimate ``h0`` (delay-domain smoothed if
    ``smooth_first``), ``passes`` decision-directed refinements, the pilot
    common phase. ``m_axis``: PAM levels per axis of the square constellation
    (0: BPSK), ``scale`` its level spacing / 2. Writes the equalised data
    symbols ``y`` (nsym * occupied, complex64) and their carrier gains ``g``
    (float32); returns (N0, nothing else needed by soft_demap)."""
    nsym, n = grid.shape
    na = active.size
    h = h0.copy()
    tmp = np.empty(na, np.complex128)
    if smooth_first:
        for i in range(na):
            tmp[i] = h[active[i]]
        _smooth_active(h, active, smoother, tmp)
    rot = np.empty(nsym, np.complex128)
    num = np.zeros(n, np.complex128)
    den = np.ones(n, np.float64)
    inv = np.zeros(n, np.complex128)  # 1 / h on the active carriers (a product per symbol, not a division)
    for it in range(passes + 1):
        _ofdm_pilot_rot(grid, h, pil, psym, rot)
        if it == passes:
            break
        num[:] = 0
        den[:] = 1.0
        for i in range(na):
            num[active[i]] = h[active[i]]
            inv[active[i]] = 1.0 / complex(h[active[i]])
        for s in range(nsym):
            r = rot[s]
            for c in occ:
                z = complex(grid[s, c]) * r
                v = z * inv[c]
                if m_axis == 0:
                    d = complex(-1.0 if v.real < 0 else 1.0, 0.0)
                else:
                    d = complex(_nearest_axis(v.real, m_axis, scale), _nearest_axis(v.imag, m_axis, scale))
                num[c] += z * np.conj(d)
                den[c] += d.real * d.real + d.imag * d.imag
            for p in range(pil.size):
                c = pil[p]
                q = complex(psym[s, p])
                num[c] += complex(grid[s, c]) * r * np.conj(q)
                den[c] += q.real * q.real + q.imag * q.imag
        for i in range(na):
            tmp[i] = num[active[i]] / den[active[i]]
        _smooth_active(h, active, smoother, tmp)
    # N0 from the pilot residuals around each pilot carrier's mean
    for i in range(na):
        inv[active[i]] = 1.0 / complex(h[active[i]])
    npil = pil.size
    tot = 0.0
    for p in range(npil):
        c = pil[p]
        gp = h[c].real * h[c].real + h[c].imag * h[c].imag
        mean = 0j
        for s in range(nsym):
            q = complex(psym[s, p])
            mean += (complex(grid[s, c]) * inv[c] * rot[s] - q) * np.conj(q)
        mean /= nsym
        for s in range(nsym):
            q = complex(psym[s, p])
            e = (complex(grid[s, c]) * inv[c] * rot[s] - q) * np.conj(q) - mean
            tot += (e.real * e.real + e.imag * e.imag) * gp
    n0 = tot / (nsym * npil) * nsym / max(nsym - 1, 1)
    k = 0
    for s in range(nsym):
        for c in occ:
            y[k] = complex(grid[s, c]) * inv[c] * rot[s]
            g[k] = h[c].real * h[c].real + h[c].imag * h[c].imag
            k += 1
    return max(n0, 1e-9)


# ------------------------------------------------------------ sanitize ----

@njit(nogil=True, cache=True)
def count_nonfinite(x):
    bad = 0
    for i in range(x.size):
        if not (np.isfinite(x[i].real) and np.isfinite(x[i].imag)):
            bad += 1
    return bad


@njit(nogil=True, cache=True)
def copy_finite(x, y):
    """y[:] = x with non-finite samples replaced by 0; returns how many were."""
    bad = 0
    for i in range(x.size):
        v = x[i]
        if np.isfinite(v.real) and np.isfinite(v.imag):
            y[i] = v
        else:
            y[i] = 0
            bad += 1
    return bad
