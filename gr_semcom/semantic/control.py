"""ControlNet control images from ULBSC's received saliency map.

The generator server's default ControlNet (``lllyasviel/sd-controlnet-canny``)
was trained on thin white-on-black Canny edge maps (Zhang et al., ControlNet,
ICCV 2023: the canny model's condition is a binary edge image); handing it
ULBSC's received saliency map -- a soft, low-resolution blob -- asks it to
read a kind of image it never saw. :func:`prepare_control` turns the map into
the input the chosen ControlNet expects:

* ``raw``: the map itself, 0..255 (for a ControlNet trained on saliency maps,
  e.g. one made with :mod:`gr_semcom.semantic.train_controlnet`);
* ``threshold``: the salient object as a binary mask (map >= threshold);
* ``edges`` (default, for the canny ControlNet): the 1-pixel boundary of that
  mask at the generation size, white on black.

The map is first resized (bilinear) to the output size, so thresholds and
edges are taken at generation resolution, not on the 64x64 received map.
numpy + PIL only.
"""
from __future__ import annotations

import numpy as np

MODES = ("raw", "threshold", "edges")


def _map01(saliency) -> np.ndarray:
    m = np.asarray(saliency)
    if m.ndim == 3:
        m = m[..., :3].mean(axis=-1) if m.shape[-1] in (3, 4) else m[..., 0]
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"a saliency map is HxW (or HxWx1/3), got shape {np.asarray(saliency).shape}")
    m = np.nan_to_num(m.astype(np.float32))
    if m.max() > 1.0:  # 0..255 maps
        m = m / 255.0
    return np.clip(m, 0.0, 1.0)


def _resize01(m: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """``size`` = (width, height); bilinear on float32 (no 8-bit rounding)."""
    if size is None or (m.shape[1], m.shape[0]) == tuple(size):
        return m
    from PIL import Image

    w, h = int(size[0]), int(size[1])
    if w < 1 or h < 1:
        raise ValueError(f"control size must be positive, got {size}")
    return np.asarray(Image.fromarray(m, mode="F").resize((w, h), Image.BILINEAR), np.float32)


def mask_edges(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """Boundary pixels of a boolean mask (mask pixels with a 4-neighbour
    outside it; where the mask runs into the image border, the border is no
    edge), thickened to ``width`` pixels."""
    m = np.asarray(mask, bool)
    p = np.pad(m, 1, mode="edge")
    inner = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    e = m & ~inner
    for _ in range(max(0, width - 1)):
        q = np.pad(e, 1)
        e = q[1:-1, 1:-1] | q[:-2, 1:-1] | q[2:, 1:-1] | q[1:-1, :-2] | q[1:-1, 2:]
    return e


def prepare_control(saliency, mode: str = "edges", size: tuple[int, int] | None = None, threshold: float = 0.5,
                    width: int | None = None) -> np.ndarray:
    """HxW uint8 control image (0 / 255 for ``threshold`` and ``edges``) of
    ``saliency`` (HxW in 0..1 or 0..255) at ``size`` = (width, height) or the
    map's own size. ``width``: edge thickness in pixels (default: 1 per 256
    pixels of the shorter side, at least 1)."""
    if mode not in MODES:
        raise ValueError(f"control mode is one of {MODES}, got {mode!r}")
    if not 0.0 < threshold < 1.0:
        raise ValueError("threshold is in (0, 1)")
    m = _resize01(_map01(saliency), size)
    if mode == "raw":
        return (m * 255.0 + 0.5).astype(np.uint8)
    mask = m >= threshold
    if mode == "threshold":
        return mask.astype(np.uint8) * 255
    w = width if width is not None else max(1, min(m.shape) // 256)
    return mask_edges(mask, w).astype(np.uint8) * 255
