"""JPEG2000 baseline (OpenJPEG through Pillow): rate-targeted encoding into a
byte budget, and decoding of a codestream with lost byte ranges.

The stream is a raw J2K codestream (no JP2 box wrapper: ~50 bytes that carry
nothing the receiver needs). Rate control searches the compression ratio of
a single quality layer (Pillow's ``quality_mode="rates"``) for the largest
stream that fits. A codestream that lost bytes is cut at the first lost
byte and decoded as a truncated stream. JPEG2000 is embedded, but Pillow's
OpenJPEG decoder returns an all-zero image for a cut codestream (measured
with every cut from 20 % to 90 % of a stream, with and without an EOC
marker appended), so in practice a stream that lost any frame gives a
mid-grey image, flagged failed.
"""
from __future__ import annotations

import io

import numpy as np


def encode(img: np.ndarray, ratio: float) -> bytes:
    from PIL import Image

    b = io.BytesIO()
    img = np.asarray(img, np.uint8)
    # OpenJPEG needs the lowest resolution level to be at least one pixel
    levels = max(1, min(6, int(np.log2(max(1, min(img.shape[:2])))) + 1))
    Image.fromarray(img).save(b, format="JPEG2000", no_jp2=True, quality_mode="rates",
                              quality_layers=[float(ratio)], irreversible=True, num_resolutions=levels)
    return b.getvalue()


def encode_to_budget(img: np.ndarray, max_bytes: int, iters: int = 14) -> bytes | None:
    """Largest codestream <= ``max_bytes`` (None if even the coarsest is larger)."""
    raw = img.size
    lo, hi = 1.0, 5000.0  # ratios: lo = large stream, hi = small stream
    best = None
    s = encode(img, hi)
    if len(s) > max_bytes:
        return None
    best = s
    for _ in range(iters):
        mid = float(np.sqrt(lo * hi))
        s = encode(img, mid)
        if len(s) <= max_bytes:
            best, hi = s, mid
        else:
            lo = mid
        if hi / lo < 1.01 or raw / hi >= max_bytes * 0.995:
            break
    return best


def decode(stream: bytes | None, shape: tuple[int, int], missing=()) -> tuple[np.ndarray, bool]:
    """(HxWx3 uint8 image, failed). ``missing`` = lost [start, end) ranges."""
    from PIL import Image, ImageFile

    grey = np.full((*shape, 3), 128, np.uint8)
    if not stream:
        return grey, True
    cut = min([s for s, _ in missing], default=len(stream))
    data = stream[:cut]
    if len(data) < 16:
        return grey, True
    prev = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        im = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    except Exception:
        return grey, True
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = prev
    if im.shape[:2] != tuple(shape) or (cut < len(stream) and not im.any()):
        return grey, True
    return im, False
