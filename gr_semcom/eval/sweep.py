"""One evaluation harness: schemes x channels x Es/N0 x seeds over the GNU
Radio chain (``semcom sweep``; benchmarks/seb_curves.py builds on it).

* a **point** is (scheme, channel, Es/N0, seed, accounting); it runs in its own
  process (GNU Radio 3.10 keeps the shared-memory buffers of every flowgraph
  built in a process until it exits, upstream gnuradio#7706) on an engine
  (eval/engines.py): ``local`` (``workers`` at a time on this machine) or
  ``dask`` (the workers of a Dask cluster; docs/cluster_sweeps.md). The
  images travel with the task (:class:`SweepPointTask`), the rows and the
  grid's reconstructions come back to this process, the one writer of
  ``out/``;
* the raw CSV is tidy (one row per image and point) and the sweep is
  resumable: points already in it are skipped;
* the summary has mean and 95 % interval (Student t over images x seeds) of
  every metric per (scheme, channel, Es/N0, accounting); plots of each
  metric against Es/N0, one line per scheme; an image grid (source | each
  scheme) at chosen Es/N0;
* an image that does not decode is a row with ``failed`` and the reason; the
  sweep goes on.

Every point runs the system's own GNU Radio blocks, built from its options
object (gr_semcom/systems/options.py), as ``semcom transmit`` and a GRC
flowgraph do.

Image schemes: ``seb``, ``hyperprior``, ``jpeg2000``, ``deepjscc``, all
at one CBR budget (systems/images.py). ``accounting = capacity`` rows are
the same encoders with a capacity-achieving code (Seb's eq. 11-12), no PHY.

Semantic schemes (their payload is far below any image budget; the CSV
states their channel uses and CBR, so the budget check holds):

* ``multisc``, ``multisc-random``, ``multisc-single``: Multi-SC with the
  feature-fusion split, the random split and one caption
  (systems/multisc.py run_multisc: the encoder block's same-budget rule,
  captions on uncoded QPSK analog bursts); caption BLEU / CER / similarity
  before (``_raw``) and after (``_corrected``) spelling correction, the
  image metrics of the slice on grey (``_before``) and, with
  ``--generator``, of the generated image;
* ``ulbsc``: caption + saliency codebook index in one digital PDU (BPSK,
  LDPC 1/4, two codewords per burst) through the ULBSC blocks;
  ``caption-only``: the same blocks sending the caption field alone (the
  codec's caption-only form: 5-byte header + caption, one PDU over the
  same PHY), the receiver's map is the codebook prior (ULBSC's "OnlyCaption");
  saliency MAE / F-measure, caption BLEU / similarity.

Captions come from the default captioners (semantic/captioner.py "auto": no
BLIP / LLaVA weights here, so the COCO object captioner, or the attribute
captioner where the detector is not installed).
"""
from __future__ import annotations

import csv
import io
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..common import MODELS
from ..systems.registry import IMAGE_SCHEMES, SCHEMES, SEMANTIC_SCHEMES
from ..systems.registry import MULTISC_SPLITS as MULTISC_SCHEMES

LABELS = {n: s.label for n, s in SCHEMES.items()}
COLOURS = {n: s.colour for n, s in SCHEMES.items()}
METRICS = ("psnr", "ms_ssim", "lpips", "dists")
# every metric a summary may carry (those no row has are left out)
ALL_METRICS = METRICS + ("bler", "channel_ber", "erased_fraction", "clip", "psnr_before", "lpips_before",
                         "clip_before", "slice_psnr", "caption_bleu",
                         "caption_bleu_raw", "caption_bleu_corrected", "caption_cer_raw", "caption_cer_corrected",
                         "caption_similarity", "caption_similarity_raw", "caption_similarity_corrected",
                         "saliency_mae", "saliency_fmeasure", "saliency_fmeasure_t05")
LINK_COLUMNS = ("frames_sent", "frames_ok", "bler", "channel_ber", "channel_bits", "erased_fraction")
KEY = ("scheme", "channel", "esn0_db", "seed", "accounting")


@dataclass(frozen=True)
class Point:
    scheme: str
    channel: str
    esn0_db: float
    seed: int
    accounting: str = "phy"  # or "capacity"


@dataclass
class SweepConfig:
    out: str
    images: str = "test256"  # a directory, or "test256": the 16 held-out photos, 256x256 centre crops
    n_images: int = 0  # first N (0 = all)
    size: int | None = None  # resize + centre-crop a directory's images to size x size
    cbr: float = 1 / 30
    models: str = ""  # models directory ("" = the repository's models/)
    grid_snrs: tuple = ()
    grid_images: int = 3
    generator: str = ""  # Multi-SC: "" (none), "tiny" (in-process tiny pipeline) or a bridge endpoint
    gen_size: int = 512
    clip: str = ""  # CLIP model directory / HF id for the CLIP metric ("" = try the default, NaN if absent)
    steps: int = 20


def parse_snrs(text: str) -> list[float]:
    """"-3:15:3" (start:stop:step, stop included) or "0,5,10"."""
    if ":" in text:
        a, b, s = (float(v) for v in text.split(":"))
        if s <= 0:
            raise ValueError("step must be > 0")
        return [round(a + k * s, 6) for k in range(int(np.floor((b - a) / s + 1e-9)) + 1)]
    return [float(v) for v in text.split(",") if v.strip()]


def models_dir(cfg: SweepConfig) -> Path:
    return Path(cfg.models) if cfg.models else MODELS


def load_images(cfg: SweepConfig) -> tuple[list[str], list[np.ndarray], list[dict]]:
    """(names, images, failures)."""
    if cfg.images == "test256":
        from ..semantic.seb.train import test_crops

        names, ims = test_crops()
        names, ims, failures = list(names), list(ims), []
    else:
        from ..semantic.images import load_image_set

        names, ims, failures = load_image_set(Path(cfg.images), cfg.size)
    if cfg.n_images:
        names, ims = names[: cfg.n_images], ims[: cfg.n_images]
    return names, ims, failures


def run_point(point: Point, cfg: SweepConfig, images: tuple | None = None) -> list[dict]:
    """All images at one point (runs in a process of its own); ``images``:
    (names, arrays, failure rows) as :func:`load_images` returns them (None:
    load them here)."""
    import torch

    torch.set_num_threads(1)
    from PIL import Image

    from ..phy.channel import ChannelSpec
    from ..systems import images as image_link

    names, ims, failures = images if images is not None else load_images(cfg)
    mdir = models_dir(cfg)
    s = point.scheme
    if s in SEMANTIC_SCHEMES:
        return _semantic_point(point, cfg, names, ims, failures)
    codec = None
    if s in ("seb", "hyperprior"):
        from ..systems.options import SebOptions

        paths = sorted(mdir.glob(("seb_lam*" if s == "seb" else "hyperprior_lam*") + "/model.safetensors"))
        if not paths:
            raise FileNotFoundError(f"no {s} models under {mdir}")
        opts = SebOptions(mode=s, models=",".join(map(str, paths)), cbr=cfg.cbr, seed=point.seed)
        codec = opts.build()
    if point.accounting == "capacity":
        rows = image_link.ideal_point(s, names, ims, point.esn0_db,
                                      cfg.cbr, codec=codec)
        for r in rows:
            r.update(scheme=s, channel=point.channel, seed=point.seed, cbr_target=cfg.cbr, accounting="capacity")
        return rows
    chan = ChannelSpec(model=point.channel, esn0_db=point.esn0_db, seed=1000 * point.seed + 17)
    if s in ("seb", "hyperprior"):
        res = image_link.run_seb(codec, names, ims, chan, opts.cbr, seed=opts.seed, split=opts.split,
                                 set_size=opts.set_size)
    elif s == "jpeg2000":
        res = image_link.run_jpeg2000(names, ims, chan, cfg.cbr)
    elif s == "deepjscc":
        from ..systems.options import DeepJsccOptions

        model = DeepJsccOptions(models=str(mdir / "image_deepjscc" / "model.safetensors")).build()
        res = image_link.run_deepjscc(model, names, ims, chan, cfg.cbr)
    else:
        raise ValueError(f"unknown scheme {s!r}; image schemes: {', '.join(IMAGE_SCHEMES)}")
    rows = []
    for r in res:
        row = {**r.row, "scheme": s, "seed": point.seed, "accounting": "phy"}
        rows.append(row)
    rows += [{"scheme": s, "channel": point.channel, "esn0_db": point.esn0_db, "seed": point.seed,
              "accounting": "phy", **f} for f in failures]
    if point.esn0_db in cfg.grid_snrs and point.seed == 0:
        d = Path(cfg.out) / "recon"
        d.mkdir(parents=True, exist_ok=True)
        for r in res[: cfg.grid_images]:
            Image.fromarray(r.image).save(d / f"{point.channel}_{point.esn0_db:g}dB_{s}_{r.name}.png")
    return rows


def _encode(codec, im, base: dict, rows: list, *args):
    """(payload, seconds), or (None, 0) with a failed row (the reason) appended."""
    import time

    t = time.monotonic()
    try:
        return codec.encode(im, *args), time.monotonic() - t
    except Exception as exc:  # noqa: BLE001 -- the image's row carries the reason
        rows.append({**base, "failed": True, "reason": f"{type(exc).__name__}: {exc}"})
        return None, 0.0


def _image_channel(point: Point, i: int):
    """Image ``i``'s channel realisation at a point (seeded: reruns repeat it)."""
    from ..phy.channel import ChannelSpec

    return ChannelSpec(model=point.channel, esn0_db=point.esn0_db, seed=1000 * point.seed + 17 + 104729 * i)


def _semantic_point(point: Point, cfg: SweepConfig, names, ims, failures) -> list[dict]:
    from PIL import Image

    rows = []
    base = {"scheme": point.scheme, "channel": point.channel, "esn0_db": point.esn0_db, "seed": point.seed,
            "accounting": "phy", "cbr_target": cfg.cbr}
    grid_dir = Path(cfg.out) / "recon"
    save_grid = point.esn0_db in cfg.grid_snrs and point.seed == 0
    if point.scheme in MULTISC_SCHEMES:
        from ..semantic.clip_score import ClipSimilarity, try_clip
        from ..systems.multisc import run_multisc
        from ..systems.options import MultiScOptions

        # the CLI's / the GRC blocks' Multi-SC with this scheme's split, uncoded captions
        opts = MultiScOptions(split=MULTISC_SCHEMES[point.scheme], seed=point.seed, cbr=cfg.cbr)
        codec = opts.build()
        clip = ClipSimilarity.from_pretrained(cfg.clip) if cfg.clip else try_clip()
        gen = None
        if cfg.generator:
            from ..systems.multisc import make_generator_arg

            gen = make_generator_arg(cfg.generator)
        for i, (name, im) in enumerate(zip(names, ims)):
            chan = _image_channel(point, i)
            t = time.monotonic()
            try:
                r = run_multisc(codec, im, chan, opts.cbr, name=name, generator=gen, clip=clip, seed=point.seed,
                                gen_size=cfg.gen_size, steps=cfg.steps, ip_scale=opts.ip_scale)
            except Exception as exc:  # an image that does not encode is a row with the reason
                rows.append({**base, "image": name, "failed": True, "reason": f"{type(exc).__name__}: {exc}"})
                continue
            p = r.payload
            spec = r.spec
            m = dict(r.metrics)
            m["caption_bleu"], m["caption_similarity"] = m["caption_bleu_corrected"], m["caption_similarity_corrected"]
            link = {k: r.link[k] for k in LINK_COLUMNS}
            rows.append({**base, "image": name, "height": im.shape[0], "width": im.shape[1], "bytes": len(p.slice_data),
                         "budget_channel_uses": m.pop("budget_channel_uses"), "modulation": spec.modulation,
                         "code_rate": spec.code_rate, "codewords_per_burst": spec.codewords,
                         "failed": bool(r.recon.slice_erased and m["captions_lost"] == m["captions"]),
                         "run_s": time.monotonic() - t, **{k: v for k, v in r.timings.items()}, **link, **m,
                         "generator_error": r.generator_error or ""})
            if save_grid and i < cfg.grid_images:
                grid_dir.mkdir(parents=True, exist_ok=True)
                img = r.generated if r.generated is not None else r.recon.canvas()
                Image.fromarray(img).save(grid_dir / f"{point.channel}_{point.esn0_db:g}dB_{point.scheme}_{name}.png")
    else:  # ulbsc, caption-only: the same blocks, caption-only sends the caption field alone
        from ..phy.frame import FrameSpec
        from ..systems.options import UlbscOptions
        from ..systems.ulbsc import send_ulbsc

        mdir = models_dir(cfg)
        # digital caption mode: the DeepSC analog path is trained on its own caption corpus and does not
        # carry the attribute captions' words
        codec = UlbscOptions(vq=str(mdir / "ulbsc_saliency_vq" / "model.safetensors"),
                             deepsc=str(mdir / "deepsc_text" / "model.safetensors"), saliency="u2netp",
                             fields="caption" if point.scheme == "caption-only" else "all").build()
        spec = FrameSpec(modulation="bpsk", code_rate="1/4", codewords=2)  # one burst carries either payload
        from ..phy.mcs import cbr_channel_uses, pdu_channel_uses

        for i, (name, im) in enumerate(zip(names, ims)):
            chan = _image_channel(point, i)
            p, t_enc = _encode(codec, im, {**base, "image": name}, rows)
            if p is None:
                continue
            r = send_ulbsc(codec, p, spec, chan, timeout=60, rx_threshold=0.15, image=im, name=name)
            m, cap, sal = dict(r.metrics), r.recon.caption, r.recon.saliency
            nbytes = len(p.data)
            failed = not r.link.get("frames_ok")
            link = {k: r.link[k] for k in LINK_COLUMNS}
            uses = pdu_channel_uses(nbytes, spec)
            h, w = im.shape[:2]
            rows.append({**base, "image": name, "height": h, "width": w, "bytes": nbytes, "channel_uses": uses,
                         "cbr": uses / (3 * h * w), "budget_channel_uses": cbr_channel_uses(h, w, cfg.cbr),
                         "modulation": spec.modulation, "code_rate": spec.code_rate, **link,
                         "failed": failed, "encode_s": t_enc, "caption_sent": p.caption,
                         "caption_received": cap, **{k: v for k, v in m.items() if k != "caption_exact"}})
            if save_grid and i < cfg.grid_images:
                grid_dir.mkdir(parents=True, exist_ok=True)
                Image.fromarray((np.clip(sal, 0, 1) * 255).astype(np.uint8)).convert("RGB").resize(
                    (w, h)).save(grid_dir / f"{point.channel}_{point.esn0_db:g}dB_{point.scheme}_{name}.png")
    rows += [{**base, **f} for f in failures]
    return rows


@dataclass
class SweepPointTask:
    """One sweep point on any machine (the engines' ``task_fn``): the
    config and the images (lossless PNG bytes) travel with the task, so
    workers need no shared file system; models load from the package
    installed on the worker (``cfg.models`` = "": its ``models/``). What
    the point writes under ``cfg.out`` (the grid's reconstructions) comes
    back as bytes for the caller to write."""

    cfg: SweepConfig
    names: tuple
    pngs: tuple
    failures: tuple = ()  # rows of the images that did not load on the client

    @classmethod
    def from_config(cls, cfg: SweepConfig) -> SweepPointTask:
        from PIL import Image

        names, ims, failures = load_images(cfg)
        pngs = []
        for im in ims:
            b = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(im)).save(b, format="PNG")
            pngs.append(b.getvalue())
        return cls(cfg, tuple(names), tuple(pngs), tuple(dict(f) for f in failures))

    def images(self) -> tuple[list[str], list[np.ndarray], list[dict]]:
        from PIL import Image

        ims = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in self.pngs]
        return list(self.names), ims, [dict(f) for f in self.failures]

    def __call__(self, point: Point):
        from .engines import PointOutput

        with tempfile.TemporaryDirectory(prefix="semcom_point_out_") as d:
            rows = run_point(point, replace(self.cfg, out=d), self.images())
            files = {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(Path(d).rglob("*")) if p.is_file()}
        return PointOutput(rows, files)


def point_key(point: Point) -> tuple:
    """A point's key as :func:`_key` reads it back from the CSV."""
    return (point.scheme, point.channel, float(point.esn0_db), int(point.seed), point.accounting or "phy")


def read_rows(path: Path) -> list[dict]:
    return list(csv.DictReader(open(path))) if path.exists() else []


def write_rows(path: Path, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, keys)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def _key(r: dict) -> tuple:
    return (r["scheme"], r["channel"], float(r["esn0_db"]), int(r["seed"]), r.get("accounting") or "phy")


class _RawWriter:
    """The one writer of the raw CSV (and of the files points send back):
    rows are appended as points finish; the CSV is rewritten (atomically)
    at most every ``every`` seconds and at the end, so a client that dies
    loses at most the last seconds' points, which a rerun redoes."""

    def __init__(self, path: Path, rows: list[dict], every: float = 2.0):
        self.path, self.rows, self.every, self.last = path, rows, every, 0.0
        self.out = path.parent.resolve()

    def __call__(self, r) -> None:
        self.rows += r.rows
        for rel, data in r.files.items():
            dst = (self.out / rel).resolve()
            if not dst.is_relative_to(self.out) or dst == self.out:
                raise ValueError(f"a point sent a file outside the sweep's folder: {rel!r}")
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(data)
        if time.monotonic() - self.last >= self.every:
            self.flush()

    def flush(self) -> None:
        write_rows(self.path, self.rows)
        self.last = time.monotonic()


def run_sweep(points: list[Point], cfg: SweepConfig, workers: int = 2, raw_name: str = "sweep_raw.csv",
              progress: bool = True, engine: str = "local", scheduler: str | None = None,
              timeout: float | None = None, client=None) -> list[dict]:
    """Run the points not yet in ``out/raw_name`` on ``engine`` (``local``:
    ``workers`` processes here; ``dask``: the cluster at ``scheduler``, or
    ``client``, or a local one of ``workers`` processes); return all raw rows.
    ``timeout``: seconds a point may run before it is a failed row."""
    from .engines import run_points

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    raw_path = out / raw_name
    raw = read_rows(raw_path)
    done = {_key(r) for r in raw if r.get("image")}  # a point that crashed (no image rows) is retried
    raw = [r for r in raw if r.get("image")]
    todo = [p for p in points if point_key(p) not in done]
    task = SweepPointTask.from_config(cfg)  # the images, once, here
    if cfg.grid_snrs:
        from PIL import Image

        names, ims, _ = task.images()
        (out / "recon").mkdir(exist_ok=True)
        for n, im in list(zip(names, ims))[: cfg.grid_images]:
            Image.fromarray(im).save(out / "recon" / f"src_{n}.png")
    writer = _RawWriter(raw_path, raw)
    if todo:
        try:
            stats = run_points(todo, task, engine=engine, workers=workers, scheduler=scheduler, client=client,
                               on_result=writer, progress=progress, key=point_key, timeout=timeout)
        finally:
            writer.flush()
        if progress:
            print(f"sweep [{stats.engine}]: {stats.done} points done, {stats.failed} failed, on {stats.workers} "
                  f"worker(s), {stats.wall_s:.1f} s")
    elif not raw_path.exists():
        writer.flush()
    return writer.rows


def _ci95(x: np.ndarray) -> float:
    from scipy import stats

    x = x[np.isfinite(x)]
    if x.size < 2:
        return float("nan")
    return float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))


def _f(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def summarise(raw: list[dict], metrics=METRICS) -> list[dict]:
    groups: dict = {}
    for r in raw:
        if not r.get("image"):
            continue
        k = (r["scheme"], r["channel"], float(r["esn0_db"]), r.get("accounting") or "phy")
        groups.setdefault(k, []).append(r)
    out = []
    for (s, c, e, a), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][3], kv[0][2])):
        row = {"scheme": s, "channel": c, "esn0_db": e, "accounting": a, "n": len(rs),
               "seeds": len({r["seed"] for r in rs})}
        for m in metrics:
            v = np.array([_f(r.get(m)) for r in rs])
            row[m] = round(float(np.nanmean(v)), 4) if np.isfinite(v).any() else float("nan")
            row[m + "_ci95"] = round(_ci95(v), 4)
        if a == "phy":
            cbr = np.array([_f(r.get("cbr")) for r in rs])
            row.update(cbr=round(float(np.nanmean(cbr)), 5), cbr_max=round(float(np.nanmax(cbr)), 5),
                       cbr_target=_f(rs[0].get("cbr_target")),
                       budget_met=bool(np.nanmax(cbr) <= _f(rs[0].get("cbr_target")) + 1e-9),
                       bytes=round(float(np.nanmean([_f(r.get("bytes")) for r in rs])), 1),
                       failed=sum(str(r.get("failed")) == "True" for r in rs),
                       mcs=f"{rs[0].get('modulation')} {rs[0].get('code_rate')}" if rs[0].get("modulation") else "")
        out.append(row)
    return out


def plot(summary: list[dict], path: Path, title: str = "", metrics=METRICS, log: bool = False) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chans = sorted({r["channel"] for r in summary})
    schemes = list(dict.fromkeys(r["scheme"] for r in summary))
    fig, axes = plt.subplots(len(chans), len(metrics), figsize=(6 * len(metrics), 4.5 * len(chans)), squeeze=False)
    for ci, ch in enumerate(chans):
        for k, metric in enumerate(metrics):
            ax = axes[ci][k]
            for s in schemes:
                for acc, ls in (("phy", "-"), ("capacity", "--")):
                    rs = sorted((r for r in summary if r["scheme"] == s and r["channel"] == ch
                                 and r["accounting"] == acc), key=lambda r: r["esn0_db"])
                    if not rs:
                        continue
                    x = np.array([r["esn0_db"] for r in rs])
                    y = np.array([r[metric] for r in rs], float)
                    e = np.nan_to_num(np.array([r[metric + "_ci95"] for r in rs], float))
                    lab = LABELS.get(s, s) + (" - GNU Radio PHY" if acc == "phy" else " - capacity-achieving code")
                    ax.plot(x, y, ls, marker="o" if acc == "phy" else None, color=COLOURS.get(s), label=lab)
                    if acc == "phy":
                        ax.fill_between(x, y - e, y + e, color=COLOURS.get(s), alpha=0.12)
            ax.set_xlabel("Es/N0 (dB)")
            ax.set_ylabel(metric)
            if log:  # error rates: zero (no error in the bits measured) stays on the axis
                ax.set_yscale("symlog", linthresh=1e-4)
                ax.set_ylim(bottom=0)
            ax.set_title(f"{ch.upper()} {title}: {metric} (mean, 95 % CI)", fontsize=10)
            ax.grid(alpha=0.3)
        axes[ci][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def grid(cfg: SweepConfig, channel: str, schemes: list[str], path: Path, cell: int = 160) -> bool:
    """Image grid: one row per (Es/N0, image), columns source | each scheme."""
    from PIL import Image, ImageDraw

    d = Path(cfg.out) / "recon"
    names, _, _ = load_images(cfg)
    rows = []
    for snr in cfg.grid_snrs:
        for n in names[: cfg.grid_images]:
            cells = [d / f"src_{n}.png"] + [d / f"{channel}_{snr:g}dB_{s}_{n}.png" for s in schemes]
            if all(p.exists() for p in cells):
                rows.append((f"{n}, {snr:g} dB", [Image.open(p) for p in cells]))
    if not rows:
        return False
    canvas = Image.new("RGB", ((len(schemes) + 1) * cell, len(rows) * (cell + 14) + 16), "white")
    dr = ImageDraw.Draw(canvas)
    for j, t in enumerate(["source"] + [LABELS.get(s, s) for s in schemes]):
        dr.text((j * cell + 4, 2), t, fill="black")
    for i, (title, ims) in enumerate(rows):
        y = 16 + i * (cell + 14)
        dr.text((4, y), title, fill="black")
        for j, im in enumerate(ims):
            canvas.paste(im.resize((cell, cell)), (j * cell, y + 12))
    canvas.save(path)
    return True


def points_for(schemes, channels, snrs, seeds: int, capacity: bool = False) -> list[Point]:
    pts = []
    for ch in channels:
        for s in schemes:
            for e in snrs:
                for seed in range(seeds):
                    pts.append(Point(s, ch, float(e), seed))
                if capacity and s != "deepjscc" and ch == "awgn":
                    pts.append(Point(s, ch, float(e), 0, "capacity"))
    return pts


def main_sweep(args) -> int:
    """``semcom sweep``."""
    import json

    schemes = [s.strip() for s in args.schemes.split(",") if s.strip()]
    unknown = [s for s in schemes if s not in SCHEMES]
    if unknown:
        raise SystemExit(f"semcom sweep: unknown scheme(s) {unknown}; available: {', '.join(SCHEMES)}")
    channels = [c.strip() for c in args.channels.split(",") if c.strip()]
    snrs = parse_snrs(args.snr)
    cfg = SweepConfig(out=args.out, images=args.images, n_images=args.n_images, size=args.size, cbr=args.cbr,
                      models=args.models or "", grid_snrs=tuple(parse_snrs(args.grid_snrs)) if args.grid_snrs else (),
                      grid_images=args.grid_images, generator=args.generator or "",
                      gen_size=args.gen_size or (64 if args.generator == "tiny" else 512), clip=args.clip or "",
                      steps=args.steps)
    pts = points_for(schemes, channels, snrs, args.seeds, capacity=args.capacity)
    raw = run_sweep(pts, cfg, workers=args.workers, engine=getattr(args, "engine", "local"),
                    scheduler=getattr(args, "scheduler", None), timeout=getattr(args, "point_timeout", None) or None)
    present = [m for m in ALL_METRICS if any(np.isfinite(_f(r.get(m))) for r in raw if r.get("image"))]
    summary = summarise(raw, present)
    out = Path(args.out)
    write_rows(out / "sweep_summary.csv", summary)
    from fractions import Fraction

    img_metrics = [m for m in present if m in METRICS + ("clip", "psnr_before", "lpips_before", "clip_before")]
    phy_metrics = [m for m in present if m in ("bler", "channel_ber", "erased_fraction")]
    sem_metrics = [m for m in present if m not in img_metrics + phy_metrics
                   and not m.endswith(("_raw", "_corrected")) and m != "saliency_fmeasure_t05"]
    if img_metrics:
        plot(summary, out / "sweep.png", f"CBR {Fraction(cfg.cbr).limit_denominator(1000)}", img_metrics)
    if sem_metrics:
        plot(summary, out / "sweep_semantic.png", "", sem_metrics)
    if phy_metrics:
        plot(summary, out / "sweep_phy.png", "digital PDUs", phy_metrics, log=True)
    if any(s in MULTISC_SCHEMES for s in schemes):
        plot(summary, out / "sweep_correction.png", "Multi-SC captions",
             [m for m in present if m.endswith(("_raw", "_corrected"))])
    if cfg.grid_snrs:
        grid(cfg, channels[0], schemes, out / "sweep_grid.png")
    print(json.dumps([r for r in summary if r["accounting"] == "phy"])[:3000])
    print(f"wrote {out}/sweep_raw.csv, sweep_summary.csv, plots sweep*.png" + (", sweep_grid.png" if cfg.grid_snrs else ""))
    return 0
