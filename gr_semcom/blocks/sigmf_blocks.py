"""SigMF record and replay as stream blocks: the samples go through GNU
Radio's C++ file blocks, the metadata through the ``sigmf`` package
(gr_semcom.phy.recording).

* ``sigmf_sink(path, rate, freq, ...)``: complex in -> ``path.sigmf-data``
  (cf32_le, blocks.file_sink) and ``path.sigmf-meta`` written when the block
  is built (rate, frequency, description, hardware, the ``semcom:`` frame
  settings and scheme), so a capture that is cut off is still a valid
  recording. Put one after the TX (the transmitted baseband) or after the
  radio source (what the antenna got).
* ``sigmf_source(path, repeat, throttle)``: a recording -> complex out
  (file_source; ``ci16_le`` / ``ci8`` captures go through the C++
  interleaved-to-complex converters, scaled to +-1). ``throttle`` paces it at
  the recorded sample rate (for GUIs); headless replay runs as fast as the
  receiver goes. Its ``meta`` attribute holds the recording's metadata, and
  ``frame_spec()`` the receiver settings stored in it.
"""
from __future__ import annotations

import json

from gnuradio import blocks, gr

from ..phy.recording import RecordingError, base_path, frame_spec, read_meta, write_meta


class sigmf_sink(gr.hier_block2):
    def __init__(self, path: str = "capture", rate: float = 1e6, freq: float = 0.0, description: str = "",
                 hw: str = "", extra_json: str = "", frame: dict | None = None):
        gr.hier_block2.__init__(self, "semcom_sigmf_sink", gr.io_signature(1, 1, gr.sizeof_gr_complex),
                                gr.io_signature(0, 0, 0))
        base = base_path(path)
        base.parent.mkdir(parents=True, exist_ok=True)
        try:
            extra = json.loads(extra_json) if extra_json else {}
        except ValueError as exc:
            raise ValueError(f"extra_json is not JSON: {exc}") from None
        if not isinstance(extra, dict):
            raise ValueError("extra_json must be a JSON object")
        if frame:
            extra["frame"] = frame
        data = base.with_suffix(".sigmf-data")
        data.write_bytes(b"")
        self.meta_path = write_meta(base, rate, freq, description, extra, hw=hw)
        self.data_path = data
        self.file = blocks.file_sink(gr.sizeof_gr_complex, str(data), False)
        # flushed every work call: a capture stopped by Ctrl-C or a crash keeps
        # every sample it got (fflush per buffer, not per sample)
        self.file.set_unbuffered(True)
        self.connect(self, self.file)

    def close(self):
        self.file.close()


class sigmf_source(gr.hier_block2):
    def __init__(self, path: str = "capture", repeat: bool = False, throttle: bool = False):
        gr.hier_block2.__init__(self, "semcom_sigmf_source", gr.io_signature(0, 0, 0),
                                gr.io_signature(1, 1, gr.sizeof_gr_complex))
        self.meta = read_meta(path)
        dt = self.meta["core:datatype"]
        self.sample_rate = float(self.meta["core:sample_rate"])
        self.frequency = float(self.meta["capture"].get("core:frequency", 0.0))
        data = self.meta["data_path"]
        if dt == "cf32_le":
            self.file = blocks.file_source(gr.sizeof_gr_complex, data, bool(repeat))
            chain = [self.file]
        elif dt == "ci16_le":
            self.file = blocks.file_source(gr.sizeof_short, data, bool(repeat))
            chain = [self.file, blocks.interleaved_short_to_complex(False, False, 32768.0)]
        else:  # ci8
            self.file = blocks.file_source(gr.sizeof_char, data, bool(repeat))
            chain = [self.file, blocks.interleaved_char_to_complex(False, 128.0)]
        if throttle:
            chain.append(blocks.throttle(gr.sizeof_gr_complex, self.sample_rate, True))
        self._chain = chain
        self.connect(*chain, self)

    def frame_spec(self):
        return frame_spec(self.meta)


__all__ = ["sigmf_sink", "sigmf_source", "RecordingError"]
