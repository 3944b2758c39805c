"""One C++ ``wait()`` at a time per GNU Radio top block.

Why this exists (a workaround for GNU Radio 3.10, installed on import of
``gr_semcom.blocks``): ``gr.top_block.wait()`` runs the C++ wait on a helper
thread and polls it from the calling thread, so that Ctrl-C stays
serviceable. The ``main()`` that GNU Radio Companion generates for a
``no_gui`` flowgraph sits in ``tb.wait()``, and its SIGINT/SIGTERM handler
(GRC's Kill button sends SIGTERM) calls ``tb.stop(); tb.wait()`` from that
same main thread while the first helper thread is still waiting. Two threads
then join the scheduler's threads at once (``gr::thread::thread_group::join_all``
takes only a shared lock, and ``boost::thread::join`` resets the thread's
data without one), a data race. Reproduced on this project's machine with a
plain flowgraph of GNU Radio's own blocks (tests/test_gr_wait.py) as
``RuntimeError: boost thread: trying joining itself``, as a flowgraph that
never exits after SIGTERM, and seen once in CI as glibc's ``double free or
corruption (fasttop)`` when a headless flowgraph was killed.

With :func:`install`, a second ``wait()`` on a top block whose C++ wait is
already running waits on that helper thread's result instead of starting a
second C++ wait; Ctrl-C handling is GNU Radio's (stop, then wait again).
"""
from __future__ import annotations

import threading

from gnuradio import gr
from gnuradio.gr.gr_python import top_block_wait_unlocked

_lock = threading.Lock()


class _Waiter(threading.Thread):
    """The one helper thread running a top block's C++ wait()."""

    def __init__(self, impl):
        super().__init__(daemon=True, name="semcom_tb_wait")
        self.impl = impl
        self.error: BaseException | None = None
        self.start()

    def run(self):
        try:
            top_block_wait_unlocked(self.impl)
        except BaseException as exc:  # handed to every caller of wait()
            self.error = exc


def serialised_wait(self) -> None:
    """Wait for the flowgraph to finish; concurrent calls share one C++ wait()
    (gr_semcom.blocks.gr_wait says why)."""
    with _lock:
        w = self.__dict__.get("_semcom_waiter")
        if w is None or not w.is_alive():
            w = _Waiter(self._impl)
            self.__dict__["_semcom_waiter"] = w
    try:
        while w.is_alive():
            w.join(0.1)
    except KeyboardInterrupt:
        if not getattr(self, "handle_sigint", True):
            raise
        self.stop()
        self.wait()
    if w.error is not None:
        raise w.error


def install() -> None:
    """Make ``gr.top_block.wait`` :func:`serialised_wait` (idempotent)."""
    if gr.top_block.wait is not serialised_wait:
        gr.top_block.wait = serialised_wait
