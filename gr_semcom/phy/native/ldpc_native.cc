// gr_semcom's compiled LDPC decoder: the whole flooding sum-product (or
// normalised min-sum) decode of a burst's codewords in one call, with the GIL
// released for all of it. No GNU Radio here: the phy layer's own module, built
// by scripts/build_native.sh against pybind11 (Debian's pybind11-dev).
//
// Why it exists next to the numpy reference (MinSumDecoder.decode_numpy) and
// the numba kernels (phy/kernels.py): the numba path runs one Python-level
// loop per sum-product iteration with three kernel calls and two numpy phi
// calls, each releasing and retaking the GIL. In a receiver whose
// demodulator, decoder and frame decoder threads share two cores, each of
// those hand-offs costs a futex round trip and the CPU time per burst grew
// 1.5-3x over the same calls alone (docs/receiver_speed.md). Here a burst is
// one hand-off. phi(x) = -ln tanh(x/2) is evaluated over whole edge arrays so
// that GCC vectorises it with glibc's libmvec (tanhf, logf, 8 lanes on AVX2):
// the numpy reference's own SIMD functions differ from libmvec's in the last
// bits, so this decoder is tested on its decisions against the reference
// (tests/test_ldpc_native.py), not bit for bit.
//
// Message schedule, clipping and conventions are the reference's
// (gr_semcom/phy/ldpc.py): check-major edges e = i * dc + j, padded rows point
// at variable n (reliability BIG, never negative, phi 0), padded variable
// edges point at edge E (a zero message); LLR = log P(0) / P(1).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

namespace py = pybind11;

namespace {

constexpr float BIG = 1e30f;
constexpr float PHI_LO = 1e-7f;
constexpr float PHI_HI = 30.0f;

// -ln tanh(x / 2), x clipped to [PHI_LO, PHI_HI]; one loop with no branches
// so that it vectorises (libmvec) under -O3 -ffast-math
void phi_inplace(float *__restrict x, int n) {
    for (int i = 0; i < n; ++i) {
        float v = x[i];
        v = v < PHI_LO ? PHI_LO : v;
        v = v > PHI_HI ? PHI_HI : v;
        x[i] = -logf(tanhf(v * 0.5f));
    }
}

struct Code {
    int n, m, dc, dv;
    const int32_t *rows;  // (m, dc), pad = n
    const int32_t *ve;    // (n, dv), pad = m * dc
};

// one codeword's scratch arrays (edge messages, totals, signs, parities),
// sized for the code once and reused for every codeword
struct Workspace {
    std::vector<float> total, c2v, mag, arg;
    std::vector<uint8_t> neg, par, hard_ext;
    explicit Workspace(const Code &c)
        : total(c.n + 1), c2v(c.m * c.dc + 1), mag(c.m * c.dc), arg(c.m * c.dc), neg(c.m * c.dc), par(c.m),
          hard_ext(c.n + 1) {}
};

template <int DC>
bool syndrome_ok(const Code &c, const uint8_t *hard_ext) {
    // hard_ext: n + 1 bits, the padding variable last (0)
    const int dc = DC > 0 ? DC : c.dc;
    for (int i = 0; i < c.m; ++i) {
        uint8_t p = 0;
        const int32_t *r = c.rows + (size_t)i * dc;
        for (int j = 0; j < dc; ++j) p ^= hard_ext[r[j]];
        if (p) return false;
    }
    return true;
}

// decode_one's body. DC, DV > 0: the code's check and variable degrees as compile-time
// constants (the inner loops unrolled; measured on the 1/2 code's 6 and 3,
// one iteration per codeword: sum-product 1.2x, min-sum 1.6x faster), 0:
// read from the code (any other shape)
template <int DC, int DV>
int decode_one_t(const Code &c, const float *L, int max_iter, int minsum, float alpha, uint8_t *hard,
                 bool *ok, Workspace &ws) {
    const int n = c.n, m = c.m, dc = DC > 0 ? DC : c.dc, dv = DV > 0 ? DV : c.dv;
    std::vector<float> &total = ws.total, &c2v = ws.c2v, &mag = ws.mag, &arg = ws.arg;
    std::vector<uint8_t> &neg = ws.neg, &par = ws.par, &hard_ext = ws.hard_ext;
    const int E = m * dc;
    for (int v = 0; v < n; ++v) hard_ext[v] = L[v] < 0.0f;
    hard_ext[n] = 0;
    for (int v = 0; v < n; ++v) hard[v] = hard_ext[v];
    if (syndrome_ok<DC>(c, hard_ext.data())) {
        *ok = true;
        return 0;
    }
    for (int v = 0; v < n; ++v) total[v] = L[v];
    total[n] = BIG;
    std::fill(c2v.begin(), c2v.end(), 0.0f);  // E + 1: the last is the zero message
    float *__restrict tot = total.data();
    float *__restrict msg = c2v.data();
    float *__restrict mg = mag.data();
    float *__restrict ag = arg.data();
    uint8_t *__restrict ng = neg.data();
    for (int it = 1; it <= max_iter; ++it) {
        // variable -> check: the total minus this edge's incoming message
        for (int e = 0; e < E; ++e) {
            float t = tot[c.rows[e]] - msg[e];
            ng[e] = t < 0.0f;
            mg[e] = std::fabs(t);
        }
        for (int i = 0; i < m; ++i) {
            uint8_t p = 0;
            for (int j = 0; j < dc; ++j) p ^= ng[i * dc + j];
            par[i] = p;
        }
        if (!minsum) {
            phi_inplace(mg, E);
            for (int i = 0; i < m; ++i) {
                const float *ph = mg + (size_t)i * dc;
                float s = 0.0f;
                for (int j = 0; j < dc; ++j) s += ph[j];
                for (int j = 0; j < dc; ++j) ag[i * dc + j] = s - ph[j];
            }
            phi_inplace(ag, E);
        } else {
            for (int i = 0; i < m; ++i) {
                const float *mm = mg + (size_t)i * dc;
                float min1 = mm[0], min2 = BIG;
                for (int j = 1; j < dc; ++j) {
                    float a = mm[j];
                    min2 = std::min(min2, std::max(min1, a));
                    min1 = std::min(min1, a);
                }
                for (int j = 0; j < dc; ++j) ag[i * dc + j] = (mm[j] == min1 ? min2 : min1) * alpha;
            }
        }
        // check -> variable: sign of the others, zero on padded edges
        for (int i = 0; i < m; ++i) {
            const int32_t *r = c.rows + (size_t)i * dc;
            for (int j = 0; j < dc; ++j) {
                const int e = i * dc + j;
                float o = (ng[e] ^ par[i]) ? -ag[e] : ag[e];
                msg[e] = r[j] == n ? 0.0f : o;
            }
        }
        for (int v = 0; v < n; ++v) {
            const int32_t *k = c.ve + (size_t)v * dv;
            float s = 0.0f;
            for (int j = 0; j < dv; ++j) s += msg[k[j]];
            tot[v] = L[v] + s;
            hard_ext[v] = tot[v] < 0.0f;
        }
        if (syndrome_ok<DC>(c, hard_ext.data())) {
            for (int v = 0; v < n; ++v) hard[v] = hard_ext[v];
            *ok = true;
            return it;
        }
    }
    for (int v = 0; v < n; ++v) hard[v] = hard_ext[v];
    *ok = false;
    return max_iter;
}

// one codeword; returns iterations used (0: the channel decisions satisfied
// every check), writes hard (n) and ok. The shapes of gr-fec's codes that
// the project uses (fec.get_code: 1/4, 2/5, 1/2) get their own compiled loops.
int decode_one(const Code &c, const float *L, int max_iter, int minsum, float alpha, uint8_t *hard,
               bool *ok, Workspace &ws) {
    if (c.dc == 6 && c.dv == 3) return decode_one_t<6, 3>(c, L, max_iter, minsum, alpha, hard, ok, ws);
    if (c.dc == 5 && c.dv == 3) return decode_one_t<5, 3>(c, L, max_iter, minsum, alpha, hard, ok, ws);
    if (c.dc == 4 && c.dv == 3) return decode_one_t<4, 3>(c, L, max_iter, minsum, alpha, hard, ok, ws);
    return decode_one_t<0, 0>(c, L, max_iter, minsum, alpha, hard, ok, ws);
}

// the code of rows (m, dc) and var_edges (n, dv), its indices checked (the
// decode loops index with them unchecked); the arrays must outlive it
Code make_code(const int32_t *rows, py::ssize_t m, py::ssize_t dc, const int32_t *var_edges, py::ssize_t n,
               py::ssize_t dv) {
    Code c;
    c.n = (int)n;
    c.m = (int)m;
    c.dc = (int)dc;
    c.dv = (int)dv;
    c.rows = rows;
    c.ve = var_edges;
    const int E = c.m * c.dc;
    for (py::ssize_t e = 0; e < m * dc; ++e)
        if (rows[e] < 0 || rows[e] > c.n) throw std::invalid_argument("rows: variable index out of range");
    for (py::ssize_t e = 0; e < n * dv; ++e)
        if (var_edges[e] < 0 || var_edges[e] > E) throw std::invalid_argument("var_edges: edge index out of range");
    return c;
}

template <typename T>
T *checked(py::array &a, const char *name, py::ssize_t size, bool writable) {
    if (!(a.flags() & py::array::c_style)) throw std::invalid_argument(std::string(name) + " must be C-contiguous");
    if (a.itemsize() != (py::ssize_t)sizeof(T)) throw std::invalid_argument(std::string(name) + ": wrong dtype");
    if (a.size() != size) throw std::invalid_argument(std::string(name) + ": wrong size");
    if (writable && !a.writeable()) throw std::invalid_argument(std::string(name) + " is read-only");
    return static_cast<T *>(a.mutable_data());
}

void decode(py::array_t<float, py::array::c_style> llr, py::array_t<int32_t, py::array::c_style> rows,
            py::array_t<int32_t, py::array::c_style> var_edges, int max_iter, bool minsum, float alpha,
            py::array hard, py::array ok, py::array iters) {
    if (llr.ndim() != 2 || rows.ndim() != 2 || var_edges.ndim() != 2)
        throw std::invalid_argument("llr (codewords, n), rows (m, dc), var_edges (n, dv)");
    if (max_iter < 1) throw std::invalid_argument("max_iter >= 1");
    const py::ssize_t b = llr.shape(0);
    if (var_edges.shape(0) != llr.shape(1)) throw std::invalid_argument("var_edges has a row per variable");
    const Code c = make_code(rows.data(), rows.shape(0), rows.shape(1), var_edges.data(), var_edges.shape(0),
                             var_edges.shape(1));
    uint8_t *h = checked<uint8_t>(hard, "hard", b * c.n, true);
    bool *k = checked<bool>(ok, "ok", b, true);
    int32_t *its = checked<int32_t>(iters, "iters", b, true);
    const float *L = llr.data();
    {
        py::gil_scoped_release nogil;
        Workspace ws(c);
        for (py::ssize_t w = 0; w < b; ++w)
            its[w] = decode_one(c, L + w * c.n, max_iter, minsum, alpha, h + w * c.n, k + w, ws);
    }
}

// The same decoder on a thread of its own: submit() queues a burst's
// codewords (copied) and returns at once, take() hands back the results in
// submission order. Why: on the 2-core box the receiver's Python work runs
// best in one thread (every hand-off of the GIL between two Python threads
// on different cores cost more than it saved, docs/receiver_speed.md), so
// the demodulator's thread keeps all of it and only the decode, which needs
// no Python, moves to the other core. One worker thread: results come out
// in the order they went in.
class AsyncDecoder {
    struct Job {
        int b;
        std::vector<float> llr;
    };
    struct Result {
        int b;
        std::vector<uint8_t> hard, ok;
        std::vector<int32_t> iters;
    };
    std::vector<int32_t> rows_, ve_;
    Code c_;
    int max_iter_;
    bool minsum_;
    float alpha_;
    std::mutex m_;
    std::condition_variable cv_job_, cv_done_;
    std::deque<Job> jobs_;
    std::deque<Result> done_;
    bool busy_ = false, closing_ = false;
    std::thread worker_;

    void run() {
        Workspace ws(c_);
        for (;;) {
            Job job;
            {
                std::unique_lock<std::mutex> lk(m_);
                cv_job_.wait(lk, [&] { return closing_ || !jobs_.empty(); });
                if (closing_) return;
                job = std::move(jobs_.front());
                jobs_.pop_front();
                busy_ = true;
            }
            Result r;
            r.b = job.b;
            r.hard.resize((size_t)job.b * c_.n);
            r.ok.resize(job.b);
            r.iters.resize(job.b);
            for (int w = 0; w < job.b; ++w) {
                bool ok = false;
                r.iters[w] = decode_one(c_, job.llr.data() + (size_t)w * c_.n, max_iter_, minsum_, alpha_,
                                        r.hard.data() + (size_t)w * c_.n, &ok, ws);
                r.ok[w] = ok;
            }
            {
                std::lock_guard<std::mutex> lk(m_);
                done_.push_back(std::move(r));
                busy_ = false;
            }
            cv_done_.notify_all();
        }
    }

public:
    AsyncDecoder(py::array_t<int32_t, py::array::c_style> rows, py::array_t<int32_t, py::array::c_style> var_edges,
                 int max_iter, bool minsum, float alpha)
        : max_iter_(max_iter), minsum_(minsum), alpha_(alpha) {
        if (rows.ndim() != 2 || var_edges.ndim() != 2) throw std::invalid_argument("rows (m, dc), var_edges (n, dv)");
        if (max_iter < 1) throw std::invalid_argument("max_iter >= 1");
        rows_.assign(rows.data(), rows.data() + rows.size());
        ve_.assign(var_edges.data(), var_edges.data() + var_edges.size());
        c_ = make_code(rows_.data(), rows.shape(0), rows.shape(1), ve_.data(), var_edges.shape(0),
                       var_edges.shape(1));
        worker_ = std::thread([this] { run(); });
    }
    ~AsyncDecoder() { close(); }

    // queue (codewords, n) float32 LLRs; false (nothing queued) once closed
    bool submit(py::array_t<float, py::array::c_style> llr) {
        if (llr.ndim() != 2 || llr.shape(1) != c_.n)
            throw std::invalid_argument("llr must be (codewords, " + std::to_string(c_.n) + ")");
        Job job;
        job.b = (int)llr.shape(0);
        job.llr.resize(llr.size());
        // copied with MinSumDecoder._prepare's rule for values that are not
        // finite (NaN -> 0, +-inf -> +-1e30), tested on the bits (-ffast-math
        // lets the compiler assume std::isfinite is always true)
        const float *src = llr.data();
        float *dst = job.llr.data();
        for (py::ssize_t i = 0; i < llr.size(); ++i) {
            uint32_t u;
            std::memcpy(&u, src + i, 4);
            if ((u & 0x7f800000u) == 0x7f800000u)
                dst[i] = (u & 0x007fffffu) ? 0.0f : ((u >> 31) ? -BIG : BIG);
            else
                dst[i] = src[i];
        }
        {
            std::lock_guard<std::mutex> lk(m_);
            if (closing_) return false;
            jobs_.push_back(std::move(job));
        }
        cv_job_.notify_one();
        return true;
    }

    // the oldest result not yet taken, as (hard (b, n) uint8, ok (b,) bool,
    // iters (b,) int32); None if it is not ready (block false) or if nothing
    // is queued or the decoder is closed (block true: waits, GIL released)
    py::object take(bool block) {
        Result r;
        bool got = false;
        {
            // the GIL is released only to wait: the worker holds the mutex for a
            // few instructions and never takes the GIL, so a poll keeps it
            std::optional<py::gil_scoped_release> nogil;
            if (block) nogil.emplace();
            std::unique_lock<std::mutex> lk(m_);
            if (block)
                cv_done_.wait(lk, [&] { return closing_ || !done_.empty() || (jobs_.empty() && !busy_); });
            if (!done_.empty()) {
                r = std::move(done_.front());
                done_.pop_front();
                got = true;
            }
        }
        if (!got) return py::none();
        py::array_t<uint8_t> hard({(py::ssize_t)r.b, (py::ssize_t)c_.n});
        py::array_t<bool> ok((py::ssize_t)r.b);
        py::array_t<int32_t> iters((py::ssize_t)r.b);
        std::memcpy(hard.mutable_data(), r.hard.data(), r.hard.size());
        bool *okp = ok.mutable_data();
        for (int w = 0; w < r.b; ++w) okp[w] = r.ok[w] != 0;
        std::memcpy(iters.mutable_data(), r.iters.data(), r.iters.size() * sizeof(int32_t));
        return py::make_tuple(hard, ok, iters);
    }

    // bursts submitted and not yet taken
    int outstanding() {
        std::lock_guard<std::mutex> lk(m_);
        return (int)(jobs_.size() + done_.size()) + (busy_ ? 1 : 0);
    }

    // stop the worker after the burst it is decoding; queued and untaken results are dropped
    void close() {
        {
            std::lock_guard<std::mutex> lk(m_);
            closing_ = true;
        }
        cv_job_.notify_all();
        cv_done_.notify_all();
        if (worker_.joinable() && worker_.get_id() != std::this_thread::get_id()) worker_.join();
    }
};

void phi(py::array_t<float, py::array::c_style> x) {
    py::buffer_info bi = x.request(true);
    phi_inplace(static_cast<float *>(bi.ptr), (int)bi.size);
}

}  // namespace

PYBIND11_MODULE(_ldpc_native, mod) {
    mod.doc() = "gr_semcom's compiled LDPC decoder (flooding sum-product / min-sum, GIL released)";
    mod.def("decode", &decode, py::arg("llr"), py::arg("rows"), py::arg("var_edges"), py::arg("max_iter"),
            py::arg("minsum"), py::arg("alpha"), py::arg("hard"), py::arg("ok"), py::arg("iters"),
            "Decode every codeword of llr (codewords, n) float32 in place of hard (uint8), ok (bool), iters "
            "(int32); rows (m, dc) and var_edges (n, dv) int32 in the check-major layout of MinSumDecoder.");
    py::class_<AsyncDecoder>(mod, "AsyncDecoder",
                             "The decoder on a C++ thread of its own: submit() queues a burst, take() returns "
                             "results in submission order (see ldpc_native.cc)")
        .def(py::init<py::array_t<int32_t, py::array::c_style>, py::array_t<int32_t, py::array::c_style>, int, bool,
                      float>(),
             py::arg("rows"), py::arg("var_edges"), py::arg("max_iter"), py::arg("minsum"), py::arg("alpha"))
        .def("submit", &AsyncDecoder::submit, py::arg("llr"))
        .def("take", &AsyncDecoder::take, py::arg("block") = false)
        .def("outstanding", &AsyncDecoder::outstanding)
        .def("close", &AsyncDecoder::close, py::call_guard<py::gil_scoped_release>());
    mod.def("phi", &phi, py::arg("x"), "-ln tanh(x/2) in place, x clipped to [1e-7, 30] (the decoder's phi)");
}
