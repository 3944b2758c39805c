"""Small helpers to move numpy arrays and dicts in and out of PMT PDUs."""
from __future__ import annotations

import numpy as np
import pmt


def meta_to_dict(meta) -> dict:
    if pmt.is_dict(meta):
        return dict(pmt.to_python(meta) or {})
    return {}


def dict_to_meta(d: dict):
    meta = pmt.make_dict()
    for k, v in d.items():
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, (list, tuple)):
            v = pmt.to_pmt([tuple(x) if isinstance(x, (list, tuple)) else x for x in v]) if v else pmt.PMT_NIL
        else:
            v = pmt.to_pmt(v)
        meta = pmt.dict_add(meta, pmt.intern(str(k)), v)
    return meta


def make_pdu(meta: dict, data: np.ndarray | bytes):
    if isinstance(data, (bytes, bytearray)):
        data = np.frombuffer(bytes(data), dtype=np.uint8)
    arr = np.ascontiguousarray(data).ravel()  # PDUs are flat vectors; shapes travel in the metadata
    if arr.dtype == np.uint8:
        vec = pmt.init_u8vector(arr.size, arr)
    elif arr.dtype == np.float32:
        vec = pmt.init_f32vector(arr.size, arr)
    elif arr.dtype == np.complex64:
        # measured on GR 3.10.5: a list is ~10x faster than the numpy buffer path here
        vec = pmt.init_c32vector(arr.size, arr.tolist())
    else:
        raise TypeError(f"unsupported PDU dtype {arr.dtype}")
    return pmt.cons(dict_to_meta(meta), vec)


def pdu_parts(msg):
    """(meta dict, numpy array) of a PDU; raises ValueError for a non-PDU."""
    if not pmt.is_pair(msg):
        raise ValueError("message is not a PDU (pair of metadata and vector)")
    meta, vec = pmt.car(msg), pmt.cdr(msg)
    if not (pmt.is_u8vector(vec) or pmt.is_f32vector(vec) or pmt.is_c32vector(vec)):
        raise ValueError("PDU vector must be u8, f32 or c32")
    arr = np.asarray(pmt.to_python(vec))
    return meta_to_dict(meta), arr


class numbered_file_sink:
    """Mixin of the file-writing sinks: ``<dir>/<prefix>_<n><suffix>`` per
    message plus ``<prefix>_<n>.json`` of its metadata."""

    def _init_files(self, directory: str, prefix: str) -> None:
        from pathlib import Path

        self.dir = Path(directory)
        self.prefix = prefix
        self.n = 0
        self.written: list = []

    def write_files(self, meta: dict, files: dict):
        """``files``: suffix -> bytes. Returns the common stem (a Path)."""
        import json

        self.dir.mkdir(parents=True, exist_ok=True)
        stem = self.dir / f"{self.prefix}_{self.n:05d}"
        for suffix, data in files.items():
            stem.with_name(stem.name + suffix).write_bytes(data)
        stem.with_name(stem.name + ".json").write_text(json.dumps(meta, indent=1, default=str))
        self.n += 1
        self.written.append(stem)
        return stem
