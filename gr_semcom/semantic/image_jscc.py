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
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

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


def train_image_jscc(out: str, steps: int = 2000, batch: int = 16, lr: float = 1e-3, seed: int = 0,
                     progress: bool = True) -> dict:
    from tqdm import tqdm

    from . import data
    from .metrics import psnr
    from .seb.train import crop_pool, test_crops, to_tensor
    from .train import _command, _env

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    t0 = time.time()
    photos = [im for _, im in data.train_photos()]
    pool = crop_pool(photos, 48, seed=seed)
    names, test = test_crops()
    model = ImageJSCC()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr / 100)
    cfg = model.cfg
    for step in (bar := tqdm(range(steps), desc="train image DeepJSCC", disable=not progress)):
        x = to_tensor(pool[rng.integers(len(pool), size=batch), rng.integers(pool.shape[1], size=batch)])
        snr = torch.empty(batch).uniform_(cfg.snr_min, cfg.snr_max)
        loss = torch.mean((model(x, snr) - x) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(psnr=f"{float(-10 * torch.log10(loss)):.2f}")
    model.eval()
    rows = []
    g = torch.Generator().manual_seed(0)
    xt = to_tensor(test)
    for snr in (-3, 0, 3, 6, 9, 12, 15):
        with torch.no_grad():
            s = model.encode(xt)
            sigma = (10 ** (-snr / 10) / 2) ** 0.5
            n = torch.complex(torch.randn(s.shape, generator=g), torch.randn(s.shape, generator=g)) * sigma
            rec = (model.decode(s + n, 256, 256).permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
        rows.append({"esn0_db": snr, "psnr": float(np.mean([psnr(a, b) for a, b in zip(rec, test)]))})
    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    save(model, outp / "model.safetensors")
    card = {"steps": steps, "batch": batch, "lr": lr, "seconds": round(time.time() - t0, 1), "env": _env(),
            "command": _command(), "test_awgn": rows, "test_images": names,
            "symbols_per_256x256": model.symbols_for(256, 256)}
    (outp / "metrics.json").write_text(json.dumps(card, indent=1))
    table = "\n".join(f"| {r['esn0_db']} | {r['psnr']:.2f} |" for r in rows)
    (outp / "README.md").write_text(f"""# DeepJSCC of images (Seb's analog baseline)

Model: `gr_semcom.semantic.image_jscc.ImageJSCC` (Bourtsoulatze et al. 2019 with compressai GDN layers):
four 5x5 stride-2 conv + GDN layers to H/16 x W/16 x {cfg.c} real values, i.e.
{model.symbols_for(256, 256)} complex symbols per 256x256 image, unit mean energy; mirrored decoder, sigmoid.
Trained through AWGN with Es/N0 uniform in {cfg.snr_min:g}..{cfg.snr_max:g} dB, MSE.

## Data
{len(photos)} opencv-doc training photos, 48 random resized 128x128 crops each (as models/seb_lam*);
test: the 16 held-out photos, 256x256 centre crops ({', '.join(names)}).

## Command
    {card['command']}

{steps} steps, batch {batch}, Adam lr {lr:g} cosine to 1 %, {card['seconds']:.0f} s on {card['env']}.

## Measured (test crops, symbol-level AWGN; over the GNU Radio burst link: benchmarks/seb_curves.py)
| Es/N0 dB | PSNR dB |
|---|---|
{table}
""")
    return card
