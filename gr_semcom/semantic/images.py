"""Image loading and checks shared by every codec (PIL + numpy, no GNU Radio).

Bad input gets a clear :class:`ImageError`: not an image, truncated file,
1x1 or absurdly large images. Grayscale, palette, RGBA (alpha composited on
white), 16-bit and CMYK images are converted to 8-bit RGB.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

MIN_SIDE = 8
MAX_PIXELS = 8192 * 8192  # 8000x8000 is accepted (and downscaled by the codecs)


class ImageError(ValueError):
    """The input is not a usable image; the message says why."""


def load_image(src, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Path, bytes or PIL image -> HxWx3 uint8 RGB array."""
    try:
        if isinstance(src, Image.Image):
            im = src
        elif isinstance(src, (bytes, bytearray, memoryview)):
            im = Image.open(io.BytesIO(bytes(src)))
        else:
            p = Path(src)
            if not p.is_file():
                raise ImageError(f"no such image file: {p}")
            im = Image.open(p)
        w, h = im.size
        if w * h > max_pixels:
            raise ImageError(f"image is {w}x{h}, more than {max_pixels} pixels")
        if min(w, h) < MIN_SIDE:
            raise ImageError(f"image is {w}x{h}; both sides must be at least {MIN_SIDE} pixels")
        im.load()
    except ImageError:
        raise
    except UnidentifiedImageError as e:
        raise ImageError(f"not an image file PIL can read: {src if not isinstance(src, (bytes, bytearray)) else '<bytes>'}") from e
    except (OSError, SyntaxError, ValueError) as e:  # truncated / corrupt data
        raise ImageError(f"corrupt or truncated image: {e}") from e
    return to_rgb(im)


def to_rgb(im) -> np.ndarray:
    """PIL image or array of any common mode/bit depth -> HxWx3 uint8."""
    if isinstance(im, np.ndarray):
        a = im
        if a.dtype == np.uint16 or (a.dtype.kind in "iu" and a.max(initial=0) > 255):
            a = (a.astype(np.float64) / 257.0).round()
        elif a.dtype.kind == "f":
            a = np.clip(a, 0.0, 1.0) * 255.0 if a.max(initial=0) <= 1.0 else np.clip(a, 0, 255)
        a = a.astype(np.uint8)
        if a.ndim == 2:
            a = np.repeat(a[:, :, None], 3, axis=2)
        if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
            raise ImageError(f"array of shape {im.shape} is not an image")
        if a.shape[2] == 1:
            a = np.repeat(a, 3, axis=2)
        if a.shape[2] == 4:
            alpha = a[:, :, 3:4].astype(np.float32) / 255.0
            a = (a[:, :, :3] * alpha + 255.0 * (1 - alpha)).round().astype(np.uint8)
        return np.ascontiguousarray(a)
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if a.max(initial=0) > 255 else 255.0
        return to_rgb((np.clip(a / top, 0, 1) * 255).round().astype(np.uint8))
    if im.mode == "F":
        return to_rgb(np.asarray(im, dtype=np.float32))
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        return to_rgb(np.asarray(im.convert("RGBA")))
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def resize(img: np.ndarray, size: tuple[int, int], resample=Image.BILINEAR) -> np.ndarray:
    """(width, height) resize of a uint8 HxW or HxWxC array."""
    return np.asarray(Image.fromarray(img).resize(size, resample))


def png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


SET_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".webp")


def load_image_set(src: Path, size: int | None = None) -> tuple[list[str], list, list[dict]]:
    """Images of a directory (or one file): (names, arrays, failures). A file
    that does not decode is a failure with its reason; the rest go on."""
    import numpy as np
    from PIL import Image


    files = sorted(p for p in src.iterdir() if p.suffix.lower() in SET_SUFFIXES) if src.is_dir() else [src]
    names, images, failures = [], [], []
    for f in files:
        try:
            im = load_image(f)
            if size:
                h, w = im.shape[:2]
                k = size / min(h, w)
                im = np.asarray(Image.fromarray(im).resize((max(size, round(w * k)), max(size, round(h * k))),
                                                            Image.BICUBIC))
                y0, x0 = (im.shape[0] - size) // 2, (im.shape[1] - size) // 2
                im = np.ascontiguousarray(im[y0:y0 + size, x0:x0 + size])
            if min(im.shape[:2]) < 64:
                raise ImageError(f"{f.name}: {im.shape[1]}x{im.shape[0]} is below the 64x64 these codecs need")
            names.append(f.stem)
            images.append(im)
        except ImageError as exc:
            failures.append({"image": f.stem, "failed": True, "reason": str(exc)})
    return names, images, failures
