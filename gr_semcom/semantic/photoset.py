"""The natural photographs the learned image codecs train and are tested on
(issue 19), fetched with ordinary Debian / PyPI clients into a data folder
outside git (``data/photos`` by default, ``SEMCOM_PHOTOS`` overrides), each
with its licence recorded in ``manifest.json``.

Sources (only these; ``python -m gr_semcom.semantic.photoset fetch`` or
``scripts/fetch_photos.sh``):

* Debian ``mate-backgrounds`` (GPL-2+): the 12 photos of
  ``/usr/share/backgrounds/mate/nature/``;
* Debian ``plasma-workspace-wallpapers`` (GPL-2+ / LGPL per file): the 11
  photographic wallpapers' ``2560x1600.jpg`` -- **held out: the
  validation / test source, never trained on** (:data:`HELD_OUT`);
* Debian ``darknet`` (licence as its copyright file says): 6 photos of
  ``/usr/share/darknet/data`` (not the painting ``scream.jpg``);
* Debian ``labelme-examples`` (GPL-3+): 8 distinct scenes (one frame of the
  video sequence);
* Debian ``opencv-doc`` (licence from its copyright file): 24 RGB photos of
  ``examples/data`` with short side >= 256 (no chessboard calibration frames,
  no second view of a stereo pair, no logos, text or greyscale frames);
* PyPI ``scikit-image`` (per image, as ``skimage.data``'s docstrings say),
  ``scikit-learn`` (``load_sample_images``: china.jpg, flower.jpg, CC BY 2.0 per
  sklearn's README) and ``matplotlib`` (``grace_hopper.jpg``, public domain
  US Navy photo) -- the copies installed in the venv.

Large photos are stored as they come; crops are cut at training time
(:func:`random_crop`), so a 2560x1600 wallpaper gives thousands of distinct
256x256 crops.
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIR = Path(os.environ.get("SEMCOM_PHOTOS", ROOT / "data" / "photos"))
HELD_OUT = "plasma-workspace-wallpapers"

_PLASMA = ("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey", "Kite",
           "OneStandsOut", "Path", "summer_1am")
_OPENCV = ("Blender_Suzanne1.jpg", "aero1.jpg", "aero3.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "board.jpg",
           "building.jpg", "butterfly.jpg", "ela_original.jpg", "fruits.jpg", "graf1.png", "home.jpg", "left.jpg",
           "leuvenA.jpg", "licenseplate_motion.jpg", "messi5.jpg", "orange.jpg", "pca_test1.jpg", "rubberwhale1.png",
           "smarties.png", "squirrel_cls.jpg", "starry_night.jpg", "stuff.jpg")
_LABELME = ("semantic_segmentation/data_annotated/2011_000003.jpg",
            "semantic_segmentation/data_annotated/2011_000006.jpg",
            "semantic_segmentation/data_annotated/2011_000025.jpg",
            "video_annotation/data_annotated/00000100.jpg", "tutorial/apc2016_obj3.jpg",
            "primitives/primitives.jpg", "classification/data_annotated/0001.jpg",
            "classification/data_annotated/0002.jpg")
_DARKNET = ("dog.jpg", "eagle.jpg", "giraffe.jpg", "horses.jpg", "kite.jpg", "person.jpg")

# Debian package -> (installed directory, file names or glob)
DEBIAN = {
    "mate-backgrounds": ("usr/share/backgrounds/mate/nature", "*.jpg"),
    "plasma-workspace-wallpapers": ("usr/share/wallpapers", [f"{n}/contents/images/2560x1600.jpg" for n in _PLASMA]),
    "darknet": ("usr/share/darknet/data", list(_DARKNET)),
    "labelme-examples": ("usr/share/doc/labelme-examples/examples", list(_LABELME)),
    "opencv-doc": ("usr/share/doc/opencv-doc/examples/data", list(_OPENCV)),
}
_PY_LICENCE = {
    "scikit-image": "per skimage.data's docstrings: astronaut public domain (NASA), chelsea CC0 (Stefan van "
                    "der Walt), coffee CC0 (Rachel Michetti), rocket public domain (SpaceX), motorcycle: Middlebury "
                    "2014 stereo benchmark (Scharstein et al.)",
    "scikit-learn": "china.jpg and flower.jpg: CC BY 2.0 (per scikit-learn's datasets/images/README.txt)",
    "matplotlib": "grace_hopper.jpg: public domain (US Navy photo)",
}


def _dep5_licences(text: str) -> list[tuple[list[str], str]]:
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        files = re.search(r"^Files:(.*(?:\n[ \t].*)*)", stanza, re.MULTILINE)
        lic = re.search(r"^License:\s*(\S.*)$", stanza, re.MULTILINE)
        if files and lic:
            out.append((files.group(1).split(), lic.group(1).strip()))
    return out


def licence_for(copyright_text: str, relpath: str) -> str:
    """Licence of one file from a Debian machine-readable copyright file: the
    last stanza whose Files pattern matches the path (or its file name), else
    the ``Files: *`` stanza, else the first licence named."""
    stanzas = _dep5_licences(copyright_text)
    best = None
    for pats, lic in stanzas:
        for p in pats:
            if p != "*" and (fnmatch.fnmatch(relpath, p) or fnmatch.fnmatch(relpath, "*/" + p)
                             or Path(p).name == Path(relpath).name):
                best = lic
    if best:
        return best
    for pats, lic in stanzas:
        if "*" in pats:
            return lic
    m = re.search(r"^License:\s*(\S.*)$", copyright_text, re.MULTILINE)
    return m.group(1).strip() if m else "see copyright file"


def _deb_version(deb: Path) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True,
                          text=True).stdout.strip()


def fetch(out: str | Path = DEFAULT_DIR, debs: str | Path | None = None, progress: bool = True) -> dict:
    """Download (``apt-get download``, no root needed) and unpack (``dpkg -x``)
    the Debian sources, copy the chosen photos and the venv's PyPI photos into
    ``out/<source>/``, and write ``out/manifest.json``. Idempotent: packages
    already unpacked are not downloaded again."""
    from PIL import Image

    out = Path(out)
    debs = Path(debs) if debs else out.parent / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for pkg, (sub, names) in DEBIAN.items():
        root = debs / "x" / pkg
        if not (root / sub).is_dir():
            if not shutil.which("apt-get") or not shutil.which("dpkg"):
                raise RuntimeError("fetching the photos needs apt-get and dpkg (Debian)")
            with tempfile.TemporaryDirectory(dir=debs) as tmp:
                r = subprocess.run(["apt-get", "download", pkg], cwd=tmp, capture_output=True, text=True)
                if r.returncode:
                    raise RuntimeError(f"apt-get download {pkg} failed: {r.stderr.strip()[-300:]}")
                deb = next(Path(tmp).glob(f"{pkg}_*.deb"))
                shutil.move(str(deb), debs / deb.name)
            root.mkdir(parents=True, exist_ok=True)
            subprocess.run(["dpkg", "-x", str(next(debs.glob(f"{pkg}_*.deb"))), str(root)], check=True)
        deb = next(debs.glob(f"{pkg}_*.deb"), None)
        version = _deb_version(deb) if deb else "unknown"
        cfile = root / "usr" / "share" / "doc" / pkg / "copyright"
        ctext = cfile.read_text(errors="replace") if cfile.is_file() else ""
        (out / "LICENSES").mkdir(exist_ok=True)
        if ctext:
            (out / "LICENSES" / f"{pkg}.copyright").write_text(ctext)
        files = sorted((root / sub).glob(names)) if isinstance(names, str) else [root / sub / n for n in names]
        dest = out / pkg
        dest.mkdir(exist_ok=True)
        for f in files:
            if not f.is_file():
                raise FileNotFoundError(f"{pkg} {version}: expected {f} (package layout changed?)")
            rel = str(f.relative_to(root / sub))
            name = rel.split("/")[0] if pkg == "plasma-workspace-wallpapers" else Path(rel).stem
            target = dest / (name + f.suffix.lower())
            shutil.copyfile(f, target)
            with Image.open(target) as im:
                size = im.size
            entries.append({"name": name, "source": pkg, "kind": "debian", "version": version,
                            "file": str(target.relative_to(out)), "origin": "/" + str(f.relative_to(root)),
                            "width": size[0], "height": size[1], "licence": licence_for(ctext, rel),
                            "copyright": f"LICENSES/{pkg}.copyright",
                            "split": "test" if pkg == HELD_OUT else "train"})
    for src, name, img in _python_photos():
        dest = out / src
        dest.mkdir(exist_ok=True)
        target = dest / f"{name}.png"
        Image.fromarray(img).save(target)
        entries.append({"name": name, "source": src, "kind": "pypi", "version": _pkg_version(src),
                        "file": str(target.relative_to(out)), "origin": f"{src} (installed in the venv)",
                        "width": img.shape[1], "height": img.shape[0], "licence": _PY_LICENCE[src],
                        "copyright": None, "split": "test" if src == HELD_OUT else "train"})
    manifest = {"held_out_source": HELD_OUT, "note": "split=test: never used in training (validation and test)",
                "photos": entries}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    if progress:
        n = {s: sum(e["split"] == s for e in entries) for s in ("train", "test")}
        print(f"{len(entries)} photos in {out} ({n['train']} train, {n['test']} test = {HELD_OUT})")
    return manifest


def _pkg_version(name: str) -> str:
    from importlib.metadata import version

    try:
        return version(name)
    except Exception:
        return "unknown"


def _python_photos():
    import matplotlib
    import skimage.data as skd
    from PIL import Image

    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        yield "scikit-image", name, np.asarray(getattr(skd, name)())
    yield "scikit-image", "motorcycle", np.asarray(skd.stereo_motorcycle()[0])
    try:
        from sklearn.datasets import load_sample_images

        ds = load_sample_images()
        for fn, im in zip(ds.filenames, ds.images):
            yield "scikit-learn", Path(fn).stem, np.asarray(im)
    except ImportError:
        pass
    gh = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if gh.is_file():
        with Image.open(gh) as im:
            yield "matplotlib", "grace_hopper", np.asarray(im.convert("RGB"))


def manifest(root: str | Path = DEFAULT_DIR) -> dict:
    p = Path(root) / "manifest.json"
    if not p.is_file():
        raise FileNotFoundError(f"{p} missing: fetch the photos first (bash scripts/fetch_photos.sh)")
    return json.loads(p.read_text())


def load_photos(split: str = "train", root: str | Path = DEFAULT_DIR, max_side: int | None = 1600,
                min_side: int = 256) -> list[tuple[str, np.ndarray]]:
    """(source/name, HxWx3 uint8) of one split (``train`` or ``test``).
    Photos larger than ``max_side`` on the long side are area-downscaled to
    it once (the crops then come at several scales, :func:`random_crop`)."""
    from PIL import Image

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    root = Path(root)
    out = []
    for e in manifest(root)["photos"]:
        if e["split"] != split:
            continue
        with Image.open(root / e["file"]) as im:
            im = im.convert("RGB")
            if max_side and max(im.size) > max_side:
                s = max_side / max(im.size)
                im = im.resize((round(im.size[0] * s), round(im.size[1] * s)), Image.LANCZOS)
            a = np.asarray(im)
        if min(a.shape[:2]) >= min_side:
            out.append((f"{e['source']}/{e['name']}", a))
    return out


def random_crop(img: np.ndarray, size: int, rng: np.random.Generator, min_scale: float = 0.25) -> np.ndarray:
    """A size x size crop at a random scale (the short side resized to between
    ``size`` and the photo's own, log-uniform, never upscaled beyond
    ``1/min_scale``), with a random horizontal flip."""
    from PIL import Image

    h, w = img.shape[:2]
    short = min(h, w)
    lo = size / short  # whole short side
    hi = max(lo, 1.0)
    s = float(np.exp(rng.uniform(np.log(max(lo, min_scale * lo)), np.log(hi)))) if hi > lo else lo
    side = int(round(size / s))  # crop this much of the photo, then resize to size
    side = min(side, short)
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    c = img[y:y + side, x:x + side]
    if side != size:
        c = np.asarray(Image.fromarray(c).resize((size, size), Image.BICUBIC if side < size else Image.LANCZOS))
    if rng.random() < 0.5:
        c = c[:, ::-1]
    return np.ascontiguousarray(c)


def centre_crop(img: np.ndarray, size: int) -> np.ndarray:
    """Short side resized to ``size`` (area filter), centre size x size crop."""
    from PIL import Image

    h, w = img.shape[:2]
    s = size / min(h, w)
    r = np.asarray(Image.fromarray(img).resize((max(size, round(w * s)), max(size, round(h * s))), Image.LANCZOS))
    y0, x0 = (r.shape[0] - size) // 2, (r.shape[1] - size) // 2
    return np.ascontiguousarray(r[y0:y0 + size, x0:x0 + size])


def test_images(size: int = 512, root: str | Path = DEFAULT_DIR) -> tuple[list[str], np.ndarray]:
    """The held-out source as size x size centre crops: (names, (n, s, s, 3))."""
    photos = load_photos("test", root, max_side=None)
    return [n for n, _ in photos], np.stack([centre_crop(im, size) for _, im in photos])


def write_dir(out: str | Path, size: int = 512, root: str | Path = DEFAULT_DIR) -> list[Path]:
    """The held-out test images as PNG files in ``out`` (input of
    ``semcom transmit`` / ``benchmarks/seb_curves.py``)."""
    from PIL import Image

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names, imgs = test_images(size, root)
    paths = []
    for n, im in zip(names, imgs):
        p = out / (n.split("/")[-1] + ".png")
        Image.fromarray(im).save(p)
        paths.append(p)
    return paths


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m gr_semcom.semantic.photoset",
                                 description="fetch the training/test photos (issue 19)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="apt-get download + dpkg -x the Debian sources, copy the PyPI photos")
    f.add_argument("--out", default=str(DEFAULT_DIR))
    f.add_argument("--debs", default=None, help="where the .deb files go (default: OUT/../debs)")
    t = sub.add_parser("test-dir", help="write the held-out photos as SIZExSIZE PNGs")
    t.add_argument("out")
    t.add_argument("--size", type=int, default=512)
    t.add_argument("--photos", default=str(DEFAULT_DIR))
    a = ap.parse_args(argv)
    if a.cmd == "fetch":
        fetch(a.out, a.debs)
    else:
        for p in write_dir(a.out, a.size, a.photos):
            print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


_POOL_PHOTOS: list = []


def _pool_job(args):
    i, n, size, seed = args
    rng = np.random.default_rng([seed, i])
    return np.stack([random_crop(_POOL_PHOTOS[i], size, rng) for _ in range(n)])


def crop_pool(photos: list[np.ndarray], per_photo: int, size: int, seed: int = 0, workers: int | None = None) -> np.ndarray:
    """(n_photos, per_photo, size, size, 3) uint8 random crops, cut once in
    ``workers`` processes (a GPU run samples its batches from this pool on
    the device instead of cutting crops on the CPU every step)."""
    import multiprocessing as mp

    global _POOL_PHOTOS
    _POOL_PHOTOS = list(photos)
    jobs = [(i, per_photo, size, seed) for i in range(len(photos))]
    workers = workers if workers is not None else min(len(jobs), os.cpu_count() or 1)
    try:
        if workers > 1 and "fork" in mp.get_all_start_methods():
            with mp.get_context("fork").Pool(workers) as pool:
                parts = pool.map(_pool_job, jobs)
        else:
            parts = [_pool_job(j) for j in jobs]
    finally:
        _POOL_PHOTOS = []
    return np.stack(parts)
