"""Training of the Seb codec and of its "DL w/o corr." baseline
(``semcom train seb`` / ``semcom train hyperprior``).

Data (the paper: 50 000 ImageNet images, each randomly resized-and-cropped
into 16 augmentations that form one correlated subset): the 81 training
photos of opencv-doc (semantic/data.py), each cut into random resized crops
of 128x128; a Seb training step takes ``subset`` crops of one photo (the
paper's correlated subset), a hyperprior step takes crops of random photos.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CROP = 128  # the first models (81 opencv-doc photos)
CROP_NEW = 256  # issue 19: crops of 256x256


def crop_pool(photos: list[np.ndarray], per_photo: int, size: int = CROP, seed: int = 0) -> np.ndarray:
    """(n_photos, per_photo, size, size, 3) uint8 random resized crops with flips."""
    from PIL import Image

    from ..data import augment_crops

    rng = np.random.default_rng(seed)
    out = np.empty((len(photos), per_photo, size, size, 3), np.uint8)
    for i, im in enumerate(photos):
        for j, c in enumerate(augment_crops(im, per_photo, rng)):
            out[i, j] = np.asarray(Image.fromarray(c).resize((size, size), Image.BICUBIC))
    return out


def test_crops(size: int = 256) -> tuple[list[str], np.ndarray]:
    """The held-out photos (data.test_photos), short side resized to ``size``,
    centre-cropped to size x size: (names, (n, size, size, 3) uint8)."""
    from PIL import Image

    from ..data import test_photos

    names, out = [], []
    for name, im in test_photos():
        h, w = im.shape[:2]
        s = size / min(h, w)
        r = np.asarray(Image.fromarray(im).resize((max(size, round(w * s)), max(size, round(h * s))),
                                                  Image.BICUBIC))
        y0, x0 = (r.shape[0] - size) // 2, (r.shape[1] - size) // 2
        names.append(name)
        out.append(r[y0:y0 + size, x0:x0 + size])
    return names, np.stack(out)


def to_tensor(batch: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float().div_(255.0)


def evaluate(net, images: np.ndarray, subset: int = 16, device=None) -> dict:
    """Noise-free (rounded) forward pass on the test crops, as subsets of
    ``subset`` images: PSNR of reconstruction/reference/prediction and the
    estimated bits per pixel of each part."""
    import torch

    net.eval()
    acc: dict = {}
    psnr = {"x_hat": [], "ref": [], "pred": []}
    npix = 0
    with torch.no_grad():
        for s in range(0, len(images), subset):
            x = to_tensor(images[s:s + subset])
            if device is not None:
                x = x.to(device)
            out = net(x)
            npix += out["npix"]
            for k, v in out["bits"].items():
                acc[k] = acc.get(k, 0.0) + float(v)
            for k in psnr:
                mse = torch.mean((out[k].float().clamp(0, 1) - x) ** 2, dim=(1, 2, 3))
                psnr[k] += (10 * torch.log10(1.0 / mse.clamp_min(1e-10))).tolist()
    net.train()
    res = {f"bpp_{k}": v / npix for k, v in acc.items()}
    res["bpp"] = sum(acc.values()) / npix
    res["psnr"] = float(np.mean(psnr["x_hat"]))
    if net.uses_bases:
        res["psnr_reference"] = float(np.mean(psnr["ref"]))
        res["psnr_prediction"] = float(np.mean(psnr["pred"]))
    return res


def _photo_data(data):
    """(train photos, validation names, validation 256x256 crops) from a
    photoset directory (semantic/photoset.py; held-out source = validation)."""
    from .. import photoset

    root = photoset.DEFAULT_DIR if data in (None, "") else data
    photos = photoset.load_photos("train", root)
    val = photoset.load_photos("test", root, max_side=None)
    if not photos or not val:
        raise ValueError(f"{root}: no train or no test photos in its manifest")
    return photos, [n for n, _ in val], np.stack([photoset.centre_crop(im, 256) for _, im in val]), str(root)


def init_conditional(net, hyperprior) -> dict:
    """A conditional Seb net starts as its trained hyperprior: the residual
    codec copied (and later frozen), the side encoder a copy of its analysis
    transform, the gate at 0 -- so the first forward pass reconstructs
    exactly what the hyperprior does."""
    import torch

    if hyperprior.cfg.mode != "hyperprior":
        raise ValueError("a conditional Seb net is initialised from a hyperprior checkpoint")
    src = hyperprior.state_dict()
    own = net.state_dict()
    take = {k: v for k, v in src.items() if k.split(".")[0] in net.residual_parts() and k in own
            and own[k].shape == v.shape}
    take.update({"side_enc." + k[len("res_enc."):]: v for k, v in src.items() if k.startswith("res_enc.")})
    net.load_state_dict(take, strict=False)
    with torch.no_grad():
        net.side_gate.zero_()
    return {"residual_from": "hyperprior", "copied": len(take)}


def train_seb(out: str, mode: str = "seb", lam: float = 256.0, steps: int = 1500, batch: int = 8,
              lr: float = 1e-3, init: str | None = None, per_photo: int = 48, seed: int = 0,
              n: int = 64, ref_weight: float = 0.0, ref_steps: int = 0, progress: bool = True,
              data: str | None = None, device: str | None = "cpu", amp: bool = False, resume: bool = True,
              crop: int = CROP_NEW, eval_every: int = 100, time_limit: float | None = None,
              threads: int | None = None, cond: bool = True, freeze_residual: bool = True,
              warmup: int = 0, run_steps: int | None = None, pool: int = 0, init_seb: str | None = None) -> dict:
    """Train (or continue training) one rate point of the Seb codec or of its
    hyperprior baseline into ``out`` (model.safetensors, checkpoint/,
    learning_curve.csv/png, metrics.json, README.md).

    ``data``: a photoset directory (default data/photos, ``scripts/fetch_photos.sh``);
    its held-out source is the validation set. ``device``: cpu / cuda / auto;
    ``amp``: bfloat16 autocast on CUDA. ``resume``: continue from
    ``out/checkpoint`` if present (``steps`` is the total, so re-running the
    same command after an interruption finishes the schedule). ``init``: a
    checkpoint to start from (for ``mode='seb'`` with ``cond``: a hyperprior,
    whose residual codec is copied and, with ``freeze_residual``, frozen).
    ``time_limit``: stop (with a checkpoint) after that many seconds of this
    call. ``ref_weight``/``ref_steps``: for the first ``ref_steps`` steps add
    ``ref_weight * lambda * MSE(reference, image)``, a warm-up of the Seb
    generator (as DVC, the paper's [16], warms up its motion compensation).
    ``init_seb``: a (first, non-conditional) Seb checkpoint whose semantic-base
    generator, reference generator, compensation and their entropy models
    start the conditional net (the residual codec still comes from ``init``).
    ``pool``: crops per photo cut once (in parallel) and kept on the device,
    batches then drawn from it with random flips (for a GPU, whose steps are
    faster than cutting crops; 0 = fresh crops every step). ``run_steps``: run at most this many steps now (checkpoint, return; the
    schedule still spans ``steps``). ``warmup``: linear learning-rate warm-up steps (fine-tuning from ``init``
    and resuming without the optimizer moments use it)."""
    import torch
    from tqdm import tqdm

    from .. import photoset, trainloop
    from ..train import _command, _env
    from .model import SebConfig, SebNet
    from .weights import load_net, save_net

    if threads:
        torch.set_num_threads(threads)
    dev = trainloop.pick_device(device)
    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    photos, val_names, val, data_root = _photo_data(data)
    ck_state = None
    if resume and (outp / "checkpoint" / "state.json").is_file():
        import json as _json

        ck_state = _json.loads((outp / "checkpoint" / "state.json").read_text())
        cfg = SebConfig(**ck_state["config"])
    else:
        cfg = SebConfig(mode=mode, lam=lam, n=n, cond=bool(cond and mode == "seb"))
    torch.manual_seed(seed)  # the initial weights (a resumed run restores its RNG state below)
    net = SebNet(cfg)
    init_note = ck_state.get("init") if ck_state else None
    if ck_state is None and init:
        src = load_net(init)
        if cfg.cond:
            init_note = {"from": init, **init_conditional(net, src)}
            if init_seb:
                seb_src = load_net(init_seb).state_dict()
                parts = ("seb_enc", "seb_dec", "seb_eb", "comp_enc", "comp_dec", "comp_eb")
                own = net.state_dict()
                take = {k: v for k, v in seb_src.items() if k.split(".")[0] in parts and k in own
                        and own[k].shape == v.shape and not k.endswith(_DERIVED_KEYS)}
                net.load_state_dict(take, strict=False)
                init_note["seb_parts_from"] = init_seb
        else:
            missing = net.load_state_dict(_transferable(src.state_dict(), net), strict=False)
            init_note = {"from": init, "not_initialised": sorted({k.split(".")[0] for k in missing.missing_keys
                                                                  if not k.endswith(_DERIVED_KEYS)})}
    frozen = set(net.residual_parts()) if (cfg.cond and freeze_residual and init) else set()
    if ck_state is not None:
        frozen = set(ck_state.get("frozen", []))
    for name, p in net.named_parameters():
        p.requires_grad_(name.split(".")[0] not in frozen)
    net.to(dev)
    aux_params = [p for name, p in net.named_parameters() if name.endswith(".quantiles") and p.requires_grad]
    main_params = [p for name, p in net.named_parameters() if not name.endswith(".quantiles") and p.requires_grad]
    opt = torch.optim.Adam(main_params, lr=lr, betas=(0.9, 0.999))
    aux_opt = torch.optim.Adam(aux_params, lr=1e-3) if aux_params else None
    opts = {"main": opt, **({"aux": aux_opt} if aux_opt else {})}
    fields = ["step", "seconds", "train_loss", "train_psnr", "train_bpp", "val_psnr", "val_bpp", "val_psnr_reference",
              "val_psnr_prediction", "lr"]
    curve = trainloop.Curve(outp, fields)
    step0, runs, rng_state = 0, [], None
    warm_from = 0
    if ck_state is not None:
        if not trainloop.load_checkpoint(outp, net, opts):  # no moments file: the weights of model.safetensors
            src = load_net(outp / "model.safetensors")
            net.load_state_dict(_transferable(src.state_dict(), net), strict=False)
            warm_from, warmup = ck_state["step"], max(warmup, 100)
        step0, runs, rng_state = ck_state["step"], ck_state.get("runs", []), ck_state.get("numpy_rng")
        curve.truncate(step0)
    if ck_state is None and curve.path.is_file():
        curve.path.unlink()  # a fresh run: the old curve belongs to other weights
    rng = np.random.default_rng(seed)
    if rng_state:
        rng.bit_generator.state = rng_state
    weights = np.sqrt([im.shape[0] * im.shape[1] for _, im in photos])
    weights /= weights.sum()
    clock = trainloop.Clock(ck_state.get("seconds", 0.0) if ck_state else 0.0, time_limit)
    run = {"command": _command(), "start_step": step0, "device": str(dev), "amp": bool(amp), "env": _env()}
    state = {}

    pool_t = None
    if pool:
        cut = photoset.crop_pool([im for _, im in photos], pool, crop, seed=seed + step0)
        pool_t = torch.from_numpy(cut).to(dev).permute(0, 1, 4, 2, 3).contiguous()  # (P, n, 3, s, s) uint8

    def batch_x():
        if pool_t is not None:
            if cfg.mode == "seb":
                p = int(rng.choice(len(photos), p=weights))
                sel = pool_t[p, torch.from_numpy(rng.choice(pool, batch, replace=False)).to(dev)]
            else:
                ps = torch.from_numpy(rng.choice(len(photos), batch, p=weights)).to(dev)
                sel = pool_t[ps, torch.from_numpy(rng.integers(0, pool, batch)).to(dev)]
            x = sel.float().div_(255.0)
            flip = torch.from_numpy(rng.random(batch) < 0.5).to(dev)
            return torch.where(flip[:, None, None, None], x.flip(-1), x)
        if cfg.mode == "seb":  # one correlated subset: crops of one photo (the paper's 16 augmentations)
            im = photos[rng.choice(len(photos), p=weights)][1]
            xs = [photoset.random_crop(im, crop, rng) for _ in range(batch)]
        else:
            xs = [photoset.random_crop(photos[j][1], crop, rng) for j in rng.choice(len(photos), batch, p=weights)]
        return to_tensor(np.stack(xs)).to(dev)

    def checkpoint(step, last):
        nonlocal state
        m = evaluate(net, val, subset=16, device=dev)
        curve.add({"step": step, "seconds": round(clock.total, 1), **{k: last.get(k) for k in
                   ("train_loss", "train_psnr", "train_bpp", "lr")}, "val_psnr": round(m["psnr"], 4),
                   "val_bpp": round(m["bpp"], 5), "val_psnr_reference": m.get("psnr_reference"),
                   "val_psnr_prediction": m.get("psnr_prediction")})
        curve.plot(f"{cfg.mode} lambda={cfg.lam:g} (validation: {photoset.HELD_OUT}, 256x256)")
        cpu_net = net
        save_net(cpu_net, outp / "model.safetensors", steps=step, init=init_note)
        state = {"step": step, "steps_total": steps, "config": net.config_dict(), "numpy_rng": rng.bit_generator.state,
                 "seconds": round(clock.total, 1), "init": init_note, "frozen": sorted(frozen),
                 "runs": runs + [{**run, "end_step": step}], "lr": lr, "batch": batch, "crop": crop,
                 "data": data_root, "ref_warmup": {"weight": ref_weight, "steps": ref_steps}}
        trainloop.save_checkpoint(outp, net, opts, state)
        card = {"mode": cfg.mode, "lambda": cfg.lam, "cond": cfg.cond, "steps": step, "batch": batch, "lr": lr,
                "crop": crop, "train_photos": [n for n, _ in photos], "test_images": val_names,
                "test_metrics_estimated": m, "seconds": round(clock.total, 1), "runs": state["runs"],
                "init": init_note, "frozen": sorted(frozen), "ref_warmup": state["ref_warmup"],
                "curve": curve.rows()}
        (outp / "metrics.json").write_text(json.dumps(card, indent=1))
        _write_card(outp, card)
        return card

    card = None
    last = {}
    if step0 == 0:  # the starting point (the init's weights) as the curve's first row
        card = checkpoint(0, last)
        if run_steps == 0:  # only the starting point (e.g. a conditional Seb net = its hyperprior, untrained)
            return card
    bar = tqdm(range(step0, steps), initial=step0, total=steps, desc=f"train {cfg.mode} lambda={cfg.lam:g}",
               disable=not progress)
    step = step0
    for step in bar:
        cur_lr = trainloop.cosine_lr(step, steps, lr, warmup=warmup, start=warm_from)
        for g in opt.param_groups:
            g["lr"] = cur_lr
        x = batch_x()
        with trainloop.autocast(dev, amp):
            outd = net(x, seed=step)
            loss, mse, bpp = net.loss(x, outd)
            if cfg.mode == "seb" and ref_weight and step < ref_steps:
                loss = loss + ref_weight * cfg.lam * torch.mean((outd["ref"].float() - x) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(main_params, 1.0)
        opt.step()
        if aux_opt:
            aux = net.aux_loss()
            aux_opt.zero_grad(set_to_none=True)
            aux.backward()
            aux_opt.step()
        psnr = float(10 * torch.log10(1 / mse.detach().clamp_min(1e-10)))
        loss, bpp = loss.detach(), bpp.detach()
        last = {"train_loss": round(float(loss), 5), "train_psnr": round(psnr, 3), "train_bpp": round(float(bpp), 5),
                "lr": cur_lr}
        bar.set_postfix(loss=f"{float(loss):.3f}", psnr=f"{psnr:.2f}", bpp=f"{float(bpp):.3f}")
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            card = checkpoint(step + 1, last)
        if clock.expired() or (outp / "STOP").exists() or (run_steps and step + 1 - step0 >= run_steps):  # STOP file: checkpoint and return
            if (step + 1) % eval_every and step + 1 != steps:
                card = checkpoint(step + 1, last)
            break
    bar.close()
    if card is None:  # resumed at the end: nothing left to do
        card = json.loads((outp / "metrics.json").read_text())
    return card


_DERIVED_KEYS = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")


def _transferable(state: dict, net) -> dict:
    own = net.state_dict()
    return {k: v for k, v in state.items() if k in own and own[k].shape == v.shape
            and not k.endswith(("_quantized_cdf", "_offset", "_cdf_length", "scale_table"))}


def _write_card(outp: Path, c: dict) -> None:
    m = c["test_metrics_estimated"]
    if c["mode"] == "seb":
        title = ("Conditional Seb codec (semantic bases + compensation; residual coded with the reference as side "
                 "input by a frozen hyperprior)" if c.get("cond") else
                 "Seb codec (semantic bases + compensation + scale-hyperprior residual)")
    else:
        title = "Scale-hyperprior codec alone (Seb's 'DL w/o corr.' baseline)"
    parts = ", ".join(f"{k[4:]} {v:.4f}" for k, v in m.items() if k.startswith("bpp_"))
    srcs = sorted({n.split("/")[0] for n in c["train_photos"]})
    runs = "\n".join(f"    {r['command']}    # steps {r['start_step']}..{r['end_step']}, {r['device']}"
                     f"{' amp' if r.get('amp') else ''}, {r['env']}" for r in c.get("runs", []))
    init = c.get("init")
    lines = [
        f"# {title}, lambda = {c['lambda']:g}", "",
        "Model: `gr_semcom.semantic.seb.model.SebNet` (mode `%s`%s), compressai GDN layers and entropy models; "
        "architecture, loss and deviations from the paper in `gr_semcom/semantic/seb/model.py`, "
        "`docs/learned_codecs.md` and docs/seb.md." % (c["mode"], ", cond" if c.get("cond") else ""),
        "",
        "## Data",
        f"Training: {len(c['train_photos'])} photos of {', '.join(srcs)} (`scripts/fetch_photos.sh`, licences in "
        f"`data/photos/manifest.json`), random {c['crop']}x{c['crop']} crops at random scales with flips, "
        "photos drawn with probability ~ sqrt(area)"
        + ("; each step one subset of crops of one photo (the paper's 16-augmentation subsets)."
           if c["mode"] == "seb" else "; each step crops of random photos."),
        f"Validation / test: the held-out source plasma-workspace-wallpapers ({len(c['test_images'])} photos, "
        "short side resized to 256, centre 256x256 crop), never trained on.",
        "",
        "## Commands (resumable: the same command continues from `checkpoint/`)",
        runs,
        "",
        f"{c['steps']} steps so far, batch {c['batch']}, Adam lr {c['lr']:g} cosine to 1 %, "
        f"{c['seconds']:.0f} s of training in all."
        + (f" Initialised from `{init['from']}`" + (" (residual codec copied and frozen; side encoder = a copy of "
                                                    "its analysis transform; gate 0"
                                                    + (f"; bases generator and compensation from `{init['seb_parts_from']}`"
                                                       if init.get("seb_parts_from") else "") + ")." if c.get("cond")
                                                    else f" (not from it: {', '.join(init.get('not_initialised', [])) or 'none'}).")
           if init else "")
        + (f" Reference warm-up: + {c['ref_warmup']['weight']:g} x lambda x MSE(reference, image) for the first "
           f"{c['ref_warmup']['steps']} steps." if c.get("ref_warmup", {}).get("weight") else ""),
        "",
        "## Learning curve (validation, rounded latents, rates from the entropy models' likelihoods)",
        "![learning curve](learning_curve.png) (numbers: `learning_curve.csv`)",
        "",
        f"Last evaluation: PSNR {m['psnr']:.2f} dB at {m['bpp']:.4f} bpp ({parts})."
        + (f" Reference image alone {m['psnr_reference']:.2f} dB, prediction {m['psnr_prediction']:.2f} dB."
           if "psnr_reference" in m else ""),
        "Real bit streams at the CBR budget and the GNU Radio link: `benchmarks/results/learned_codecs.md`.",
    ]
    (outp / "README.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    """``python -m gr_semcom.semantic.seb.train seb|hyperprior --lam L --out DIR ...``
    (the same arguments as ``semcom train seb|hyperprior``)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m gr_semcom.semantic.seb.train")
    ap.add_argument("mode", choices=["seb", "hyperprior"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--lam", type=float, default=128.0)
    ap.add_argument("--steps", type=int, default=20000, help="total steps (a resumed run continues to it)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--init", default=None)
    ap.add_argument("--init-seb", default=None, help="seb --cond: generator/compensation from this Seb checkpoint")
    ap.add_argument("--data", default=None, help="photoset directory (default data/photos)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--amp", action="store_true", help="bfloat16 autocast on CUDA")
    ap.add_argument("--no-resume", action="store_true")
    ap.add_argument("--crop", type=int, default=CROP_NEW)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--time-limit", type=float, default=None, help="seconds for this run, then checkpoint")
    ap.add_argument("--run-steps", type=int, default=None, help="at most this many steps now, then checkpoint")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--ref-weight", type=float, default=0.0)
    ap.add_argument("--ref-steps", type=int, default=0)
    ap.add_argument("--no-cond", action="store_true", help="Seb without the conditional residual (the first models)")
    ap.add_argument("--train-residual", action="store_true", help="do not freeze the copied residual codec")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pool", type=int, default=0, help="crops per photo cut once and kept on the device (GPU runs)")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    card = train_seb(a.out, mode=a.mode, lam=a.lam, steps=a.steps, batch=a.batch, lr=a.lr, init=a.init,
                     seed=a.seed, ref_weight=a.ref_weight, ref_steps=a.ref_steps, progress=not a.quiet, data=a.data,
                     device=a.device, amp=a.amp, resume=not a.no_resume, crop=a.crop, eval_every=a.eval_every,
                     time_limit=a.time_limit, threads=a.threads, cond=not a.no_cond,
                     freeze_residual=not a.train_residual, warmup=a.warmup, run_steps=a.run_steps, pool=a.pool, init_seb=a.init_seb)
    m = card["test_metrics_estimated"]
    print(f"{a.out}: step {card['steps']}, validation PSNR {m['psnr']:.2f} dB at {m['bpp']:.4f} bpp")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
