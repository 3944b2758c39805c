"""Training and test data that exist on an offline Debian machine.

There is no DUTS, COCO or captioned image set here (see DESIGN.md), so:

* photos: Debian's ``opencv-doc`` example images (fetched with
  ``apt-get download`` + ``dpkg -x`` into the cache; no root needed) for
  training, scikit-image's and matplotlib's bundled photos plus ten held-out
  opencv-doc photos for testing (:data:`TEST_OPENCV`);
* saliency ground truth: U^2-Net lite maps of those photos (the paper's own
  ground truth for generated images is also a detector output);
* extra saliency layouts: Fashion-MNIST silhouettes (Debian
  ``dataset-fashion-mnist``) composited 1-3 per canvas at random scale and
  position -- object-shaped masks that teach the codebook shapes and places;
* text: English sentences from Debian package descriptions
  (``apt-cache dumpavail``) for the DeepSC text JSCC.
"""
from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

CACHE = Path(os.environ.get("SEMCOM_CACHE", Path.home() / ".cache" / "gr_semcom"))
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
# opencv-doc photos kept out of training (natural scenes with a clear subject)
TEST_OPENCV = ("messi5.jpg", "fruits.jpg", "HappyFish.jpg", "butterfly.jpg", "apple.jpg", "orange.jpg",
               "baboon.jpg", "squirrel_cls.jpg", "home.jpg", "aero1.jpg")


def opencv_doc_dir(fetch: bool = True) -> Path:
    """Directory of opencv-doc's example images, fetched from Debian if missing."""
    d = CACHE / "opencv-doc" / "usr" / "share" / "doc" / "opencv-doc" / "examples" / "data"
    if d.is_dir() or not fetch:
        return d
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        raise RuntimeError("opencv-doc images need apt-get and dpkg (Debian)")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["apt-get", "download", "opencv-doc"], cwd=tmp, check=True, capture_output=True)
        deb = next(Path(tmp).glob("opencv-doc_*.deb"))
        (CACHE / "opencv-doc").mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg", "-x", str(deb), str(CACHE / "opencv-doc")], check=True)
    return d


def _load(path: Path) -> np.ndarray | None:
    from .images import ImageError, load_image

    try:
        return load_image(path)
    except ImageError:
        return None


def train_photos() -> list[tuple[str, np.ndarray]]:
    d = opencv_doc_dir()
    out = []
    for p in sorted(d.iterdir()):
        if p.suffix.lower() in (".jpg", ".png") and p.name not in TEST_OPENCV:
            im = _load(p)
            if im is not None and min(im.shape[:2]) >= 64:
                out.append((p.name, im))
    return out


def test_photos() -> list[tuple[str, np.ndarray]]:
    """Held-out photos: scikit-image's colour photos, matplotlib's Grace
    Hopper, and :data:`TEST_OPENCV`."""
    import matplotlib
    import skimage.data as skd

    out = []
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        out.append((name, np.asarray(getattr(skd, name)())))
    out.append(("motorcycle", np.asarray(skd.stereo_motorcycle()[0])))
    gh = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if gh.is_file():
        out.append(("grace_hopper", _load(gh)))
    d = opencv_doc_dir()
    for n in TEST_OPENCV:
        im = _load(d / n)
        if im is not None:
            out.append((n.rsplit(".", 1)[0], im))
    return out


def augment_crops(img: np.ndarray, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Random crops (40-100 % of the short side, aspect 0.75-1.33), flips."""
    h, w = img.shape[:2]
    out = []
    for _ in range(n):
        s = int(rng.uniform(0.4, 1.0) * min(h, w))
        ar = rng.uniform(0.75, 1.33)
        ch, cw = min(h, int(s * ar)), min(w, int(s / ar))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        c = img[y:y + ch, x:x + cw]
        if rng.random() < 0.5:
            c = c[:, ::-1]
        out.append(np.ascontiguousarray(c))
    return out


def map_crops(maps: list[np.ndarray], n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random crops (with flips) of each full-resolution saliency map,
    area-resized to size x size. Cropping the map stands in for the map of
    the cropped photo (U^2-Net is 0.5 s per photo on this CPU)."""
    from .ulbsc.vq import prepare_map

    out = [prepare_map(c, size)[0, 0].numpy() for m in maps for c in augment_crops(m, n, rng)]
    return np.stack(out).astype(np.float32)


def fashion_mnist(limit: int | None = None) -> np.ndarray:
    f = FASHION_MNIST / "train-images-idx3-ubyte.gz"
    if not f.is_file():
        raise FileNotFoundError(f"{f} missing: apt-get install dataset-fashion-mnist")
    with gzip.open(f, "rb") as fh:
        raw = fh.read()
    imgs = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)
    return imgs[:limit] if limit else imgs


def silhouette_maps(n: int, size: int, rng: np.random.Generator, shapes: np.ndarray | None = None) -> np.ndarray:
    """``n`` maps of 1-3 Fashion-MNIST silhouettes (soft edges) per canvas."""
    shapes = fashion_mnist(20000) if shapes is None else shapes
    out = np.zeros((n, size, size), np.float32)
    for i in range(n):
        canvas = np.zeros((size, size), np.float32)
        for _ in range(rng.choice([1, 1, 1, 2, 2, 3])):
            s = shapes[rng.integers(len(shapes))].astype(np.float32) / 255.0
            m = (s > 0.08).astype(np.float32)
            side = int(rng.uniform(0.3, 0.95) * size)
            asp = rng.uniform(0.7, 1.4)
            wh = (max(4, min(size, int(side / asp))), max(4, min(size, int(side * asp))))
            m = np.asarray(Image.fromarray(m).resize(wh, Image.BILINEAR))
            if rng.random() < 0.5:
                m = m[:, ::-1]
            y = rng.integers(0, size - wh[1] + 1)
            x = rng.integers(0, size - wh[0] + 1)
            canvas[y:y + wh[1], x:x + wh[0]] = np.maximum(canvas[y:y + wh[1], x:x + wh[0]], m)
        out[i] = canvas
    return out


def saliency_maps(detector, images: list[np.ndarray], size: int, progress: bool = True) -> np.ndarray:
    from tqdm import tqdm

    from .ulbsc.vq import prepare_map

    maps = []
    for im in tqdm(images, desc=f"saliency ({detector.name})", disable=not progress):
        maps.append(prepare_map(detector(im), size)[0, 0].numpy())
    return np.stack(maps) if maps else np.zeros((0, size, size), np.float32)


def debian_sentences(limit: int = 60000, seed: int = 0) -> list[str]:
    """English phrases from Debian package descriptions (``apt-cache
    dumpavail``: each package's one-line description, plus long-description
    sentences where the apt lists carry them), lower-cased, punctuation split
    off, without digits or URLs, 4-24 words, deduplicated, shuffled."""
    txt = subprocess.run(["apt-cache", "dumpavail"], check=True, capture_output=True, text=True).stdout
    seen, out = set(), []
    for line in txt.splitlines():
        if line.startswith("Description: "):
            cands = [line[len("Description: "):]]
        elif line.startswith(" ") and line.strip() != ".":
            cands = re.split(r"(?<=[.!?]) +", line.strip())
        else:
            continue
        for c in cands:
            if any(ch.isdigit() for ch in c) or "http" in c or "@" in c or "_" in c:
                continue
            t = normalise_text(c)
            if 4 <= len(t.split()) <= 24 and t not in seen:
                seen.add(t)
                out.append(t)
    rng = np.random.default_rng(seed)
    rng.shuffle(out)
    return out[:limit]


def pdu_text(raw: bytes) -> str:
    """Text of a received UTF-8 field: the PHY's reassembler zero-fills the
    bytes of lost frames, so those drop out and broken sequences become U+FFFD."""
    return bytes(raw).decode("utf-8", errors="replace").replace("\x00", "")


def normalise_text(s: str) -> str:
    s = s.lower().strip()
    s = re.sub(r"([,.!?;:'\"()\-])", r" \1 ", s)
    return re.sub(r"\s+", " ", s).strip()


# Hand-written word lists for BLIP-style synthetic captions ("a brown dog
# sitting on a couch"): the nouns are everyday object and scene words (the
# kind COCO's categories name), so captions of photos do not fall out of the
# DeepSC vocabulary. A grammar, not a dataset: say so wherever figures use it.
_OBJECTS = ("person man woman boy girl child baby dog cat horse cow sheep bird elephant bear zebra giraffe "
            "car bus truck train bicycle motorcycle airplane boat rocket bench chair couch bed table toilet tv "
            "laptop phone book clock vase bottle cup bowl banana apple orange sandwich pizza cake donut "
            "broccoli carrot umbrella kite skateboard surfboard frisbee ball racket plate fish butterfly "
            "flower tree house building tower bridge mug coffee fruit astronaut squirrel player statue").split()
_ADJS = ("red blue green yellow white black brown gray small large old young little big wooden colorful "
         "orange pink purple tall striped").split()
_VERBS = ("sitting standing lying laying walking running flying riding holding eating playing looking "
          "parked floating hanging resting posing").split()
_PREPS = ("on in next to near under in front of behind at with beside on top of".split(" "))
_PLACES = ("table bed couch street field beach road grass floor water snow desk plate wall sky room "
           "kitchen park window shelf tree ground sand city stage").split()


def synthetic_captions(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    preps = ["on", "in", "next to", "near", "under", "in front of", "behind", "at", "beside", "on top of"]
    out = []
    for _ in range(n):
        obj = rng.choice(_OBJECTS)
        adj = (rng.choice(_ADJS) + " ") if rng.random() < 0.5 else ""
        form = rng.integers(0, 5)
        place = rng.choice(_PLACES)
        if form == 0:
            s = f"a {adj}{obj} {rng.choice(_VERBS)} {rng.choice(preps)} a {place}"
        elif form == 1:
            s = f"a {adj}{obj} and a {rng.choice(_OBJECTS)} {rng.choice(preps)} the {place}"
        elif form == 2:
            s = f"a close up of a {adj}{obj}"
        elif form == 3:
            s = f"two {obj}s {rng.choice(_VERBS)} {rng.choice(preps)} a {adj}{place}"
        else:
            s = f"a {obj} {rng.choice(_VERBS)} {rng.choice(preps)} a {adj}{place} with a {rng.choice(_OBJECTS)}"
        out.append(normalise_text(s))
    return out


def caption_corpus(n_debian: int = 40000, n_synthetic: int = 20000, seed: int = 0) -> list[str]:
    """DeepSC training sentences: Debian descriptions + synthetic captions."""
    out = debian_sentences(n_debian, seed) + synthetic_captions(n_synthetic, seed)
    rng = np.random.default_rng(seed + 1)
    rng.shuffle(out)
    return out
