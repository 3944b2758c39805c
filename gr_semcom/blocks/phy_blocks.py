"""Message (PDU) blocks of the digital PHY. They carry per-frame work only;
every per-sample operation is a GNU Radio C++ block in :mod:`phy_hier`."""
from __future__ import annotations

import collections
import ctypes
import itertools
import logging
import os
import queue
import threading
import time

import numpy as np
import pmt
from gnuradio import gr

from ..phy import framing
from ..phy import kernels as _k
from ..phy.fec import ASYNC_DECODER_PAD, llr_to_grfec
from ..phy.frame import BurstDemodulator, FrameSpec
from ..phy.ldpc import MinSumDecoder, info_bits
from .pdu_util import make_pdu, pdu_parts

try:  # the compiled stream blocks (native/semcom_native.cc, scripts/build_native.sh)
    from . import _native
except ImportError:  # not built: the Python blocks below, which are also the tested reference
    _native = None

log = logging.getLogger(__name__)
IN, OUT, STATUS = pmt.intern("in"), pmt.intern("out"), pmt.intern("status")
_told_native = False


def native_current() -> bool:
    """Whether the compiled stream blocks are built and of this source's
    version (a module built from an older semcom_native.cc lacks blocks or
    arguments the receivers use)."""
    return (_native is not None and all(hasattr(_native, b) for b in ("nan_guard_cc", "burst_capture_c",
                                                                       "rms_normalize_cc", "tag_align_cc"))
            and hasattr(_native.burst_capture_c, "tag_delay"))


def native_blocks() -> bool:
    """Whether the receivers use the compiled NaN guard, burst capture and
    detector blocks: built (``scripts/build_native.sh``, run by the set-up),
    current (:func:`native_current`) and not switched off with
    ``GR_SEMCOM_NATIVE=0``. The first receiver built without them says so once."""
    global _told_native
    want = _k.native_wanted()
    ok = native_current()
    if want and not ok and not _told_native:
        why = "not built" if _native is None else "older than its source"
        log.info("gr_semcom: compiled stream blocks %s (bash scripts/build_native.sh); the receiver "
                 "uses the Python NaN guard and burst capture and GNU Radio's detector blocks", why)
        _told_native = True
    return want and ok
BITS, SYMBOLS, PDUS = pmt.intern("bits"), pmt.intern("symbols"), pmt.intern("pdus")


class LocalPdus:
    """Hand-off of (metadata dict, numpy array) between the receiver's own
    message blocks: the GNU Radio message carries only a number (``(u64 id .
    empty u8 vector)``) and the array stays a numpy array. Building and
    reading a PMT PDU of an 8000-sample burst, with its metadata dict, took
    ~0.1 ms of GIL time per hop (PMT's big-endian serialised layout and
    pmt.to_python on the metadata), more than the compiled demodulator
    itself. Used only on connections the receiver wires between its own
    blocks (``local`` set on both ends); every other port publishes
    ordinary PDUs. One registry per receiver; ``clear()`` at start drops
    what a stopped run left queued."""

    _EMPTY = pmt.init_u8vector(0, [])

    def __init__(self):
        self._items: dict = {}
        self._ids = itertools.count()

    def wrap(self, meta: dict, arr: np.ndarray):
        k = next(self._ids)  # atomic under the GIL, as the dict operations
        self._items[k] = (meta, arr)
        return pmt.cons(pmt.from_uint64(k), self._EMPTY)

    def parts(self, msg) -> tuple[dict, np.ndarray]:
        """(meta, array) of a wrapped message, or of an ordinary PDU."""
        if pmt.is_pair(msg) and pmt.is_uint64(pmt.car(msg)):
            try:
                return self._items.pop(pmt.to_uint64(pmt.car(msg)))
            except KeyError:
                raise ValueError("local PDU not in this receiver's registry") from None
        return pdu_parts(msg)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def _parts(local: LocalPdus | None, msg):
    return local.parts(msg) if local is not None else pdu_parts(msg)


def _pdu(local: LocalPdus | None, meta: dict, arr: np.ndarray):
    return local.wrap(meta, arr) if local is not None else make_pdu(meta, arr)


_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
# the same settings gnuradio.gr.gateway assigns on every call
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


class _Buffer:
    """numpy's array interface over one GNU Radio buffer (see _FastWork)."""


def _buffer_array(capsule, typestr: str, n: int) -> np.ndarray:
    b = _Buffer()
    b.__array_interface__ = {"data": (_capsule_pointer(capsule, None), False), "typestr": typestr,
                             "shape": (int(n),), "version": 3}
    return np.asarray(b)


class _FastWork:
    """``handle_general_work`` for our Python sync blocks with complex64
    ports, doing what gnuradio.gr.gateway's does (buffers as numpy arrays,
    ``work``, ``consume_items``) without defining a new class per buffer per
    call (``gateway.pointer_to_ndarray``), which cost 30-50 us per
    ``work()`` call, more than this module's NaN guard and capture
    themselves (sanitize_cc made ~13 000 calls per 37 M samples)."""

    _hist = None  # history() - 1, read once (fixed before the flowgraph starts)

    def handle_forecast(self, noutput_items, ninputs):
        """Called by the scheduler before every work(): a sync block needs
        noutput + history - 1 items (gateway.forecast's rule, without its
        per-call pybind lookups)."""
        if self._hist is None:
            self._hist = self.gateway.history() - 1
        return [noutput_items + self._hist] * ninputs

    def handle_general_work(self, noutput_items, ninput_items, input_items, output_items):
        if self._hist is None:
            self._hist = self.gateway.history() - 1
        nin = noutput_items + self._hist
        ii = [_buffer_array(c, "<c8", nin) for c in input_items]
        oo = [_buffer_array(c, "<c8", noutput_items) for c in output_items]
        r = self.work(ii, oo)
        self.consume_items(r)
        return r


def _status(**kw):
    return pmt.to_pmt({k: (v.item() if isinstance(v, np.generic) else v) for k, v in kw.items()})


class frame_encoder(gr.basic_block):
    """u8 PDU -> info-bit PDUs, one per frame (segmentation, header, CRC32).

    Input metadata ``payload_type`` (int) is carried in every frame header.
    An empty or oversize PDU is reported on ``status`` and dropped.
    """

    def __init__(self, spec: FrameSpec):
        gr.basic_block.__init__(self, "semcom_frame_encoder", None, None)
        self.spec = spec
        self.msg_id = 0
        self.frames_sent = 0
        self.message_port_register_in(IN)
        self.message_port_register_out(OUT)
        self.message_port_register_out(STATUS)
        self.set_msg_handler(IN, self.handle)

    def handle(self, msg):
        try:
            meta, data = pdu_parts(msg)
            if data.dtype != np.uint8:
                raise framing.FramingError("frame_encoder takes u8 PDUs")
            ptype = int(meta.get("payload_type", 0))
            frames = framing.segment(data.tobytes(), self.spec.capacity, self.msg_id, ptype)
        except (ValueError, TypeError) as exc:
            log.error("frame_encoder: %s", exc)
            self.message_port_pub(STATUS, _status(event="tx_error", error=str(exc)))
            return
        nbits = self.spec.info_bits
        for i, f in enumerate(frames):
            bits = framing.bytes_to_bits(f)
            if bits.size < nbits:
                bits = np.concatenate([bits, np.zeros(nbits - bits.size, np.uint8)])
            self.message_port_pub(OUT, make_pdu({"msg_id": self.msg_id, "seg_index": i,
                                                 "seg_count": len(frames)}, bits))
        self.message_port_pub(STATUS, _status(event="tx_pdu", msg_id=self.msg_id, frames=len(frames),
                                              bytes=int(data.size)))
        self.frames_sent += len(frames)
        self.msg_id = (self.msg_id + 1) & 0xFFFF


def last_of_pdu(meta: dict) -> bool:
    """Whether a frame (metadata set by ``frame_encoder``) is its PDU's last:
    the transmitters append an idle tail after it."""
    return meta.get("seg_index", 0) + 1 >= meta.get("seg_count", 1)


class burst_mapper(gr.basic_block):
    """Coded-bit PDU -> complex burst symbols PDU (preamble, pilots, data, guard)."""

    def __init__(self, spec: FrameSpec):
        gr.basic_block.__init__(self, "semcom_burst_mapper", None, None)
        self.spec = spec
        self.message_port_register_in(IN)
        self.message_port_register_out(OUT)
        self.set_msg_handler(IN, self.handle)

    def handle(self, msg):
        try:
            meta, bits = pdu_parts(msg)
            sym = self.spec.build_symbols(bits)
        except ValueError as exc:
            log.error("burst_mapper: %s", exc)
            return
        if last_of_pdu(meta):
            # idle tail after a PDU's last burst: lets every filter, the
            # correlator and the burst capture downstream run past its end
            sym = np.concatenate([sym, np.zeros(self.spec.flush_symbols, np.complex64)])
        self.message_port_pub(OUT, make_pdu(meta, sym))


class Backlog:
    """Bursts handed from ``burst_capture`` to the demodulator and not yet
    demodulated. GNU Radio's message queues are unbounded: a capture (C++
    speed stream side) feeding a slower Python demodulator would queue
    bursts without limit (measured: +12 MB/s replaying a recording as fast
    as possible). The capture waits while ``max_pending`` are outstanding,
    which is back-pressure on the stream like any slow GNU Radio block: a
    file replay loses nothing, a live radio reports overflows ('O')."""

    def __init__(self, max_pending: int = 8):
        self.max_pending = int(max_pending)
        self._n = 0
        self._closed = False
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)

    @property
    def pending(self) -> int:
        return self._n

    def acquire(self, stop: threading.Event) -> bool:
        """Wait for room (False if ``stop`` is set or the consumer has closed
        the backlog first), then take a slot."""
        with self._freed:
            while self._n >= self.max_pending:
                if stop.is_set() or self._closed:
                    return False
                self._freed.wait(0.05)
            self._n += 1
            return True

    def close(self) -> None:
        """The consumer is gone (its thread ended at flowgraph stop, with
        messages still queued): no slot will be freed, so nobody may wait.
        GNU Radio calls a block's ``stop()`` only once its own thread has
        ended, so the producer's stop cannot be what ends a wait inside its
        ``work()``: with 64k-item buffers one ``work()`` call can complete
        more bursts than the backlog holds after the consumer has left."""
        with self._freed:
            self._closed = True
            self._freed.notify_all()

    def reopen(self) -> None:
        """Flowgraph (re)start: empty and open (queued messages of a stopped
        run are never handled, so their slots are not coming back)."""
        with self._freed:
            self._n = 0
            self._closed = False

    def release(self) -> None:
        with self._freed:
            self._n = max(self._n - 1, 0)
            self._freed.notify_all()


def async_ldpc() -> bool:
    """Whether a receiver's LDPC decoder block decodes the bursts its
    demodulator hands it on the compiled decoder's own C++ thread (where the
    compiled decoder is in use): ``GR_SEMCOM_RX_ASYNC_LDPC=1`` / ``0``, by
    default when the process may use 2 CPUs or more. Why: the receiver's
    Python work runs fastest in one thread on the 2-core box, and the decode
    then overlaps it on the other core; on one core the extra thread only
    costs (measured 2026-12-07, QPSK 1/2: 2 cores 8.1-8.4 vs 7.1-8.1 Msps,
    one core 6.0-6.8 vs 7.3; docs/receiver_speed.md)."""
    return _k.env_flag("GR_SEMCOM_RX_ASYNC_LDPC", default=len(os.sched_getaffinity(0)) >= 2)


def rx_workers(choice: int | None = None) -> int:
    """Worker threads per receiver stage: ``choice`` if given, else
    ``GR_SEMCOM_RX_WORKERS``, else 1 (the stage runs inline in its block's
    own thread). Why 1 by default: with the compiled LDPC decoder and stream
    blocks the stages are a pipeline already spread over both cores (the
    kernels run without the GIL), and a second worker per stage only added
    GIL hand-offs: on the 2-core box on 2026-12-03 QPSK measured 10.2-11.8
    Msps with 1 worker against 9.1-9.3 with 2, 16QAM 4.6-4.8 against 4.2-4.4,
    OFDM 3.2-3.7 against 2.6-2.8 (docs/receiver_speed.md). More workers help
    where one stage's kernels outweigh the rest (a many-core host, a slow
    code); they keep frames in order (:class:`OrderedWorkers`)."""
    if choice is None:
        env = os.environ.get("GR_SEMCOM_RX_WORKERS", "").strip()
        choice = int(env) if env else 1
    if int(choice) < 1:
        raise ValueError(f"receiver workers must be >= 1, got {choice}")
    return int(choice)


class OrderedWorkers:
    """Run ``compute(item)`` on ``n`` threads and ``emit(item, (ok, result or
    exception))`` strictly in submission order, one emit at a time.

    Why: the receiver's per-burst work (the demodulator's FFTs and numba
    kernels, the LDPC kernels and numpy's phi) mostly runs without the GIL,
    so two bursts computed at once use both cores; the emits (status and
    PDUs, Python) stay serial and in order, so frames leave the receiver in
    the order they arrived. ``pending()`` counts submitted items not yet
    emitted. ``stop()`` ends the threads after the item each is computing;
    items still queued are dropped, as GNU Radio drops a stopped block's
    queued messages."""

    def __init__(self, n: int, compute, emit, name: str = "semcom_rx"):
        self.n, self.compute, self.emit, self.name = int(n), compute, emit, name
        self._lock = threading.Lock()  # results, the output cursor and emit
        self._count = threading.Lock()
        self._threads: list = []
        self._reset()

    def _reset(self):
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._done: dict = {}
        self._next_in = self._next_out = 0
        self._outstanding = 0
        self._gen = object()  # a stopped run's threads can no longer emit into a new one

    def start(self) -> None:
        self.stop()
        self._reset()
        gen = self._gen
        self._threads = [threading.Thread(target=self._run, args=(self._q, gen), daemon=True,
                                          name=f"{self.name}_w{i}") for i in range(self.n)]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 5.0) -> None:
        q, threads, self._threads = self._q, self._threads, []
        for _ in threads:
            q.put(None)
        self._gen = object()
        for t in threads:
            t.join(timeout)

    def pending(self) -> int:
        return self._outstanding

    @classmethod
    def started(cls, n: int, compute, emit, name: str) -> "OrderedWorkers | None":
        """A running pool of ``n`` threads, or None for ``n`` = 1 (the caller
        then computes in its own thread): what a block's start() keeps."""
        if n <= 1:
            return None
        pool = cls(n, compute, emit, name)
        pool.start()
        return pool

    @staticmethod
    def stopped(pool: "OrderedWorkers | None") -> None:
        """Stop ``pool`` if there is one (a block's stop(); it then keeps None)."""
        if pool is not None:
            pool.stop()

    def submit(self, item) -> None:
        with self._count:
            seq = self._next_in
            self._next_in += 1
            self._outstanding += 1
        self._q.put((seq, item))

    def _run(self, q, gen):
        while True:
            job = q.get()
            if job is None:
                return
            seq, item = job
            try:
                res = (True, self.compute(item))
            except Exception as exc:  # reported by emit, in order
                res = (False, exc)
            with self._lock:
                if gen is not self._gen:
                    return
                self._done[seq] = (item, res)
                while self._next_out in self._done:
                    it, r = self._done.pop(self._next_out)
                    self._next_out += 1
                    try:
                        self.emit(it, r)
                    except Exception:
                        log.exception("%s: emit failed", self.name)
                    finally:
                        with self._count:
                            self._outstanding -= 1


class burst_demod_base(gr.basic_block):
    """Shared tail of the burst demodulators (subclasses set ``self.dem``, an
    object with ``demodulate(x)``): the non-overlap rule, drop
    reports on ``status``, hard bits on ``bits`` and soft bits on ``out``.

    Bursts never overlap in time: a capture whose burst starts less than
    ``min_spacing`` samples after the last accepted one is a second tag on
    its preamble or a correlator false alarm in its data (captures finish in
    start order, so the real burst is judged first). The spacing is the
    full burst length: at 0.9 of it, BPSK false alarms in a burst's last
    tenth were accepted and the real next burst then rejected.
    """

    def __init__(self, name: str, spec, min_spacing: float):
        gr.basic_block.__init__(self, name, None, None)
        self.spec = spec
        self.min_spacing = min_spacing
        self.bursts = 0
        self.dropped = 0
        self.handled = 0  # burst PDUs taken from ``in`` (every one is either dropped or passed on)
        self.passed = 0  # soft/hard-bit PDUs published on ``out``
        self._last_pos = -1e18
        self.backlog: Backlog | None = None  # shared with the capture that feeds ``in``
        self.local_in: LocalPdus | None = None  # set when ``in`` comes from the receiver's own capture
        self.local_out: LocalPdus | None = None  # set when ``out`` goes to the receiver's ldpc_decoder
        # soft output: "gr-fec" (gr-fec's ldpc_decoder input convention + pad) or "llr" (ldpc_decoder)
        self.soft_format = "gr-fec"
        # bursts demodulated on this many threads, published in order (set by
        # the receiver's wiring: rx_workers()); 1 = in this block's own thread
        self.workers = 1
        self._pool: OrderedWorkers | None = None
        self._listens: dict | None = None  # subscribers of bits / symbols, read at start()
        self._bb = None  # the block's C++ side (its input queue's length), set at start()
        # set by wire_decoder when ``out`` feeds this receiver's ldpc_decoder, which
        # then frees the backlog slot of each burst passed on (see _release)
        self.release_downstream = False
        # set by wire_decoder: this receiver's ldpc_decoder, whose decoding this
        # block then runs in its own thread (see publish)
        self.inline_decoder = None
        self.message_port_register_in(IN)
        self.message_port_register_out(OUT)
        self.message_port_register_out(STATUS)
        self.message_port_register_out(BITS)
        self.message_port_register_out(SYMBOLS)
        self.set_msg_handler(IN, self.handle)

    def start(self):
        if self.backlog is not None:
            self.backlog.reopen()
        # whether anything listens on bits / symbols, asked once per run (the
        # flowgraph is flattened and its message subscriptions set before any
        # block starts; two pybind calls per burst otherwise)
        self._listens = {p: self._subscribed(p) for p in (BITS, SYMBOLS, STATUS)}
        self._bb = self.to_basic_block()  # its input queue's length, read per burst (handle)
        self._pool = OrderedWorkers.started(self.workers, self._compute, self._emit, "semcom_demod")
        return True

    def stop(self):
        if self.backlog is not None:
            self.backlog.close()
        OrderedWorkers.stopped(self._pool)
        self._pool = None
        return True

    def handle(self, msg):
        try:
            meta, x = _parts(self.local_in, msg)
        except ValueError as exc:
            log.error("%s: %s", self.name(), exc)
            self.handled += 1
            if self.backlog is not None:
                self.backlog.release()
            return
        pool = self._pool
        if pool is not None:
            # submitted (pending) before counted as handled: a receiver's
            # in-flight count may be one too high for an instant, never too low;
            # the worker's emit frees the backlog slot
            pool.submit((meta, x))
            self.handled += 1
            return
        passed = self.passed
        try:
            self.on_burst(meta, x)
        finally:
            self.handled += 1
            self._release(passed)
        dec = self.inline_decoder
        if dec is not None and dec.outstanding() and (self._bb or self.to_basic_block()).nmsgs(IN) == 0:
            # no burst waiting: finish the ones the C++ thread is decoding now
            # rather than when the next burst comes (which may be never)
            dec.collect(block=True)

    def _release(self, passed_before: int) -> None:
        """Free the burst's backlog slot, unless it went on to a decoder that
        frees it once decoded (``release_downstream``): the back-pressure then
        covers the LDPC stage too, whose message queue is otherwise unbounded
        (measured: with the compiled capture the demodulator outran the
        decoder and ~20 % of a 10 Msps replay sat queued in front of it)."""
        if self.backlog is not None and not (self.release_downstream and self.passed > passed_before):
            self.backlog.release()

    def pending(self) -> int:
        """Bursts taken and not yet published or dropped: on the worker
        threads (and, genie CSI, waiting for their CSI burst)."""
        pool = self._pool
        return pool.pending() if pool is not None else 0

    def _latest(self, meta: dict) -> float:
        return meta.get("offset", -1e18) + getattr(self.dem, "search", 0) + 1

    def _compute(self, item):
        """Worker side: the demodulation (None: a second tag on a burst already
        taken, see on_burst). Reads ``_last_pos`` as the last emit left it,
        which can only be older than the true one: the skip is then taken
        less often, never wrongly, and publish() decides again in order."""
        meta, x = item
        if self._latest(meta) < self._last_pos + self.min_spacing:
            return None
        res = self.dem.demodulate(x)
        dec = self.inline_decoder
        if dec is None or not res.ok:
            return res, None
        # decoded on the worker too (bursts then decode in parallel); one that
        # publish() rejects as inside the previous burst was decoded for nothing
        return res, dec.try_decode(res.llr)

    def _emit(self, item, result) -> None:
        """In burst order, one at a time: publish what a worker computed."""
        meta, _x = item
        passed = self.passed
        try:
            ok, res = result
            if not ok:
                log.error("%s: demodulator failed: %r", self.name(), res)
                self.bursts += 1
                self.dropped += 1
                self.message_port_pub(STATUS, _status(event="burst_drop", reason=f"demodulator error: {res!r}",
                                                      snr_db=float("nan"), offset=float(meta.get("offset", -1))))
            elif res is None:
                self._drop_inside(self._latest(meta))
            else:
                self.publish(meta, *res)
        finally:
            self._release(passed)

    def _drop_inside(self, latest: float) -> None:
        self.bursts += 1
        self.dropped += 1
        if self._listens is None or self._listens[STATUS]:  # a PMT dict costs ~28 us
            self.message_port_pub(STATUS, _status(event="burst_drop", reason="inside previous burst",
                                                  snr_db=float("nan"), offset=float(latest)))

    def on_burst(self, meta: dict, x: np.ndarray) -> None:
        latest = self._latest(meta)
        if latest < self._last_pos + self.min_spacing:
            # a second tag on a burst already taken: wherever the preamble search
            # would put it, the non-overlap rule below rejects it, so skip the
            # demodulation (measured: ~17 % of captures at 10 dB)
            self._drop_inside(latest)
            return
        self.publish(meta, self.dem.demodulate(x))

    def _subscribed(self, port) -> bool:
        """Whether anything is connected to ``port`` (after the flowgraph is
        flattened, an unconnected hier port has no subscriber)."""
        return pmt.length(self.to_basic_block().message_subscribers(port)) > 0

    def publish(self, meta: dict, res, decoded=None) -> None:
        """Report one demodulated burst and pass its bits on. ``decoded``: the
        inline decoder's result for it, if a worker computed it already."""
        self.bursts += 1
        # stream position of the burst's preamble (capture offset + timing): lets a
        # link runner tell which transmitted frame each outcome belongs to
        pos = float(meta.get("offset", float("nan")) + (res.timing if np.isfinite(res.timing) else 0.0))
        if res.ok and "offset" in meta:
            if pos < self._last_pos + self.min_spacing:
                res.ok, res.reason = False, "inside previous burst"
            else:
                self._last_pos = pos
        if not res.ok:
            self.dropped += 1
            if self._listens is not None and not self._listens[STATUS]:
                return
            self.message_port_pub(STATUS, _status(event="burst_drop", reason=res.reason, snr_db=res.snr_db,
                                                  offset=pos))
            return
        out_meta = {"snr_db": round(res.snr_db, 3), "cfo": res.cfo, "timing": res.timing,
                    "burst": self.bursts, "offset": pos}
        # counted before it is published: a receiver's in-flight count may be
        # one too high for an instant, never one too low
        self.passed += 1
        listens = self._listens if self._listens is not None else {p: self._subscribed(p) for p in (BITS, SYMBOLS)}
        uncoded = self.spec.code.alist is None
        hard = (res.llr < 0).astype(np.uint8) if (listens[BITS] or uncoded) else None
        if listens[BITS]:  # hard decisions for BER; built only when something listens
            self.message_port_pub(BITS, make_pdu(out_meta, hard))
        if res.symbols is not None and listens[SYMBOLS]:  # for constellation displays
            self.message_port_pub(SYMBOLS, make_pdu(out_meta, np.asarray(res.symbols, np.complex64)))
        if uncoded:
            self.message_port_pub(OUT, make_pdu(out_meta, hard))
        elif self.soft_format == "gr-fec":
            soft = np.concatenate([llr_to_grfec(res.llr), np.zeros(ASYNC_DECODER_PAD, np.float32)])
            self.message_port_pub(OUT, make_pdu(out_meta, soft))
        elif self.inline_decoder is not None:
            # this receiver's own ldpc_decoder, run here: one message hop, its
            # GNU Radio dispatch and a thread's GIL hand-offs fewer per burst
            dec = self.inline_decoder
            if decoded is None and dec.can_submit():
                # decoded on the C++ decoder's thread while this one demodulates
                # the next burst; what is done by now goes on (see handle)
                dec.submit(out_meta, np.asarray(res.llr, np.float32))
                dec.collect(block=False)
            else:
                dec.decode_inline(out_meta, np.asarray(res.llr, np.float32), decoded)
        else:  # our LLRs, for ldpc_decoder
            self.message_port_pub(OUT, _pdu(self.local_out, out_meta, np.asarray(res.llr, np.float32)))


class burst_demod(burst_demod_base):
    """Matched-filtered burst PDU -> soft bits for gr-fec (or hard bits if uncoded).

    Output metadata: ``snr_db`` (estimated Es/N0 of the burst), ``cfo``
    (cycles/symbol), ``timing``. Bursts that carry no preamble are reported on
    ``status`` (``event = "burst_drop"``) and go no further.
    ``hard_bits`` publishes hard decisions (for uncoded BER curves) on port
    ``bits`` as well.
    """

    def __init__(self, spec: FrameSpec, search: int, genie_csi: bool = False):
        burst_demod_base.__init__(self, "semcom_burst_demod", spec,
                                  (spec.n_symbols - 4) * spec.sps)
        self.dem = BurstDemodulator(spec, search=search)
        self.dem.warm_up()  # numba's kernels loaded now, not at the first burst
        self.genie = genie_csi
        self._csi_q: list = []
        self._x_q: list = []
        if genie_csi:
            self.message_port_register_in(pmt.intern("csi"))
            self.set_msg_handler(pmt.intern("csi"), self.handle_csi)

    def pending(self) -> int:
        return len(self._x_q) + super().pending()

    def handle_csi(self, msg):
        self._csi_q.append(_parts(self.local_in, msg)[1])
        self._drain()

    def on_burst(self, meta, x):
        if self.genie:
            self._x_q.append((meta, x))
            self._drain()
        else:
            super().on_burst(meta, x)

    def _drain(self):
        # the CSI stream went through the same path and the same capture tags as x
        while self._x_q and self._csi_q:
            meta, x = self._x_q.pop(0)
            self.publish(meta, self.dem.demodulate(x, csi=self._csi_q.pop(0)))


class ldpc_decoder(gr.basic_block):
    """Soft-bit PDU (LLRs log P0/P1 of whole codewords) -> information-bit PDU
    (u8, one bit per byte, gr-fec's systematic order), decoding every
    codeword of a burst in one batch (phy/ldpc.py: sum-product ``spa``, the
    algorithm of gr-fec's ldpc_decoder, or normalised ``minsum``). Adds
    ``ldpc_iterations`` (most of any codeword) and ``ldpc_unsatisfied``
    (codewords whose parity checks still fail; the CRC then decides) to the
    metadata. A PDU that is not a whole number of codewords is logged and
    dropped (the burst becomes an erasure)."""

    def __init__(self, spec, max_iterations: int = 50, method: str = "spa"):
        gr.basic_block.__init__(self, "semcom_ldpc_decoder", None, None)
        self.code = spec.code
        self.dec = MinSumDecoder.for_code(spec.code, max_iterations, alpha=0.8 if method == "minsum" else 1.0,
                                          method=method)
        self.frames = 0  # PDUs decoded and passed on
        self.rejected = 0  # PDUs dropped (not whole codewords): their bursts are erasures
        self.local_in: LocalPdus | None = None  # set when fed by the receiver's demodulator
        self.local_out: LocalPdus | None = None  # set when feeding the receiver's frame_decoder
        # set by wire_decoder: this receiver's frame_decoder, called directly
        # with each decoded burst instead of a message on ``out`` (see _publish)
        self.inline_deframer = None
        self.workers = 1  # bursts decoded on this many threads, in order (see burst_demod_base)
        self.backlog: Backlog | None = None  # set with the demodulator's release_downstream
        self._pool: OrderedWorkers | None = None
        # the C++ decoder's own thread, for a demodulator that runs this block's
        # work (submit / collect); made at start() where the compiled decoder is
        # in use and GR_SEMCOM_RX_ASYNC_LDPC is not 0
        self._async = None
        self._async_meta: collections.deque = collections.deque()
        self.message_port_register_in(IN)
        self.message_port_register_out(OUT)
        self.message_port_register_out(STATUS)
        self.set_msg_handler(IN, self.handle)

    def start(self):
        self._pool = OrderedWorkers.started(self.workers, self._compute, self._emit, "semcom_ldpc")
        self._async = None  # the last run's thread was closed by stop()
        make = getattr(self.dec, "async_native", None)  # a stand-in decoder (tests) may not have it
        if make is not None and async_ldpc():
            try:
                self._async = make()
            except Exception:  # an exception in start() would hang GNU Radio's scheduler start
                log.exception("%s: no C++ decoder thread; decoding in the demodulator's thread", self.name())
        # bursts the last run stopped with on the C++ thread were dropped: counted
        # as rejected, so that the receiver's in-flight count is 0 again
        self.rejected += len(self._async_meta)
        self._async_meta = collections.deque()
        return True

    def stop(self):
        if self.backlog is not None:
            self.backlog.close()  # a consumer leaving: the capture must not wait on its slots
        OrderedWorkers.stopped(self._pool)
        self._pool = None
        if self._async is not None:
            self._async.close()  # what is still queued is dropped, as a stopped block's messages
        return True

    def can_submit(self) -> bool:
        """Whether :meth:`submit` decodes on the C++ decoder's own thread."""
        return self._async is not None

    def submit(self, meta: dict, llr: np.ndarray) -> None:
        """Queue one burst's LLRs on the C++ decoder's thread and return (the
        receiver's demodulator calls this, then :meth:`collect`); its frame
        goes on, in order, when a later :meth:`collect` takes it. LLRs that
        are not whole codewords make the burst an erasure, in order."""
        try:
            queued = self._async.submit(llr)
        except ValueError as exc:
            self.collect(block=True)
            self._emit(None, (False, exc))
            return
        if queued:
            self._async_meta.append(meta)
            return
        self.rejected += 1  # closed (the flowgraph is stopping): dropped, no longer in flight
        if self.backlog is not None:
            self.backlog.release()

    def collect(self, block: bool) -> None:
        """Publish the bursts the C++ thread has decoded, in submission order:
        those done (``block`` false) or every one submitted (``block`` true,
        waiting without the GIL)."""
        a = self._async
        while self._async_meta:
            r = a.take(block)
            if r is None:
                return
            self._emit(None, (True, (self._async_meta.popleft(), *r)))

    def outstanding(self) -> int:
        """Bursts submitted and not yet collected."""
        return len(self._async_meta)

    def handle(self, msg):
        pool = self._pool
        if pool is not None:
            pool.submit(msg)
            return
        try:
            res = (True, self._compute(msg))
        except ValueError as exc:
            res = (False, exc)
        self._emit(msg, res)

    def _compute(self, msg):
        meta, llr = _parts(self.local_in, msg)
        hard, ok, iters = self.dec.decode(llr)
        return meta, hard, ok, iters

    def decode_inline(self, meta: dict, llr: np.ndarray, decoded=None) -> None:
        """Decode one burst's LLRs in the caller's thread and publish as
        :meth:`handle` would (the receiver's demodulator calls this instead
        of sending a message, see ``phy_hier.wire_decoder``); ``decoded``:
        ``(True, (hard, ok, iters))`` or ``(False, exception)`` if already
        computed."""
        if decoded is None:
            decoded = self.try_decode(llr)
        ok_, out = decoded
        self._emit(None, (True, (meta, *out)) if ok_ else decoded)

    def try_decode(self, llr: np.ndarray):
        """``(True, (hard, ok, iters))``, or ``(False, exception)`` for LLRs
        that are not whole codewords (the burst becomes an erasure)."""
        try:
            return True, self.dec.decode(llr)
        except ValueError as exc:
            return False, exc

    def _emit(self, _msg, result) -> None:
        try:
            self._publish(result)
        finally:
            if self.backlog is not None:
                self.backlog.release()

    def _publish(self, result) -> None:
        ok_, res = result
        if not ok_:
            log.error("%s: %s", self.name(), res)
            self.rejected += 1
            self.message_port_pub(STATUS, _status(event="burst_drop", reason=f"ldpc: {res}", snr_db=float("nan")))
            return
        meta, hard, ok, iters = res
        # on a burst's few codewords Python's max and numpy's count_nonzero take
        # a fifth of the time of two numpy reductions
        meta.update(ldpc_iterations=max(iters.tolist()), ldpc_unsatisfied=ok.size - int(np.count_nonzero(ok)))
        # counted before it is published (in-flight counts never too low)
        self.frames += 1
        bits = info_bits(hard, self.code)
        if self.inline_deframer is not None:  # this receiver's frame decoder, called here
            self.inline_deframer.judge(meta, bits)
        else:
            self.message_port_pub(OUT, _pdu(self.local_out, meta, bits))


class frame_decoder(gr.basic_block):
    """Decoded info-bit PDUs -> CRC check, per-frame status, reassembled PDUs.

    Every frame produces a ``status`` message ``{event: "frame", crc_ok, msg_id,
    seg_index, seg_count, snr_db, cfo, offset}`` (``offset``: the burst's stream
    position, from the demodulator). A PDU leaves on ``out`` when all its
    frames arrived, when a good frame of another PDU arrives (frames cross the
    receiver in transmission order, so nothing of the earlier PDU can still
    come), on a message on ``flush``, or ``timeout`` seconds after the last
    frame of any kind, but only once the receiver holds no burst still being
    demodulated or decoded (``busy``, set by the receiver hier block; a slow or
    loaded decoder therefore never splits a PDU). Incomplete PDUs carry
    metadata ``missing = [(start, stop), ...]`` byte ranges zero-filled,
    ``complete`` false and ``erasures`` the number of lost frames.
    """

    def __init__(self, spec: FrameSpec, timeout: float = 2.0):
        gr.basic_block.__init__(self, "semcom_frame_decoder", None, None)
        self.spec = spec
        self.timeout = timeout
        self.reasm = framing.Reassembler(spec.capacity)
        self.lock = threading.Lock()
        self.frames_ok = 0
        self.frames_bad = 0
        self.judged = 0  # frame PDUs handled (ok, failed or malformed), counted when done
        self.pdus_out = 0
        self.busy = lambda: False  # the receiver still holds bursts on their way here
        self._status_on = True  # set at start()
        self.local_in: LocalPdus | None = None  # set when fed by the receiver's ldpc_decoder
        self._last_activity = time.monotonic()
        self._stop = threading.Event()
        self._thread = None
        self.message_port_register_in(IN)
        self.message_port_register_in(pmt.intern("flush"))
        self.message_port_register_out(OUT)
        self.message_port_register_out(STATUS)
        self.set_msg_handler(IN, self.handle)
        self.set_msg_handler(pmt.intern("flush"), self.handle_flush)

    def start(self):
        self._stop.clear()
        self._last_activity = time.monotonic()
        # whether anything listens on status, asked once per run (see burst_demod_base.start)
        self._status_on = pmt.length(self.to_basic_block().message_subscribers(STATUS)) > 0
        if self.timeout and self.timeout > 0:
            self._thread = threading.Thread(target=self._timer, daemon=True)
            self._thread.start()
        return True

    def stop(self):
        self._stop.set()
        return True

    def _timer(self):
        while not self._stop.wait(min(0.1, self.timeout / 4)):
            if self.reasm.partial and not self.busy() \
                    and time.monotonic() - self._last_activity >= self.timeout:
                self.flush(older_than=self.timeout)

    def handle(self, msg):
        self._counted(self._judge_msg, msg)

    def judge(self, meta: dict, bits: np.ndarray) -> None:
        """One decoded frame (info bits, one per byte), judged in the caller's
        thread as :meth:`handle` judges a message: the receiver's LDPC decoder
        block calls this instead of sending a message (``phy_hier.inline_frames``).
        Frames reach it one at a time, in order (the decoder's thread, or its
        workers' ordered emit)."""
        self._counted(self._judge, meta, bits)

    def _counted(self, judge, *args) -> None:
        try:
            judge(*args)
        finally:
            self._last_activity = time.monotonic()
            self.judged += 1

    def _judge_msg(self, msg) -> None:
        try:
            meta, bits = _parts(self.local_in, msg)
        except ValueError as exc:
            log.error("frame_decoder: %s", exc)
            with self.lock:
                self.frames_bad += 1
            self.message_port_pub(STATUS, _status(event="frame", crc_ok=False, status="malformed",
                                                  snr_db=float("nan"), cfo=float("nan"), offset=float("nan")))
            return
        self._judge(meta, bits)

    def _judge(self, meta: dict, bits: np.ndarray) -> None:
        frame = framing.bits_to_bytes(bits[: 8 * self.spec.capacity])
        hdr, payload, status = framing.parse(frame)
        ok = status == "ok"
        if self._status_on:  # built only when something listens (a PMT dict: ~28 us a frame)
            st = {"event": "frame", "crc_ok": ok, "status": status,
                  "snr_db": meta.get("snr_db", float("nan")), "cfo": meta.get("cfo", float("nan")),
                  "offset": float(meta.get("offset", float("nan")))}
            if ok:
                st.update(msg_id=hdr.msg_id, seg_index=hdr.seg_index, seg_count=hdr.seg_count)
            self.message_port_pub(STATUS, _status(**st))
        with self.lock:
            if not ok:
                self.frames_bad += 1
                return
            self.frames_ok += 1
            # a good frame of another PDU: the earlier PDUs are over (frames
            # arrive in the order they were sent)
            done = self.reasm.flush_except(hdr.msg_id)
            finished = self.reasm.add(hdr, payload, now=time.monotonic())
        for d in done + ([finished] if finished is not None else []):
            self._emit(*d)

    def handle_flush(self, _msg):
        self.flush()

    def flush(self, older_than=None):
        with self.lock:
            items = self.reasm.flush(older_than=older_than, now=time.monotonic())
        for it in items:
            self._emit(*it)

    def _emit(self, hdr, data, missing):
        self.pdus_out += 1
        nmiss = sum(-(-(b - a) // max(self.reasm.per, 1)) for a, b in missing)
        meta = {"msg_id": hdr.msg_id, "payload_type": hdr.payload_type, "complete": not missing,
                "erasures": nmiss, "frames": hdr.seg_count, "missing": [list(m) for m in missing]}
        self.message_port_pub(OUT, make_pdu(meta, data))


class burst_capture(_FastWork, gr.sync_block):
    """Cut a fixed-length burst out of the stream at every ``corr_start`` tag.

    Written here instead of using ``pdu.tags_to_pdu_c`` because that block
    drops the burst it is capturing when a second start tag arrives inside it
    (a correlator false alarm in the data then costs a real frame). Here every
    tag opens its own capture, overlapping captures are independent, and false
    alarms are rejected later by the burst demodulator's preamble check. Work
    is numpy slicing per ``work()`` call, never a per-sample Python loop.
    The sink consumes its input; extra outputs: PDUs on ``pdus``.

    ``tag_delay`` > 0: two inputs, the samples on input 0 and the tags on
    input 1, a stream that lags input 0 by ``tag_delay`` samples (the
    preamble detector's correlator output, ``preamble_detector(aligned=
    False)``); the bursts, their offsets and the samples consumed are then
    those of input 0 delayed by ``tag_delay`` with input 1's tags, what a
    delay and a tag_share in front of a one-input capture give, without them.
    """

    def __init__(self, length: int, lead: int = 0, tag_key: str = "corr_start", max_active: int = 64,
                 min_gap: int = 0, tag_delay: int = 0):
        if tag_delay < 0:
            raise ValueError("tag_delay must be >= 0")
        self.tag_delay = int(tag_delay)
        gr.sync_block.__init__(self, "semcom_burst_capture", [np.complex64] * (2 if tag_delay else 1), None)
        self.length = int(length)
        self.lead = int(lead)  # samples kept before each tag
        # corr_est_cc tags every sps samples while the correlation stays above
        # threshold on the falling side of a peak; a tag within ``min_gap``
        # of the last one (give the demodulator's search half-width: it then
        # lies inside that capture's search window) is redundant and skipped
        self.min_gap = int(min_gap)
        self._last_tag = -(1 << 62)
        self.skipped = 0
        # x[0] is then sample base - lead of input 0 delayed by tag_delay
        self.set_history(self.lead + self.tag_delay + 1)
        self._tag_port = 1 if self.tag_delay else 0
        self.key = pmt.intern(tag_key)
        self.max_active = max_active
        self.active: list = []  # [start_offset, burst array, samples filled]
        self.captured = 0
        self.published = 0  # bursts handed to the demodulator (counted before publishing)
        self.overflows = 0
        self.backlog: Backlog | None = None  # set by the receiver: back-pressure from the demodulator
        self.local: LocalPdus | None = None  # set by the receiver: bursts handed to its demodulator as arrays
        self._stopping = threading.Event()
        self.message_port_register_out(pmt.intern("pdus"))

    def start(self):
        self._stopping.clear()
        return True

    def stop(self):
        self._stopping.set()
        return True

    def work(self, input_items, output_items):
        x = input_items[0]
        n = len(x) - self.lead - self.tag_delay
        base = self.nitems_read(0)
        for tag in self.get_tags_in_window(self._tag_port, 0, n, self.key):
            if tag.offset - self._last_tag <= self.min_gap:
                self.skipped += 1
                continue
            self._last_tag = tag.offset
            if len(self.active) >= self.max_active:
                self.overflows += 1
                continue
            self.active.append([tag.offset - self.lead, np.empty(self.length, np.complex64), 0])
        still = []
        for cap in self.active:
            start, data, filled = cap
            # x[0] is absolute sample base - lead (history)
            lo = max(start + filled - base + self.lead, 0)
            take = min(self.length - filled, n + self.lead - lo)
            if take > 0:
                data[filled:filled + take] = x[lo:lo + take]  # one copy, into the burst's own array
                cap[2] = filled = filled + take
            if filled >= self.length:
                self.captured += 1
                if self.backlog is not None and not self.backlog.acquire(self._stopping):
                    continue  # flowgraph stopping
                self.published += 1
                self.message_port_pub(PDUS, _pdu(self.local, {"offset": int(start)}, data))
            else:
                still.append(cap)
        self.active = still
        return n


class sanitize_cc(_FastWork, gr.sync_block):
    """Replaces NaN/inf samples by 0 and reports them (``status``: event
    ``non_finite`` with the running count, at most once per ``work`` call).

    One NaN reaching ``corr_est_cc`` poisons its running power average for
    good (measured: a tag on every following sample, thousands of bogus
    captures). Vectorised numpy per ``work`` call; the copy costs about as
    much as one extra C++ block.
    """

    def __init__(self):
        gr.sync_block.__init__(self, "semcom_sanitize_cc", [np.complex64], [np.complex64])
        self.bad = 0
        self.calls = 0  # work() calls (diagnostics: each costs a fixed ~20-40 us in the Python gateway)
        self._numba = _k.backend() == "numba"
        self.message_port_register_out(STATUS)

    def work(self, input_items, output_items):
        x, y = input_items[0], output_items[0]
        self.calls += 1
        if self._numba:  # copy and check in one compiled pass, GIL released
            nbad = _k.first_use("copy_finite", _k.copy_finite, x, y)
            if nbad:
                self.bad += int(nbad)
                self.message_port_pub(STATUS, _status(event="non_finite", samples=self.bad,
                                                      offset=int(self.nitems_read(0))))
            return len(y)
        y[:] = x
        # one pass without temporaries: a NaN or inf anywhere makes the sum
        # non-finite (so may finite samples overflowing it: they then take
        # the exact per-sample check below, which finds nothing to replace)
        if np.isfinite(np.add.reduce(y.view(np.float32))):
            return len(y)
        bad = ~np.isfinite(y)
        if bad.any():
            y[bad] = 0
            self.bad += int(bad.sum())
            self.message_port_pub(STATUS, _status(event="non_finite", samples=self.bad,
                                                  offset=int(self.nitems_read(0))))
        return len(y)


class NativeBacklog:
    """:class:`Backlog`'s interface over the compiled capture's own backlog
    (the capture waits on it inside its C++ work(), without the GIL)."""

    def __init__(self, capture):
        self._c = capture
        self.max_pending = capture.backlog_max

    @property
    def pending(self) -> int:
        return self._c.backlog_pending

    def acquire(self, stop: threading.Event) -> bool:
        while True:
            r = self._c.backlog_acquire_for(0.05)
            if r == 1:
                return True
            if r < 0 or stop.is_set():
                return False

    def close(self) -> None:
        self._c.backlog_close()

    def reopen(self) -> None:
        self._c.backlog_reopen()

    def release(self) -> None:
        self._c.backlog_release()


class NativeBursts:
    """:class:`LocalPdus`'s ``parts`` over the compiled capture's registry:
    the message carries a burst id and ``take`` hands over the samples as a
    numpy array (no copy)."""

    def __init__(self, capture):
        self._c = capture

    def parts(self, msg) -> tuple[dict, np.ndarray]:
        if pmt.is_pair(msg) and pmt.is_uint64(pmt.car(msg)):
            try:
                start, x = self._c.take(pmt.to_uint64(pmt.car(msg)))
            except KeyError:
                raise ValueError("local PDU not in this receiver's registry") from None
            return {"offset": int(start)}, x
        return pdu_parts(msg)

    def clear(self) -> None:
        self._c.clear()

    def __len__(self) -> int:
        return self._c.held()


def make_sanitize():
    """The receivers' NaN guard: compiled if built (:func:`native_blocks`), else :class:`sanitize_cc`."""
    return _native.nan_guard_cc() if native_blocks() else sanitize_cc()


def make_burst_capture(length: int, lead: int = 0, min_gap: int = 0, max_pending: int = 8, tag_delay: int = 0):
    """(capture block, backlog, burst hand-off) of a receiver: the compiled
    ``burst_capture_c`` with its own backlog if built (:func:`native_blocks`),
    else :class:`burst_capture` with a :class:`Backlog` and :class:`LocalPdus`.
    Both cut the same bursts at the same tags (tests/test_native_blocks.py)
    and publish ``(u64 id . empty u8vector)`` messages that the hand-off's
    ``parts`` turns into ({"offset": start}, samples)."""
    if native_blocks():
        cap = _native.burst_capture_c(int(length), int(lead), "corr_start", 64, int(min_gap), int(max_pending),
                                      int(tag_delay))
        cap.backlog, cap.local = NativeBacklog(cap), NativeBursts(cap)
        return cap, cap.backlog, cap.local
    cap = burst_capture(length, lead=lead, min_gap=min_gap, tag_delay=tag_delay)
    cap.backlog, cap.local = Backlog(max_pending), LocalPdus()
    return cap, cap.backlog, cap.local
