"""SigMF recordings of gr_semcom baseband (the ``sigmf`` package; numpy only,
no GNU Radio).

A recording is ``NAME.sigmf-meta`` (JSON) + ``NAME.sigmf-data`` (raw
samples). gr_semcom writes ``cf32_le`` and reads ``cf32_le``, ``ci16_le`` and
``ci8`` (what SDR tools such as ``hackrf_transfer`` produce). Besides the core
fields (sample rate, centre frequency, description, recorder, sha512) the
global object carries the ``semcom:`` extension, everything a receiver needs
to demodulate it without guessing:

* ``semcom:frame``: the FrameSpec fields (modulation, code_rate, codewords,
  sps, rolloff, ...), enough to rebuild the receiver;
* ``semcom:scheme``: what the PDUs hold (``file``, ``seb``, ...);
* ``semcom:channel``: the simulated channel it went through, if any
  (ChannelSpec fields), or ``null`` for a clean TX baseband / real capture;
* ``semcom:payloads``: per transmitted PDU its payload type, length and
  SHA-256, so a replay can check what it got.

Annotations mark each burst (``core:label`` = ``burst``).
"""
from __future__ import annotations

import json
import warnings
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np

EXTENSION = {"name": "semcom", "version": "0.1.0", "optional": True}
READABLE = ("cf32_le", "ci16_le", "ci8", "ci8_le")


class RecordingError(ValueError):
    """A SigMF recording that gr_semcom cannot use (message says why)."""


def base_path(path) -> Path:
    """``x``, ``x.sigmf-meta`` or ``x.sigmf-data`` -> ``x``."""
    p = Path(path)
    if p.suffix in (".sigmf-meta", ".sigmf-data"):
        p = p.with_suffix("")
    return p


def frame_fields(spec) -> dict:
    """The FrameSpec constructor arguments of ``spec`` (JSON-safe)."""
    return {f.name: getattr(spec, f.name) for f in fields(spec)}


def frame_spec(meta: dict):
    """Rebuild the FrameSpec stored in a recording's ``semcom:frame``."""
    from .frame import FrameSpec

    fr = meta.get("semcom:frame")
    if not isinstance(fr, dict):
        raise RecordingError("the recording has no semcom:frame (not written by gr_semcom?); "
                             "give the frame settings explicitly")
    try:
        return FrameSpec(**fr)
    except (TypeError, ValueError) as exc:
        raise RecordingError(f"semcom:frame {fr} is not a valid FrameSpec: {exc}") from None


def write_meta(path, sample_rate: float, center_freq: float = 0.0, description: str = "",
               extra: dict | None = None, annotations: list | None = None, datatype: str = "cf32_le",
               hw: str = "") -> Path:
    """Write ``path.sigmf-meta`` for the data file next to it (which may
    still be empty: a streaming sink writes the samples later; the sha512 is
    then left out). Returns the meta path."""
    from sigmf import SigMFFile

    base = base_path(path)
    data = base.with_suffix(".sigmf-data")
    if not data.exists():
        data.touch()
    info = {"core:datatype": datatype, "core:sample_rate": float(sample_rate),
            "core:description": description, "core:recorder": "gr_semcom",
            "core:extensions": [EXTENSION]}
    if hw:
        info["core:hw"] = hw
    for k, v in (extra or {}).items():
        info[k if ":" in k else "semcom:" + k] = json.loads(json.dumps(v))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if data.stat().st_size:
            m = SigMFFile(data_file=str(data), global_info=info)
        else:  # a streaming sink fills it later (sigmf memory-maps the data file, and cannot map an empty one)
            m = SigMFFile(global_info=info)
        m.add_capture(0, metadata={"core:frequency": float(center_freq)})
        for start, count, label, md in annotations or []:
            m.add_annotation(int(start), int(count), metadata=dict({"core:label": label}, **(md or {})))
        meta = base.with_suffix(".sigmf-meta")
        m.tofile(str(meta), overwrite=True)
    return meta


def write_recording(path, samples: np.ndarray, sample_rate: float, center_freq: float = 0.0,
                    description: str = "", extra: dict | None = None, annotations: list | None = None) -> Path:
    """Samples (complex) -> ``path.sigmf-data`` (cf32_le) + ``path.sigmf-meta``."""
    x = np.asarray(samples)
    if not np.iscomplexobj(x) or x.ndim != 1:
        raise RecordingError("a recording is one stream of complex samples")
    if not np.all(np.isfinite(x)):
        raise RecordingError("samples contain NaN or inf")
    base = base_path(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    x.astype("<c8").tofile(base.with_suffix(".sigmf-data"))
    return write_meta(base, sample_rate, center_freq, description, extra, annotations)


def read_meta(path) -> dict:
    """The global object of a recording plus ``capture`` (first capture) and
    ``annotations``; RecordingError if it is missing or unusable."""
    base = base_path(path)
    meta_p = base.with_suffix(".sigmf-meta")
    if not meta_p.is_file():
        raise RecordingError(f"{meta_p} not found")
    try:
        doc = json.loads(meta_p.read_text())
        g = dict(doc["global"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RecordingError(f"{meta_p} is not SigMF metadata: {exc}") from None
    dt = g.get("core:datatype")
    if dt not in READABLE:
        raise RecordingError(f"datatype {dt!r} not supported (gr_semcom reads {', '.join(READABLE)})")
    if int(g.get("core:num_channels", 1)) != 1:
        raise RecordingError("only single-channel recordings are supported")
    if not float(g.get("core:sample_rate", 0)) > 0:
        raise RecordingError("core:sample_rate missing or not positive")
    caps = doc.get("captures") or [{}]
    g["capture"] = caps[0]
    g["annotations"] = doc.get("annotations") or []
    g["data_path"] = str(base.with_suffix(".sigmf-data"))
    if not Path(g["data_path"]).is_file():
        raise RecordingError(f"{g['data_path']} not found")
    return g


def read_samples(path, verify: bool = True) -> tuple[np.ndarray, dict]:
    """(complex64 samples, metadata) of a recording; ``verify`` checks the
    sha512 when the metadata has one."""
    from sigmf import sigmffile

    g = read_meta(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            m = sigmffile.fromfile(str(base_path(path)), skip_checksum=not verify)
        except Exception as exc:  # sigmf raises its own error types (hash mismatch, schema)
            raise RecordingError(f"{base_path(path)}: {type(exc).__name__}: {exc}") from None
        x = m.read_samples()
    return np.asarray(x, np.complex64).ravel(), g


def channel_meta(chan) -> dict | None:
    if chan is None:
        return None
    d = asdict(chan)
    d["dc_offset"] = [float(np.real(d["dc_offset"])), float(np.imag(d["dc_offset"]))]
    if d.get("static_taps"):
        d["static_taps"] = [[float(np.real(t)), float(np.imag(t))] for t in d["static_taps"]]
    return d
