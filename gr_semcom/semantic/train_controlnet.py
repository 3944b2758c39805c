"""Train a ControlNet on saliency maps (ULBSC's control input), for users with a GPU.

Recipe (Zhang, Rao & Agrawala, "Adding Conditional Control to Text-to-Image
Diffusion Models", ICCV 2023): the ControlNet is a trainable copy of the
Stable Diffusion UNet's encoder (``diffusers.ControlNetModel.from_unet``,
zero-initialised output convolutions), the SD UNet, VAE and text encoder stay
frozen; loss = MSE between the UNet's noise prediction (with the ControlNet's
residuals added) and the true noise (or velocity, per the scheduler), on
random timesteps of the noise schedule; captions are dropped for a share of
the samples (``drop_caption``) so that the model learns to follow the map
alone, as in the paper (50% there).

Data: a directory with the photos, their saliency maps (same stem, any
image format, white = salient) and captions:

* ``images/`` + ``maps/`` (+ ``captions.json`` {stem: caption}, or
  ``<image>.txt`` / ``<stem>.txt`` next to each photo), or
* DUTS-TR as distributed: ``DUTS-TR-Image/`` + ``DUTS-TR-Mask/`` (captions as
  above; the set ships none -- caption it first, e.g. with
  ``semcom``'s object captioner, :func:`caption_directory`).

The control image is made from the map exactly as the generator server does
at run time (:func:`gr_semcom.semantic.control.prepare_control`, mode
``raw`` by default: the ControlNet learns to read soft saliency maps; serve
it with ``control_mode="raw"``).

    python -m gr_semcom.semantic.train_controlnet DATA_DIR --sd SD_DIR --out OUT_DIR \\
        --steps 20000 --batch 4 --lr 1e-5 --resolution 512 --device cuda --fp16
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class ControlNetTrainConfig:
    steps: int = 20000
    batch: int = 4
    lr: float = 1e-5
    resolution: int = 512
    control_mode: str = "raw"
    drop_caption: float = 0.5
    seed: int = 0
    grad_accum: int = 1
    log_every: int = 50


def find_pairs(data_dir: str | Path) -> list[tuple[Path, Path, str]]:
    """(image, map, caption) triples of ``data_dir`` (layouts in the module doc)."""
    d = Path(data_dir)
    for img_dir, map_dir in (("images", "maps"), ("DUTS-TR-Image", "DUTS-TR-Mask")):
        if (d / img_dir).is_dir() and (d / map_dir).is_dir():
            break
    else:
        raise FileNotFoundError(f"{d}: expected images/ + maps/ or DUTS-TR-Image/ + DUTS-TR-Mask/")
    caps = {}
    if (d / "captions.json").is_file():
        caps = json.loads((d / "captions.json").read_text())
        if not isinstance(caps, dict):
            raise ValueError(f"{d / 'captions.json'} must be an object {{stem: caption}}")
    maps = {p.stem: p for p in (d / map_dir).iterdir() if p.suffix.lower() in IMAGE_EXT}
    out = []
    for p in sorted((d / img_dir).iterdir()):
        if p.suffix.lower() not in IMAGE_EXT or p.stem not in maps:
            continue
        cap = caps.get(p.stem)
        if cap is None:
            for c in (p.with_name(p.name + ".txt"), p.with_suffix(".txt")):
                if c.is_file():
                    cap = c.read_text().strip().splitlines()[0] if c.read_text().strip() else ""
                    break
        out.append((p, maps[p.stem], str(cap or "")))
    if not out:
        raise FileNotFoundError(f"{d}: no image with a map of the same name")
    return out


def caption_directory(data_dir: str | Path, captioner=None) -> Path:
    """Write ``captions.json`` for the photos of ``data_dir`` that have none
    (default captioner: make_captioner('auto'))."""
    from .captioner import make_captioner
    from .images import load_image

    d = Path(data_dir)
    cap = captioner or make_captioner("auto")
    pairs = find_pairs(d)
    out = {p.stem: c or cap(load_image(p)) for p, _m, c in pairs}
    (d / "captions.json").write_text(json.dumps(out, indent=1) + "\n")
    return d / "captions.json"


def _load_pair(img: Path, mp: Path, res: int, mode: str):
    from PIL import Image

    from .control import prepare_control

    im = np.asarray(Image.open(img).convert("RGB").resize((res, res), Image.BICUBIC), np.float32) / 127.5 - 1.0
    m = np.asarray(Image.open(mp).convert("L"), np.float32) / 255.0
    ctl = prepare_control(m, mode, (res, res)).astype(np.float32) / 255.0
    return im.transpose(2, 0, 1), np.repeat(ctl[None], 3, axis=0)


def _cond_channels(vae_scale: int) -> tuple:
    """ControlNet conditioning-embedding widths whose down-sampling equals the
    VAE's (SD: 8 -> (16, 32, 96, 256), the diffusers default)."""
    n = int(round(math.log2(vae_scale))) + 1
    return (16, 32, 96, 256)[:n] if n <= 4 else (16, 32, 96, 256) + (256,) * (n - 4)


def train_controlnet(data_dir: str | Path, out_dir: str | Path, pipe=None, sd: str | None = None,
                     cfg: ControlNetTrainConfig | None = None, device: str = "cpu", fp16: bool = False,
                     log=print) -> dict:
    """Train a ControlNet on ``data_dir`` over the frozen SD of ``pipe`` (a
    StableDiffusionPipeline, e.g. bridge.generators.tiny_pipeline('text') in
    the tests) or loaded from ``sd`` (local directory / HF cache, no
    download); save it to ``out_dir`` (``save_pretrained``: safetensors +
    config) with ``train.json`` (config, data, losses). Returns that record."""
    import torch
    import torch.nn.functional as F
    from diffusers import ControlNetModel

    cfg = cfg or ControlNetTrainConfig()
    if pipe is None:
        from diffusers import StableDiffusionPipeline

        from .hub import load_pretrained

        if not sd:
            raise ValueError("give the Stable Diffusion pipeline (pipe=) or its directory (sd=)")
        pipe = load_pretrained(StableDiffusionPipeline, "Stable Diffusion", sd, safety_checker=None,
                               requires_safety_checker=False)
    pairs = find_pairs(data_dir)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    vae, unet, text, tok, sched = pipe.vae, pipe.unet, pipe.text_encoder, pipe.tokenizer, pipe.scheduler
    vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
    if cfg.resolution % (vae_scale * 2 ** (len(unet.config.block_out_channels) - 1)):
        raise ValueError(f"resolution {cfg.resolution} must be a multiple of the UNet's total down-sampling")
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=_cond_channels(vae_scale))
    wdtype = torch.float16 if fp16 else torch.float32
    for m in (vae, unet, text):
        m.requires_grad_(False)
        (m.to(device, dtype=wdtype) if fp16 else m.to(device)).eval()
    controlnet.to(device).train()
    opt = torch.optim.AdamW(controlnet.parameters(), lr=cfg.lr)
    scaling = float(getattr(vae.config, "scaling_factor", 0.18215))
    n_train = int(sched.config.num_train_timesteps)
    pred_type = getattr(sched.config, "prediction_type", "epsilon")
    losses, t0 = [], time.time()
    for step in range(cfg.steps):
        opt.zero_grad(set_to_none=True)
        step_loss = 0.0
        for _ in range(cfg.grad_accum):
            idx = rng.integers(0, len(pairs), cfg.batch)
            ims, ctls = zip(*(_load_pair(pairs[i][0], pairs[i][1], cfg.resolution, cfg.control_mode) for i in idx))
            caps = ["" if rng.random() < cfg.drop_caption else pairs[i][2] for i in idx]
            x = torch.from_numpy(np.stack(ims)).to(device, wdtype)
            c = torch.from_numpy(np.stack(ctls)).to(device, torch.float32)
            with torch.no_grad():
                lat = vae.encode(x).latent_dist.sample() * scaling
                ids = tok(caps, padding="max_length", max_length=tok.model_max_length, truncation=True,
                          return_tensors="pt").input_ids.to(device)
                ehs = text(ids)[0]
            noise = torch.randn_like(lat)
            t = torch.randint(0, n_train, (lat.shape[0],), device=device).long()
            noisy = sched.add_noise(lat, noise, t)
            down, mid = controlnet(noisy.float(), t, encoder_hidden_states=ehs.float(), controlnet_cond=c,
                                   return_dict=False)
            pred = unet(noisy, t, encoder_hidden_states=ehs,
                        down_block_additional_residuals=[r.to(wdtype) for r in down],
                        mid_block_additional_residual=mid.to(wdtype)).sample
            target = sched.get_velocity(lat, noise, t) if pred_type == "v_prediction" else noise
            loss = F.mse_loss(pred.float(), target.float()) / cfg.grad_accum
            loss.backward()
            step_loss += float(loss.detach())
        opt.step()
        losses.append(step_loss)
        if log and (step % cfg.log_every == 0 or step == cfg.steps - 1):
            log(f"step {step + 1}/{cfg.steps} loss {step_loss:.4f} ({time.time() - t0:.0f} s)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    controlnet.save_pretrained(out, safe_serialization=True)
    rec = {"config": asdict(cfg), "data": str(data_dir), "pairs": len(pairs), "losses": losses,
           "seconds": time.time() - t0, "device": device, "fp16": fp16,
           "serve_with": {"control_mode": cfg.control_mode}}
    (out / "train.json").write_text(json.dumps(rec, indent=1) + "\n")
    return rec


def main(argv=None) -> int:
    """``semcom train controlnet`` (the CLI forwards its arguments here)."""
    ap = argparse.ArgumentParser(prog="semcom train controlnet", description=__doc__.split("\n\n")[0])
    ap.add_argument("data", help="images/ + maps/ (+ captions.json) or DUTS-TR-Image/ + DUTS-TR-Mask/")
    ap.add_argument("--sd", required=True, help="Stable Diffusion 1.x directory or HF id already in the cache")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--resolution", type=int, default=512)
    ap.add_argument("--control-mode", choices=("raw", "threshold", "edges"), default="raw")
    ap.add_argument("--drop-caption", type=float, default=0.5)
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--fp16", action="store_true", help="frozen UNet/VAE/text encoder in float16")
    ap.add_argument("--caption-missing", action="store_true", help="write captions.json first (object captioner)")
    a = ap.parse_args(argv)
    if a.caption_missing:
        caption_directory(a.data)
    cfg = ControlNetTrainConfig(steps=a.steps, batch=a.batch, lr=a.lr, resolution=a.resolution,
                                control_mode=a.control_mode, drop_caption=a.drop_caption, grad_accum=a.grad_accum)
    rec = train_controlnet(a.data, a.out, sd=a.sd, cfg=cfg, device=a.device, fp16=a.fp16)
    print(f"saved {a.out} ({rec['pairs']} pairs, final loss {rec['losses'][-1]:.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
