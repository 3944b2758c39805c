// gr_semcom's compiled GNU Radio blocks (C++17, GNU Radio 3.10 runtime,
// pybind11). Why this file exists: GNU Radio has no block that replaces
// NaN/inf samples, and a Python stream block pays the gateway's fixed cost on
// every work() call (measured ~150-250 us per call on the 2-core CI box, for a
// 4 us copy), which made the receiver's NaN guard the most expensive block of
// its stream side (benchmarks/results/rx_speed.md). The Python block
// (phy_blocks.sanitize_cc) stays the tested reference and the fallback when
// this module is not built (scripts/build_native.sh).
#include <gnuradio/io_signature.h>
#include <gnuradio/sync_block.h>
#include <pmt/pmt.h>
#include <pybind11/complex.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <chrono>
#include <complex>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace py = pybind11;

namespace gr_semcom {

// complex in -> the same samples out, NaN/inf samples (either part) replaced
// by 0; publishes {event: non_finite, samples: running count, offset: first
// item of the work call} on "status" at most once per work() call, as the
// Python sanitize_cc does.
class nan_guard_cc : public gr::sync_block
{
    std::atomic<uint64_t> d_bad{ 0 };
    std::atomic<uint64_t> d_calls{ 0 };
    const pmt::pmt_t d_port = pmt::mp("status");

public:
    typedef std::shared_ptr<nan_guard_cc> sptr;
    static sptr make() { return gnuradio::make_block_sptr<nan_guard_cc>(); }

    nan_guard_cc()
        : gr::sync_block("semcom_nan_guard_cc",
                         gr::io_signature::make(1, 1, sizeof(gr_complex)),
                         gr::io_signature::make(1, 1, sizeof(gr_complex)))
    {
        message_port_register_out(d_port);
    }

    int work(int noutput_items,
             gr_vector_const_void_star& input_items,
             gr_vector_void_star& output_items) override
    {
        // floats as bits: a value is NaN or inf exactly when its exponent bits
        // are all ones (IEEE 754); branch-free, so the loop vectorises
        const uint32_t* x = static_cast<const uint32_t*>(input_items[0]);
        uint32_t* y = static_cast<uint32_t*>(output_items[0]);
        const int n = noutput_items;
        uint32_t bad = 0;
        for (int i = 0; i < n; i++) {
            const uint32_t re = x[2 * i], im = x[2 * i + 1];
            const uint32_t nf = ((re & 0x7f800000u) == 0x7f800000u) |
                                ((im & 0x7f800000u) == 0x7f800000u);
            const uint32_t keep = nf - 1u; // all ones if finite, 0 if not
            y[2 * i] = re & keep;
            y[2 * i + 1] = im & keep;
            bad += nf;
        }
        d_calls++;
        if (bad) {
            const uint64_t total = (d_bad += bad);
            pmt::pmt_t d = pmt::make_dict();
            d = pmt::dict_add(d, pmt::mp("event"), pmt::mp("non_finite"));
            d = pmt::dict_add(d, pmt::mp("samples"), pmt::from_long(static_cast<long>(total)));
            d = pmt::dict_add(d, pmt::mp("offset"), pmt::from_long(static_cast<long>(nitems_read(0))));
            message_port_pub(d_port, d);
        }
        return noutput_items;
    }

    uint64_t bad() const { return d_bad; }
    uint64_t calls() const { return d_calls; }
};

// The preamble detector's normaliser in one block: x / (running RMS + eps),
// the arithmetic of GNU Radio's rms_cf (single-pole average of |x|^2 in
// double, alpha), add_const_ff (eps) and divide_cc (to 1 ulp: divide_cc
// divides by the complex number r + 0j), which phy_hier's
// preamble_detector otherwise chains (and still does without this module).
// GNU Radio has no single block for it; the four cost four threads, three
// buffers and four work() calls per chunk, about 15 % of the receiver's CPU
// in a 10 Msps replay (docs/receiver_speed.md).
class rms_normalize_cc : public gr::sync_block
{
    const double d_alpha, d_beta;
    const float d_eps;
    double d_avg = 0.0;

public:
    typedef std::shared_ptr<rms_normalize_cc> sptr;
    static sptr make(double alpha, float eps)
    {
        return gnuradio::make_block_sptr<rms_normalize_cc>(alpha, eps);
    }

    rms_normalize_cc(double alpha, float eps)
        : gr::sync_block("semcom_rms_normalize_cc",
                         gr::io_signature::make(1, 1, sizeof(gr_complex)),
                         gr::io_signature::make(1, 1, sizeof(gr_complex))),
          d_alpha(alpha),
          d_beta(1.0 - alpha),
          d_eps(eps)
    {
        if (!(alpha > 0.0 && alpha <= 1.0))
            throw std::invalid_argument("rms_normalize_cc: alpha must be in (0, 1]");
    }

    int work(int noutput_items,
             gr_vector_const_void_star& input_items,
             gr_vector_void_star& output_items) override
    {
        const gr_complex* x = static_cast<const gr_complex*>(input_items[0]);
        gr_complex* y = static_cast<gr_complex*>(output_items[0]);
        for (int i = 0; i < noutput_items; i++) {
            const float re = x[i].real(), im = x[i].imag();
            const double mag_sqrd = re * re + im * im; // float products, as rms_cf
            d_avg = d_beta * d_avg + d_alpha * mag_sqrd;
            const float r = static_cast<float>(std::sqrt(d_avg)) + d_eps;
            y[i] = gr_complex(re / r, im / r);
        }
        return noutput_items;
    }
};

// Input 0 delayed by `delay` samples, carrying the tags of input 1 at the
// same item offsets (input 1 is the correlator's output, which lags input 0
// by that delay): GNU Radio's delay + tag_share in one block, for the same
// reason as rms_normalize_cc. Tags of input 0 are not copied: the tags of
// the detector's input reach input 1 through the normaliser and the
// correlator, moved by the delay, so each comes out once.
class tag_align_cc : public gr::sync_block
{
    const int d_delay;
    std::vector<gr::tag_t> d_tags;

public:
    typedef std::shared_ptr<tag_align_cc> sptr;
    static sptr make(int delay) { return gnuradio::make_block_sptr<tag_align_cc>(delay); }

    tag_align_cc(int delay)
        : gr::sync_block("semcom_tag_align_cc",
                         gr::io_signature::make(2, 2, sizeof(gr_complex)),
                         gr::io_signature::make(1, 1, sizeof(gr_complex))),
          d_delay(delay)
    {
        if (delay < 0)
            throw std::invalid_argument("tag_align_cc: delay >= 0");
        set_history(delay + 1); // x[0] is the item `delay` before the first one read
        set_tag_propagation_policy(TPP_DONT);
    }

    int work(int noutput_items,
             gr_vector_const_void_star& input_items,
             gr_vector_void_star& output_items) override
    {
        std::memcpy(output_items[0], input_items[0], noutput_items * sizeof(gr_complex));
        const uint64_t r = nitems_read(1);
        get_tags_in_range(d_tags, 1, r, r + noutput_items);
        for (const auto& t : d_tags)
            add_item_tag(0, t.offset, t.key, t.value, t.srcid);
        return noutput_items;
    }

    int delay() const { return d_delay; }
};

// Bursts cut out and not yet demodulated: the capture waits while
// max_pending are outstanding (back-pressure), as phy_blocks.Backlog.
class burst_backlog
{
    std::mutex d_m;
    std::condition_variable d_cv;
    int d_n = 0;
    int d_waiters = 0;
    bool d_closed = false;

public:
    const int max_pending;
    // a waiting capture is woken once the backlog has drained to this many, not
    // at every freed slot: each wake-up is a futex call and, on a VM, an
    // inter-processor interrupt (py-spy: ~10 % of the demodulator thread's
    // samples sat in release() when it woke the capture for every burst); the
    // capture then cuts several bursts in one go. Its 50 ms wait timeout
    // bounds the delay either way.
    const int low_water;
    explicit burst_backlog(int max_pending)
        : max_pending(max_pending), low_water(std::max(max_pending / 2, 0))
    {
    }

    // 1: took a slot; 0: still full after timeout_s; -1: closed
    int acquire_for(double timeout_s)
    {
        std::unique_lock<std::mutex> lk(d_m);
        const auto until = std::chrono::steady_clock::now() +
                           std::chrono::microseconds(static_cast<int64_t>(timeout_s * 1e6));
        while (d_n >= max_pending) {
            if (d_closed)
                return -1;
            d_waiters++;
            const auto st = d_cv.wait_until(lk, until);
            d_waiters--;
            if (st == std::cv_status::timeout && d_n >= max_pending)
                return d_closed ? -1 : 0;
        }
        d_n++;
        return 1;
    }
    bool acquire(const std::atomic<bool>& stopping)
    {
        for (;;) {
            const int r = acquire_for(0.05);
            if (r == 1)
                return true;
            if (r < 0 || stopping)
                return false;
        }
    }
    void release()
    {
        std::unique_lock<std::mutex> lk(d_m);
        d_n = std::max(d_n - 1, 0);
        const bool wake = d_waiters > 0 && d_n <= low_water;
        lk.unlock();
        if (wake)
            d_cv.notify_all();
    }
    void close()
    {
        std::lock_guard<std::mutex> lk(d_m);
        d_closed = true;
        d_cv.notify_all();
    }
    void reopen()
    {
        std::lock_guard<std::mutex> lk(d_m);
        d_n = 0;
        d_closed = false;
    }
    int pending()
    {
        std::lock_guard<std::mutex> lk(d_m);
        return d_n;
    }
    bool closed()
    {
        std::lock_guard<std::mutex> lk(d_m);
        return d_closed;
    }
};

// Fixed-length burst at every tag (phy_blocks.burst_capture, the tested
// reference, says why not pdu.tags_to_pdu_c): every tag more than min_gap
// after the last one opens its own capture (at most max_active at once) of
// `length` samples from `lead` before the tag. A finished burst stays here,
// under an id; the message on "pdus" is (u64 id . empty u8vector), as
// phy_blocks.LocalPdus sends, and take(id) hands the samples to Python as a
// numpy array without a copy. With tag_delay > 0 it has two inputs, as
// phy_blocks.burst_capture: the samples on input 0 and the tags on input 1,
// a stream that lags input 0 by tag_delay samples (the correlator's output),
// so the bursts, their offsets and the samples consumed are those of input 0
// delayed by tag_delay with input 1's tags (what delay + tag_share fed it),
// without those blocks.
class burst_capture_c : public gr::sync_block
{
    struct capture {
        int64_t start;
        std::vector<gr_complex> data;
        int filled;
    };
    const int d_length, d_lead, d_min_gap, d_max_active, d_tag_delay, d_tag_port;
    const pmt::pmt_t d_key, d_port = pmt::mp("pdus"), d_empty = pmt::make_u8vector(0, 0);
    int64_t d_last_tag = -(int64_t(1) << 62);
    std::vector<capture> d_active;
    std::mutex d_reg_m;
    std::unordered_map<uint64_t, std::pair<int64_t, std::vector<gr_complex>>> d_registry;
    uint64_t d_next_id = 0;
    std::atomic<bool> d_stopping{ false };
    std::vector<gr::tag_t> d_tags;

public:
    std::atomic<uint64_t> captured{ 0 }, published{ 0 }, skipped{ 0 }, overflows{ 0 }, calls{ 0 };
    burst_backlog backlog;

    typedef std::shared_ptr<burst_capture_c> sptr;
    static sptr make(int length, int lead, const std::string& key, int max_active, int min_gap, int max_pending,
                     int tag_delay)
    {
        return gnuradio::make_block_sptr<burst_capture_c>(length, lead, key, max_active, min_gap, max_pending,
                                                          tag_delay);
    }

    burst_capture_c(int length, int lead, const std::string& key, int max_active, int min_gap, int max_pending,
                    int tag_delay)
        : gr::sync_block("semcom_burst_capture_c",
                         gr::io_signature::make(tag_delay > 0 ? 2 : 1, tag_delay > 0 ? 2 : 1, sizeof(gr_complex)),
                         gr::io_signature::make(0, 0, 0)),
          d_length(length),
          d_lead(lead),
          d_min_gap(min_gap),
          d_max_active(max_active),
          d_tag_delay(tag_delay),
          d_tag_port(tag_delay > 0 ? 1 : 0),
          d_key(pmt::mp(key)),
          backlog(max_pending)
    {
        if (length < 1 || lead < 0 || max_active < 1 || max_pending < 1 || tag_delay < 0)
            throw std::invalid_argument(
                "burst_capture_c: length, max_active, max_pending >= 1, lead, tag_delay >= 0");
        // x[0] is then item base - lead of input 0 delayed by tag_delay
        set_history(lead + tag_delay + 1);
        message_port_register_out(d_port);
    }

    bool start() override
    {
        d_stopping = false;
        std::lock_guard<std::mutex> lk(d_reg_m);
        d_registry.clear();
        return true;
    }
    bool stop() override
    {
        d_stopping = true;
        return true;
    }

    int work(int noutput_items,
             gr_vector_const_void_star& input_items,
             gr_vector_void_star&) override
    {
        // x[0]: item base - lead (of input 0 delayed by tag_delay, see the constructor)
        const gr_complex* x = static_cast<const gr_complex*>(input_items[0]);
        const int64_t n = noutput_items;
        const int64_t base = static_cast<int64_t>(nitems_read(0));
        calls++;
        get_tags_in_window(d_tags, d_tag_port, 0, n, d_key);
        std::sort(d_tags.begin(), d_tags.end(), gr::tag_t::offset_compare);
        for (const auto& t : d_tags) {
            const int64_t off = static_cast<int64_t>(t.offset);
            if (off - d_last_tag <= d_min_gap) {
                skipped++;
                continue;
            }
            d_last_tag = off;
            if (static_cast<int>(d_active.size()) >= d_max_active) {
                overflows++;
                continue;
            }
            d_active.push_back({ off - d_lead, std::vector<gr_complex>(d_length), 0 });
        }
        size_t keep = 0;
        for (size_t i = 0; i < d_active.size(); i++) {
            capture& c = d_active[i];
            const int64_t lo = std::max<int64_t>(c.start + c.filled - base + d_lead, 0);
            const int64_t take = std::min<int64_t>(d_length - c.filled, n + d_lead - lo);
            if (take > 0) {
                std::memcpy(c.data.data() + c.filled, x + lo, take * sizeof(gr_complex));
                c.filled += static_cast<int>(take);
            }
            if (c.filled >= d_length) {
                captured++;
                if (!backlog.acquire(d_stopping))
                    continue; // flowgraph stopping: the burst is dropped
                uint64_t id;
                {
                    std::lock_guard<std::mutex> lk(d_reg_m);
                    id = d_next_id++;
                    d_registry.emplace(id, std::make_pair(c.start, std::move(c.data)));
                }
                published++; // counted before publishing (in-flight counts never too low)
                message_port_pub(d_port, pmt::cons(pmt::from_uint64(id), d_empty));
            } else {
                if (keep != i)
                    d_active[keep] = std::move(c);
                keep++;
            }
        }
        d_active.resize(keep);
        return noutput_items;
    }

    // (stream offset of the burst's first sample, samples): moved out of the registry
    py::tuple take(uint64_t id)
    {
        std::pair<int64_t, std::vector<gr_complex>> item;
        {
            std::lock_guard<std::mutex> lk(d_reg_m);
            auto it = d_registry.find(id);
            if (it == d_registry.end())
                throw py::key_error("burst " + std::to_string(id) + " not in this capture's registry");
            item = std::move(it->second);
            d_registry.erase(it);
        }
        auto* v = new std::vector<gr_complex>(std::move(item.second));
        py::capsule owner(v, [](void* p) { delete static_cast<std::vector<gr_complex>*>(p); });
        py::array_t<std::complex<float>> arr(v->size(), v->data(), owner);
        return py::make_tuple(item.first, arr);
    }
    size_t held()
    {
        std::lock_guard<std::mutex> lk(d_reg_m);
        return d_registry.size();
    }
    void clear()
    {
        std::lock_guard<std::mutex> lk(d_reg_m);
        d_registry.clear();
    }
    int length() const { return d_length; }
    int lead() const { return d_lead; }
    int min_gap() const { return d_min_gap; }
    int tag_delay() const { return d_tag_delay; }
};

} // namespace gr_semcom

PYBIND11_MODULE(_native, m)
{
    // the base classes' bindings (gr.sync_block, gr.block, gr.basic_block)
    py::module::import("gnuradio.gr");
    using gr_semcom::nan_guard_cc;
    py::class_<nan_guard_cc, gr::sync_block, gr::block, gr::basic_block, std::shared_ptr<nan_guard_cc>>(
        m, "nan_guard_cc", "NaN/inf samples -> 0, reported on 'status' (C++; see semcom_native.cc)",
        py::dynamic_attr())
        .def(py::init(&nan_guard_cc::make))
        .def_property_readonly("bad", &nan_guard_cc::bad, "non-finite samples replaced so far")
        .def_property_readonly("calls", &nan_guard_cc::calls, "work() calls so far");

    using gr_semcom::rms_normalize_cc;
    py::class_<rms_normalize_cc, gr::sync_block, gr::block, gr::basic_block, std::shared_ptr<rms_normalize_cc>>(
        m, "rms_normalize_cc", "x / (running RMS + eps): rms_cf, add_const_ff and divide_cc in one (C++)",
        py::dynamic_attr())
        .def(py::init(&rms_normalize_cc::make), py::arg("alpha"), py::arg("eps") = 1e-12f);

    using gr_semcom::tag_align_cc;
    py::class_<tag_align_cc, gr::sync_block, gr::block, gr::basic_block, std::shared_ptr<tag_align_cc>>(
        m, "tag_align_cc", "input 0 delayed, with the tags of input 1: delay and tag_share in one (C++)",
        py::dynamic_attr())
        .def(py::init(&tag_align_cc::make), py::arg("delay"))
        .def_property_readonly("delay_samples", &tag_align_cc::delay);

    using gr_semcom::burst_capture_c;
    using nogil = py::call_guard<py::gil_scoped_release>;
    py::class_<burst_capture_c, gr::sync_block, gr::block, gr::basic_block, std::shared_ptr<burst_capture_c>>(
        m, "burst_capture_c", "fixed-length burst at every tag, handed over by id (C++; see semcom_native.cc)",
        py::dynamic_attr())
        .def(py::init(&burst_capture_c::make), py::arg("length"), py::arg("lead") = 0,
             py::arg("tag_key") = "corr_start", py::arg("max_active") = 64, py::arg("min_gap") = 0,
             py::arg("max_pending") = 8, py::arg("tag_delay") = 0)
        .def("take", &burst_capture_c::take, py::arg("id"))
        .def("held", &burst_capture_c::held)
        .def("clear", &burst_capture_c::clear)
        .def_property_readonly("length", &burst_capture_c::length)
        .def_property_readonly("lead", &burst_capture_c::lead)
        .def_property_readonly("min_gap", &burst_capture_c::min_gap)
        .def_property_readonly("tag_delay", &burst_capture_c::tag_delay)
        .def_property_readonly("captured", [](burst_capture_c& b) { return b.captured.load(); })
        .def_property_readonly("published", [](burst_capture_c& b) { return b.published.load(); })
        .def_property_readonly("skipped", [](burst_capture_c& b) { return b.skipped.load(); })
        .def_property_readonly("overflows", [](burst_capture_c& b) { return b.overflows.load(); })
        .def_property_readonly("calls", [](burst_capture_c& b) { return b.calls.load(); })
        .def("backlog_acquire_for", [](burst_capture_c& b, double t) { return b.backlog.acquire_for(t); }, nogil())
        // these hold the backlog's mutex for a few instructions and no C++ thread
        // holding it ever waits for the GIL, so they keep the GIL: releasing it for a
        // sub-microsecond call hands it to another thread and then waits to get it
        // back (py-spy: ~5 % of the receiver's samples sat in backlog_release)
        .def("backlog_release", [](burst_capture_c& b) { b.backlog.release(); })
        .def("backlog_close", [](burst_capture_c& b) { b.backlog.close(); })
        .def("backlog_reopen", [](burst_capture_c& b) { b.backlog.reopen(); })
        .def("backlog_closed", [](burst_capture_c& b) { return b.backlog.closed(); })
        .def_property_readonly("backlog_pending", [](burst_capture_c& b) { return b.backlog.pending(); })
        .def_property_readonly("backlog_max", [](burst_capture_c& b) { return b.backlog.max_pending; });
}
