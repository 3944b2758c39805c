"""DeepJSCC of images (Bourtsoulatze, Kurka, Gunduz 2019), the analog
baseline of the Seb comparison: a GDN conv encoder maps an image to
H/16 x W/16 x C real values = H W C / 512 complex channel symbols
(power-normalised to unit energy per symbol), a decoder maps the noisy,
equalised symbols back. Trained through an AWGN channel with Es/N0 drawn
uniformly from a range, MSE loss. With C = 40 a 256x256 image takes 5120
symbols (CBR 1/38.4 before the burst's preamble and pilots; 1/33 with them).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .compressai_compat import load

_layers, _ = load()


@dataclass
class JsccConfig:
    n: int = 64
    c: int = 40  # real latent channels (C/2 complex symbols per 16x16 block)
    snr_min: float = -3.0
    snr_max: float = 15.0


class ImageJSCC(nn.Module):
    def __init__(self, cfg: JsccConfig | None = None):
        super().__init__()
        from .seb.model import analysis, synthesis

        self.cfg = cfg = cfg or JsccConfig()
        self.enc = analysis(3, cfg.n, cfg.c)
        self.dec = synthesis(cfg.c, cfg.n, 3)

    def symbols_for(self, h: int, w: int) -> int:
        return (h // 16) * (w // 16) * self.cfg.c // 2

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, n_symbols) complex, unit mean energy."""
        z = self.enc(x).flatten(1)
        zc = torch.complex(z[:, 0::2], z[:, 1::2])
        p = zc.abs().pow(2).mean(1, keepdim=True).clamp_min(1e-12)
        return zc / p.sqrt()

    def decode(self, y: torch.Tensor, h: int, w: int) -> torch.Tensor:
        z = torch.stack([y.real, y.imag], -1).flatten(1).float()
        z = z.view(y.shape[0], self.cfg.c, h // 16, w // 16)
        return torch.sigmoid(self.dec(z))

    def forward(self, x: torch.Tensor, esn0_db: torch.Tensor) -> torch.Tensor:
        s = self.encode(x)
        sigma = torch.sqrt(10 ** (-esn0_db / 10) / 2)[:, None]
        noise = torch.complex(torch.randn_like(s.real), torch.randn_like(s.real)) * sigma
        return self.decode(s + noise, x.shape[2], x.shape[3])

    # -- numpy helpers for the link ------------------------------------------------
    @torch.no_grad()
    def encode_image(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        if h % 16 or w % 16:
            raise ValueError(f"DeepJSCC needs sides that are multiples of 16, got {w}x{h}")
        x = torch.from_numpy(np.array(img, np.float32)).permute(2, 0, 1)[None] / 255.0
        return self.encode(x)[0].numpy().astype(np.complex64)

    @torch.no_grad()
    def decode_image(self, y: np.ndarray, h: int, w: int) -> np.ndarray:
        t = self.decode(torch.from_numpy(np.asarray(y, np.complex64))[None], h, w)
        return (t[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def save(model: ImageJSCC, path, **fields) -> None:
    from .weights import save_checkpoint

    save_checkpoint(model, path, "ImageJSCC", asdict(model.cfg), **fields)


def load_model(path) -> ImageJSCC:
    from .weights import load_checkpoint

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"DeepJSCC weights not found: {p} (`semcom train image-jscc`)")
    meta, state = load_checkpoint(p, "ImageJSCC")
    m = ImageJSCC(JsccConfig(**meta["config"]))
    m.load_state_dict(state)
    return m.eval()


def _awgn_table(model, test: np.ndarray, device, snrs=(-3, 0, 3, 6, 9, 12, 15)) -> list[dict]:
    from .metrics import psnr
    from .seb.train import to_tensor

    rows = []
    g = torch.Generator().manual_seed(0)
    model.eval()
    xt = to_tensor(test).to(device)
    h, w = test.shape[1:3]
    for snr in snrs:
        with torch.no_grad():
            s = model.encode(xt)
            sigma = (10 ** (-snr / 10) / 2) ** 0.5
            n = torch.complex(torch.randn(s.shape, generator=g), torch.randn(s.shape, generator=g)).to(device) * sigma
            rec = (model.decode(s + n, h, w).float().permute(0, 2, 3, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
        rows.append({"esn0_db": snr, "psnr": float(np.mean([psnr(a, b) for a, b in zip(rec, test)]))})
    model.train()
    return rows


def train_image_jscc(out: str, steps: int = 2000, batch: int = 16, lr: float = 1e-3, seed: int = 0,
                     progress: bool = True, data: str | None = None, device: str | None = "cpu", amp: bool = False,
                     resume: bool = True, crop: int = 256, eval_every: int = 200, time_limit: float | None = None,
                     init: str | None = None, warmup: int = 0, run_steps: int | None = None,
                     threads: int | None = None) -> dict:
    """DeepJSCC through AWGN (Es/N0 uniform in the config's range), MSE; the
    same data, checkpoints, learning curve (validation PSNR at 9 dB) and
    options as seb.train.train_seb."""
    from tqdm import tqdm

    from . import photoset, trainloop
    from .seb.train import _photo_data, to_tensor
    from .train import _command, _env

    if threads:
        torch.set_num_threads(threads)
    dev = trainloop.pick_device(device)
    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    photos, names, test, data_root = _photo_data(data)
    torch.manual_seed(seed)
    model = ImageJSCC()
    if init:
        model.load_state_dict(load_model(init).state_dict())
    model.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    curve = trainloop.Curve(outp, ["step", "seconds", "train_loss", "train_psnr", "val_psnr", "lr"])
    ck = None
    if resume and (outp / "checkpoint" / "state.json").is_file():
        ck = trainloop.load_checkpoint(outp, model, {"main": opt})
        if ck is None:  # committed form: weights only
            ck = json.loads((outp / "checkpoint" / "state.json").read_text())
            model.load_state_dict(load_model(outp / "model.safetensors").state_dict())
            warmup = max(warmup, 100)
        curve.truncate(ck["step"])
    elif curve.path.is_file():
        curve.path.unlink()
    step0 = ck["step"] if ck else 0
    warm_from = step0 if ck else 0
    rng = np.random.default_rng(seed)
    if ck and ck.get("numpy_rng"):
        rng.bit_generator.state = ck["numpy_rng"]
    runs = ck.get("runs", []) if ck else []
    clock = trainloop.Clock(ck.get("seconds", 0.0) if ck else 0.0, time_limit)
    run = {"command": _command(), "start_step": step0, "device": str(dev), "amp": bool(amp), "env": _env()}
    weights = np.sqrt([im.shape[0] * im.shape[1] for _, im in photos])
    weights /= weights.sum()
    cfg = model.cfg
    last: dict = {}
    card = None

    def checkpoint(step):
        rows = _awgn_table(model, test, dev)
        v9 = next(r["psnr"] for r in rows if r["esn0_db"] == 9)
        curve.add({"step": step, "seconds": round(clock.total, 1), **last, "val_psnr": round(v9, 4)})
        curve.plot(f"DeepJSCC (validation at 9 dB: {photoset.HELD_OUT}, 256x256)")
        save(model.cpu(), outp / "model.safetensors")
        model.to(dev)
        state = {"step": step, "steps_total": steps, "numpy_rng": rng.bit_generator.state,
                 "seconds": round(clock.total, 1), "runs": runs + [{**run, "end_step": step}], "lr": lr,
                 "batch": batch, "crop": crop, "data": data_root, "init": init}
        trainloop.save_checkpoint(outp, model, {"main": opt}, state)
        c = {"steps": step, "batch": batch, "lr": lr, "seconds": state["seconds"], "runs": state["runs"],
             "test_awgn": rows, "test_images": names, "train_photos": [n for n, _ in photos],
             "symbols_per_256x256": model.symbols_for(256, 256), "curve": curve.rows()}
        (outp / "metrics.json").write_text(json.dumps(c, indent=1))
        _write_jscc_card(outp, c, cfg)
        return c

    if step0 == 0:
        card = checkpoint(0)
    bar = tqdm(range(step0, steps), initial=step0, total=steps, desc="train image DeepJSCC", disable=not progress)
    for step in bar:
        cur = trainloop.cosine_lr(step, steps, lr, warmup=warmup, start=warm_from)
        for gp in opt.param_groups:
            gp["lr"] = cur
        xs = [photoset.random_crop(photos[j][1], crop, rng) for j in rng.choice(len(photos), batch, p=weights)]
        x = to_tensor(np.stack(xs)).to(dev)
        snr = torch.empty(batch, device=dev).uniform_(cfg.snr_min, cfg.snr_max)
        with trainloop.autocast(dev, amp):
            loss = torch.mean((model(x, snr).float() - x) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        p = float(-10 * torch.log10(loss.detach()))
        last = {"train_loss": round(float(loss.detach()), 6), "train_psnr": round(p, 3), "lr": cur}
        bar.set_postfix(psnr=f"{p:.2f}")
        stop = clock.expired() or (outp / "STOP").exists() or (run_steps and step + 1 - step0 >= run_steps)
        if (step + 1) % eval_every == 0 or step + 1 == steps or stop:
            card = checkpoint(step + 1)
        if stop:
            break
    bar.close()
    model.eval()
    if card is None:
        card = json.loads((outp / "metrics.json").read_text())
    return card


def _write_jscc_card(outp: Path, c: dict, cfg) -> None:
    table = "\n".join(f"| {r['esn0_db']} | {r['psnr']:.2f} |" for r in c["test_awgn"])
    runs = "\n".join(f"    {r['command']}    # steps {r['start_step']}..{r['end_step']}, {r['device']}"
                     f"{' amp' if r.get('amp') else ''}, {r['env']}" for r in c["runs"])
    srcs = sorted({n.split("/")[0] for n in c["train_photos"]})
    (outp / "README.md").write_text(f"""# DeepJSCC of images (Seb's analog baseline)

Model: `gr_semcom.semantic.image_jscc.ImageJSCC` (Bourtsoulatze et al. 2019 with compressai GDN layers):
four 5x5 stride-2 conv + GDN layers to H/16 x W/16 x {cfg.c} real values, i.e.
{c['symbols_per_256x256']} complex symbols per 256x256 image, unit mean energy; mirrored decoder, sigmoid.
Trained through AWGN with Es/N0 uniform in {cfg.snr_min:g}..{cfg.snr_max:g} dB, MSE.

## Data
{len(c['train_photos'])} training photos of {', '.join(srcs)} (`scripts/fetch_photos.sh`, licences in
`data/photos/manifest.json`), random 256x256 crops at random scales with flips; validation / test: the
held-out source plasma-workspace-wallpapers ({len(c['test_images'])} photos, 256x256 centre crops), never trained on.

## Commands (resumable: the same command continues from `checkpoint/`)
{runs}

{c['steps']} steps so far, batch {c['batch']}, Adam lr {c['lr']:g} cosine to 1 %, {c['seconds']:.0f} s of training.

## Learning curve (validation PSNR at Es/N0 9 dB)
![learning curve](learning_curve.png) (numbers: `learning_curve.csv`)

## Measured (validation crops, symbol-level AWGN; the GNU Radio burst link: benchmarks/seb_curves.py)
| Es/N0 dB | PSNR dB |
|---|---|
{table}
""")
