"""A Qt GUI sink for decoded images: image PDUs (PNG bytes, e.g. from
``seb_decoder``) -> the latest image in a QLabel, with a line of its
metadata (set, parts received, failed) under it. GNU Radio has no image
display widget; this one is a QWidget like qtgui's, placed by GRC's GUI hint.
The message handler runs on GNU Radio's thread, so the pixmap is handed to
the GUI thread through a queued Qt signal."""
from __future__ import annotations

import json

import numpy as np
import pmt
from gnuradio import gr
from PyQt5 import QtCore, QtGui, QtWidgets

from .pdu_util import pdu_parts


class _View(QtWidgets.QWidget):
    got = QtCore.pyqtSignal(bytes, str)
    status = QtCore.pyqtSignal(str)

    def __init__(self, label: str, scale: int):
        super().__init__()
        lay = QtWidgets.QVBoxLayout(self)
        self.title = QtWidgets.QLabel(label)
        self.image = QtWidgets.QLabel("waiting for an image")
        self.image.setMinimumSize(scale, scale)
        self.image.setAlignment(QtCore.Qt.AlignCenter)
        self.info = QtWidgets.QLabel("")
        self.info.setWordWrap(True)
        self.frames = QtWidgets.QLabel("frames: none yet")
        for w in (self.title, self.image, self.info, self.frames):
            lay.addWidget(w)
        self.scale = scale
        self.got.connect(self.show_image, QtCore.Qt.QueuedConnection)
        self.status.connect(self.frames.setText, QtCore.Qt.QueuedConnection)

    @QtCore.pyqtSlot(bytes, str)
    def show_image(self, png: bytes, text: str):
        img = QtGui.QImage.fromData(png, "PNG")
        if img.isNull():
            self.info.setText("not a PNG: " + text)
            return
        self.image.setPixmap(QtGui.QPixmap.fromImage(img).scaled(self.scale, self.scale, QtCore.Qt.KeepAspectRatio,
                                                                 QtCore.Qt.SmoothTransformation))
        self.info.setText(text)


class image_display(gr.basic_block):
    def __init__(self, label: str = "Received image", size: int = 256):
        gr.basic_block.__init__(self, "semcom_image_display", None, None)
        self.view = _View(label, int(size))
        self.shown = 0
        self.ok = self.bad = self.drops = 0
        self.message_port_register_in(pmt.intern("in"))
        self.set_msg_handler(pmt.intern("in"), self.handle)
        self.message_port_register_in(pmt.intern("status"))
        self.set_msg_handler(pmt.intern("status"), self.handle_status)

    def handle_status(self, msg):
        """phy_rx ``status`` events -> a line of frame counters."""
        s = pmt.to_python(msg)
        if not isinstance(s, dict):
            return
        ev = s.get("event")
        if ev == "frame":
            self.ok += bool(s.get("crc_ok"))
            self.bad += not s.get("crc_ok")
            self.view.status.emit(f"frames: {self.ok} CRC ok, {self.bad} CRC failed, {self.drops} bursts dropped; "
                                  f"last SNR {s.get('snr_db', float('nan')):.1f} dB, "
                                  f"CFO {s.get('cfo', float('nan')):+.4f} cycles/symbol")
        elif ev == "burst_drop":
            self.drops += 1

    def handle(self, msg):
        try:
            meta, data = pdu_parts(msg)
        except ValueError:
            return
        keep = {k: meta.get(k) for k in ("set_id", "failed", "complete", "parts", "name") if k in meta}
        self.view.got.emit(np.asarray(data, np.uint8).tobytes(), json.dumps(keep, default=str))
        self.shown += 1

    def qwidget(self):
        return self.view
