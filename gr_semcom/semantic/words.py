"""The words of the offline captions: the attribute palette and its colour
names, the COCO nouns, plurals and counts (shared by the object captioner and
the Multi-SC region captioner, semantic/captioner.py and multisc/vlm.py), and
the attribute captioner (colours, texture, size, position; no weights)."""
from __future__ import annotations

import numpy as np

# fixed palette (RGB) -> name; nearest in RGB
PALETTE = {
    "black": (20, 20, 20), "grey": (128, 128, 128), "white": (240, 240, 240), "red": (200, 30, 30),
    "orange": (240, 140, 30), "yellow": (235, 220, 50), "green": (60, 160, 60), "dark green": (30, 80, 35),
    "blue": (40, 80, 200), "light blue": (140, 190, 235), "navy": (20, 30, 90), "purple": (120, 50, 150),
    "pink": (235, 150, 180), "brown": (120, 75, 40), "beige": (215, 195, 160), "olive": (120, 120, 40),
    "teal": (30, 130, 130), "silver": (190, 190, 195),
}
_PAL_NAMES = list(PALETTE)
_PAL = np.array([PALETTE[k] for k in _PAL_NAMES], np.float32)


def colour_names(pixels: np.ndarray, k: int = 2) -> list[str]:
    """Names of the ``k`` most frequent palette colours of ``pixels`` (Nx3)."""
    px = np.asarray(pixels, np.float32).reshape(-1, 3)
    if px.shape[0] > 4096:
        px = px[np.linspace(0, px.shape[0] - 1, 4096).astype(int)]
    d = ((px[:, None, :] - _PAL[None]) ** 2).sum(-1)
    counts = np.bincount(d.argmin(1), minlength=len(_PAL_NAMES))
    order = [i for i in np.argsort(-counts, kind="stable") if counts[i] > 0][:k]
    return [_PAL_NAMES[i] for i in order]


#: COCO class -> the noun a caption uses (words the DeepSC text model knows where one exists)
NOUNS = {"dining table": "table", "cell phone": "phone", "sports ball": "ball", "tv": "tv",
         "potted plant": "plant", "wine glass": "glass", "hair drier": "hair dryer", "couch": "couch",
         "motorcycle": "motorcycle", "airplane": "airplane"}
_IRREGULAR = {"person": "people", "mouse": "mice", "knife": "knives", "sheep": "sheep", "skis": "skis",
              "glass": "glasses", "bus": "buses", "couch": "couches", "bench": "benches", "sandwich": "sandwiches",
              "toothbrush": "toothbrushes", "hair dryer": "hair dryers", "scissors": "scissors",
              "broccoli": "broccoli", "tie": "ties", "cake": "cakes", "giraffe": "giraffes"}
#: nouns that say where a thing is ("a cup on a table") rather than what the picture shows
SUPPORTS = {"table", "bed", "couch", "bench"}
#: no colour word for people (clothes are not the person)
UNCOLOURED = {"person"}
_NUMBERS = ("no", "a", "two", "three", "four")
#: attribute palette names -> words the DeepSC model knows
_COLOUR_WORD = {"grey": "gray", "dark green": "green", "light blue": "blue", "navy": "blue", "teal": "blue",
                "silver": "gray", "beige": "brown", "olive": "green"}


def plural(noun: str) -> str:
    if noun in _IRREGULAR:
        return _IRREGULAR[noun]
    head, _, last = noun.rpartition(" ")
    if last in _IRREGULAR:
        return (head + " " if head else "") + _IRREGULAR[last]
    if last.endswith(("s", "x", "ch", "sh")):
        last += "es"
    elif last.endswith("y") and last[-2:-1] not in "aeiou":
        last = last[:-1] + "ies"
    elif last.endswith("fe"):
        last = last[:-2] + "ves"
    else:
        last += "s"
    return (head + " " if head else "") + last


def count_phrase(noun: str, n: int) -> str:
    """'a dog', 'two dogs', ..., 'many dogs'; 'an' before a vowel."""
    if n == 1:
        return ("an " if noun[0] in "aeiou" else "a ") + noun
    return f"{_NUMBERS[n] if n < len(_NUMBERS) else 'many'} {plural(noun)}"


def position_words(cx: float, cy: float) -> str:
    v = "top" if cy < 1 / 3 else ("bottom" if cy > 2 / 3 else "")
    h = "left" if cx < 1 / 3 else ("right" if cx > 2 / 3 else "")
    if not v and not h:
        return "centre"
    return " ".join(x for x in (v, h) if x)


class AttributeCaptioner:
    name = "attributes"

    def describe(self, crop: np.ndarray, box=None, shape=None, main_fraction: float = 0.0) -> str:
        from .images import resize

        im = np.asarray(crop, np.uint8)
        if im.shape[0] * im.shape[1] > 128 * 128:
            s = 128 / max(im.shape[:2])
            im = resize(im, (max(1, round(im.shape[1] * s)), max(1, round(im.shape[0] * s))))
        cols = colour_names(im, 2)
        grey = im.astype(np.float32).mean(-1)
        if min(grey.shape) >= 2:
            gy, gx = np.gradient(grey)
            energy = float(np.sqrt(gx ** 2 + gy ** 2).mean())
        else:  # 1-pixel-wide crop: no gradient to measure
            energy = 0.0
        texture = "smooth" if energy < 4 else ("textured" if energy < 12 else "detailed")
        light = float(grey.mean())
        tone = "dark " if light < 80 else ("bright " if light > 180 else "")
        colour = " and ".join(cols)
        if box is None or shape is None:
            return f"a {tone}{texture} picture mostly {colour}"
        h, w = shape
        frac = box.area / float(h * w)
        if frac > 0.9:
            where, size = "whole picture", "whole"
        else:
            cx, cy = box.centre
            where = position_words(cx / w, cy / h)
            size = "small" if frac < 0.1 else ("medium" if frac < 0.35 else "large")
        if main_fraction > 0.5:
            return f"the main object {tone}{texture} {colour} at the {where}".replace("at the whole picture",
                                                                                     "in the whole picture")
        if size == "whole":
            return f"a {tone}{texture} picture mostly {colour}"
        return f"a {size} {tone}{texture} {colour} region at the {where} of the picture"

    def __call__(self, image: np.ndarray) -> str:
        return self.describe(image)
