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
import time
from pathlib import Path

import numpy as np

CROP = 128


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


def evaluate(net, images: np.ndarray, subset: int = 16) -> dict:
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
            out = net(x)
            npix += out["npix"]
            for k, v in out["bits"].items():
                acc[k] = acc.get(k, 0.0) + float(v)
            for k in psnr:
                mse = torch.mean((out[k].clamp(0, 1) - x) ** 2, dim=(1, 2, 3))
                psnr[k] += (10 * torch.log10(1.0 / mse.clamp_min(1e-10))).tolist()
    net.train()
    res = {f"bpp_{k}": v / npix for k, v in acc.items()}
    res["bpp"] = sum(acc.values()) / npix
    res["psnr"] = float(np.mean(psnr["x_hat"]))
    if net.uses_bases:
        res["psnr_reference"] = float(np.mean(psnr["ref"]))
        res["psnr_prediction"] = float(np.mean(psnr["pred"]))
    return res


def train_seb(out: str, mode: str = "seb", lam: float = 256.0, steps: int = 1500, batch: int = 8,
              lr: float = 1e-3, init: str | None = None, per_photo: int = 48, seed: int = 0,
              n: int = 64, ref_weight: float = 0.0, ref_steps: int = 0, progress: bool = True) -> dict:
    """``ref_weight``/``ref_steps``: for the first ``ref_steps`` steps add
    ``ref_weight * lambda * MSE(reference, image)`` to the loss, a warm-up of
    the Seb generator and reference patch generator in the way DVC (the
    paper's [16]) warms up its motion compensation before the end-to-end
    loss; 0 = the paper's loss only."""
    import torch
    from tqdm import tqdm

    from .. import data
    from ..train import _command, _env
    from .model import SebConfig, SebNet
    from .weights import load_net

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    t0 = time.time()
    photos = [im for _, im in data.train_photos()]
    pool = crop_pool(photos, per_photo, seed=seed)
    names, test = test_crops()
    net = SebNet(SebConfig(mode=mode, lam=lam, n=n))
    init_note = None
    if init:
        src = load_net(init)
        missing = net.load_state_dict(_transferable(src.state_dict(), net), strict=False)
        init_note = {"from": init, "not_initialised": sorted({k.split(".")[0] for k in missing.missing_keys})}
    aux_params = [p for name, p in net.named_parameters() if name.endswith(".quantiles")]
    main_params = [p for name, p in net.named_parameters() if not name.endswith(".quantiles")]
    opt = torch.optim.Adam(main_params, lr=lr, betas=(0.9, 0.999))
    aux_opt = torch.optim.Adam(aux_params, lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr / 100)
    logs = []
    bar = tqdm(range(steps), desc=f"train {mode} lambda={lam:g}", disable=not progress)
    for step in bar:
        if mode == "seb":  # one correlated subset: crops of one photo
            p = rng.integers(len(pool))
            x = to_tensor(pool[p, rng.choice(per_photo, batch, replace=False)])
        else:
            x = to_tensor(pool[rng.integers(len(pool), size=batch), rng.integers(per_photo, size=batch)])
        outd = net(x, seed=step)
        loss, mse, bpp = net.loss(x, outd)
        if mode == "seb" and ref_weight and step < ref_steps:
            loss = loss + ref_weight * net.cfg.lam * torch.mean((outd["ref"] - x) ** 2)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(main_params, 1.0)
        opt.step()
        sched.step()
        aux = net.aux_loss()
        aux_opt.zero_grad()
        aux.backward()
        aux_opt.step()
        psnr = float(10 * torch.log10(1 / mse.detach().clamp_min(1e-10)))
        if step % 50 == 0 or step == steps - 1:
            logs.append({"step": step, "loss": float(loss), "psnr": psnr, "bpp": float(bpp)})
        bar.set_postfix(loss=f"{float(loss):.3f}", psnr=f"{psnr:.2f}", bpp=f"{float(bpp):.3f}")
    net.update()
    metrics = evaluate(net, test)
    seconds = time.time() - t0
    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    from .weights import save_net

    save_net(net, outp / "model.safetensors", steps=steps, init=init_note)
    card = {"mode": mode, "lambda": lam, "steps": steps, "batch": batch, "lr": lr, "crop": CROP,
            "train_photos": len(photos), "crops_per_photo": per_photo, "test_images": names,
            "test_metrics_estimated": metrics, "seconds": round(seconds, 1), "env": _env(),
            "command": _command(), "init": init_note, "ref_warmup": {"weight": ref_weight, "steps": ref_steps},
            "log": logs}
    (outp / "metrics.json").write_text(json.dumps(card, indent=1))
    _write_card(outp, card)
    return card


def _transferable(state: dict, net) -> dict:
    own = net.state_dict()
    return {k: v for k, v in state.items() if k in own and own[k].shape == v.shape
            and not k.endswith(("_quantized_cdf", "_offset", "_cdf_length", "scale_table"))}


def _write_card(outp: Path, c: dict) -> None:
    m = c["test_metrics_estimated"]
    title = ("Seb codec (semantic bases + compensation + scale-hyperprior residual)" if c["mode"] == "seb"
             else "Scale-hyperprior codec alone (Seb's 'DL w/o corr.' baseline)")
    parts = ", ".join(f"{k[4:]} {v:.4f}" for k, v in m.items() if k.startswith("bpp_"))
    lines = [
        f"# {title}, lambda = {c['lambda']:g}", "",
        "Model: `gr_semcom.semantic.seb.model.SebNet` (mode `%s`), compressai GDN layers and entropy models; "
        "architecture, loss and deviations from the paper in `gr_semcom/semantic/seb/model.py` and the README." % c["mode"],
        "",
        "## Data",
        f"Training: {c['train_photos']} opencv-doc photos (Debian `opencv-doc`, the held-out ones excluded), "
        f"{c['crops_per_photo']} random resized crops (40-100 % of the short side, flips) of {c['crop']}x{c['crop']} "
        "per photo" + ("; each step one subset of crops of one photo (the paper's 16-augmentation subsets)."
                       if c["mode"] == "seb" else "; each step crops of random photos."),
        f"Test: the 16 held-out photos ({', '.join(c['test_images'])}), short side resized to 256, "
        "centre 256x256 crop, never seen in training.",
        "",
        "## Command",
        f"    {c['command']}",
        "",
        f"{c['steps']} steps, batch {c['batch']}, Adam lr {c['lr']:g} cosine to 1 %, "
        f"{c['seconds']:.0f} s on {c['env']}."
        + (f" Reference warm-up: + {c['ref_warmup']['weight']:g} x lambda x MSE(reference, image) for the first "
           f"{c['ref_warmup']['steps']} steps." if c.get("ref_warmup", {}).get("weight") else "")
        + (f" Initialised from `{c['init']['from']}` "
                                                   f"(not from it: {', '.join(c['init']['not_initialised']) or 'none'})."
                                                   if c["init"] else ""),
        "The whole chain (stage 1 into out/seb_stage1/, then the shipped stage 2), in order: "
        "`scripts/train_seb.sh`.",
        "",
        "## Measured on the test crops (rounded latents, rates from the entropy models' likelihoods;",
        "real bit streams and the GNU Radio link: benchmarks/seb_curves.py)",
        f"PSNR {m['psnr']:.2f} dB at {m['bpp']:.4f} bpp ({parts})."
        + (f" Reference image alone {m['psnr_reference']:.2f} dB, prediction {m['psnr_prediction']:.2f} dB."
           if "psnr_reference" in m else ""),
    ]
    (outp / "README.md").write_text("\n".join(lines) + "\n")
