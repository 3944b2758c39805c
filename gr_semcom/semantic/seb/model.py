"""Seb networks (Zheng et al., "Semantic Communications with Explicit Semantic
Base for Image Transmission", seed 002): the Seb-based reference image
generator (Fig. 2) and the Seb-based image encoder/decoder (Fig. 3), plus the
same residual codec alone as the "DL w/o corr." baseline (Ballé et al. 2018's
scale hyperprior, the paper's [15]).

* Seb generator f_phi / reference patch generator f_theta: four 5x5 stride-2
  conv (deconv) layers with GDN (IGDN) from compressai; a 32x32 patch becomes a
  ``m_seb x 2 x 2`` latent (h/16 x w/16).
* k-means over the patch latents of an image subset gives K = floor(n_j n_p /
  25) semantic bases and a per-patch index; straight-through copy of the
  gradient from the bases back to the latents, with the L2 regulariser
  ||F - sg(S)||^2 (eq. 9-10, beta = 1).
* compensation: an analysis transform of (image, reference) -> latent Z^m
  (factorized entropy model) -> synthesis -> prediction = reference +
  correction. The paper follows DVC and uses an optical-flow net; there is no
  motion between an image and its base-built reference, so the compensation
  here is a learned additive correction (docs/seb.md).
* residual: image - prediction through a scale-hyperprior codec (Z^r, Gaussian
  conditional with hyper-latent scales). The paper's eq. 8 puts the
  image-dependent (parametric) model on Z^m; the residual carries most of the
  bits here, so it gets the hyperprior.
* loss eq. (5)+(10): lambda * MSE + (R(S)/n + R(A) + R(Z^m) + R(Z^r)) in bits
  per pixel + beta * ||F - sg(S)||^2 per pixel.

Conditional Seb (``cond=True``, issue 19: "Seb at least as good as its
residual codec by construction"): the residual codec is a trained
hyperprior, copied in and kept frozen; the prediction enters as a side
input in its latent domain, y = g_a(x) - w * s(pred) at the transmitter and
x_hat = g_s(y_hat + w * s(pred)) at the receiver (s = a copy of g_a that
is fine-tuned, w a per-channel gate that starts at 0), so at the first step
the Seb net *is* its hyperprior, and training moves it only where the bases
lower the loss. With the packet flag ``no bases`` the same net decodes as the
frozen hyperprior exactly (no set packet, no indices), which the codec's
encoder may choose per image (codec.py): the bases can only help.

Pixels are floats in [0, 1]; image sides must be multiples of 64 (the codec
pads, see codec.py).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from ..compressai_compat import load, scale_table

_layers, _em = load()
GDN = _layers.GDN
EntropyBottleneck = _em.EntropyBottleneck
GaussianConditional = _em.GaussianConditional

PATCH = 32
ALIGN = 64  # residual latent stride 16, hyper-latent stride 64


def _conv(cin, cout, k=5, s=2):
    return nn.Conv2d(cin, cout, k, s, k // 2)


def _deconv(cin, cout, k=5, s=2):
    return nn.ConvTranspose2d(cin, cout, k, s, k // 2, output_padding=s - 1)


def analysis(cin: int, n: int, m: int) -> nn.Sequential:
    return nn.Sequential(_conv(cin, n), GDN(n), _conv(n, n), GDN(n), _conv(n, n), GDN(n), _conv(n, m))


def synthesis(m: int, n: int, cout: int) -> nn.Sequential:
    return nn.Sequential(_deconv(m, n), GDN(n, inverse=True), _deconv(n, n), GDN(n, inverse=True),
                         _deconv(n, n), GDN(n, inverse=True), _deconv(n, cout))


def to_patches(x: torch.Tensor, p: int = PATCH) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(-1, c, p, p)


def from_patches(t: torch.Tensor, b: int, h: int, w: int, p: int = PATCH) -> torch.Tensor:
    c = t.shape[1]
    return t.view(b, h // p, w // p, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def kmeans(x: torch.Tensor, k: int, iters: int = 25, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means with k-means++ seeding on the rows of ``x`` (N, D).
    Returns (centres (k, D), assignment (N,)). Empty clusters are re-seeded
    with the point farthest from its centre. Deterministic for a seed."""
    x = x.detach().float()
    n = x.shape[0]
    k = max(1, min(k, n))
    g = torch.Generator().manual_seed(seed)
    idx = [int(torch.randint(n, (1,), generator=g))]
    d2 = ((x - x[idx[0]]) ** 2).sum(1)
    for _ in range(1, k):
        probs = d2 / d2.sum() if float(d2.sum()) > 0 else torch.full_like(d2, 1.0 / n)
        i = int(torch.multinomial(probs, 1, generator=g))
        idx.append(i)
        d2 = torch.minimum(d2, ((x - x[i]) ** 2).sum(1))
    c = x[idx].clone()
    assign = torch.zeros(n, dtype=torch.long)
    for _ in range(iters):
        dist = torch.cdist(x, c)
        new = dist.argmin(1)
        counts = torch.bincount(new, minlength=k)
        sums = torch.zeros_like(c).index_add_(0, new, x)
        nonempty = counts > 0
        c[nonempty] = sums[nonempty] / counts[nonempty, None]
        for j in torch.nonzero(~nonempty).flatten().tolist():
            far = int(dist.gather(1, new[:, None]).squeeze(1).argmax())
            c[j] = x[far]
            new[far] = j
        if torch.equal(new, assign):
            break
        assign = new
    assign = torch.cdist(x, c).argmin(1)
    return c, assign


def n_bases(n_images: int, patches_per_image: int, ratio: int = 25) -> int:
    """K = floor(n_j * n_p / 25) (paper, Sec. IV-A), at least 1."""
    return max(1, (n_images * patches_per_image) // ratio)


@dataclass
class SebConfig:
    mode: str = "seb"  # "seb" or "hyperprior" (the "DL w/o corr." baseline: residual codec alone)
    n: int = 64  # conv channels
    m_seb: int = 32  # Seb latent channels (a base is m_seb x 2 x 2)
    m_comp: int = 32  # compensation latent channels
    m_res: int = 96  # residual latent channels
    base_ratio: int = 25  # K = floor(n_j n_p / base_ratio)
    lam: float = 256.0  # training lambda (MSE on [0, 1] pixels)
    cond: bool = False  # conditional residual (prediction as a latent side input; issue 19)


def fp32(x: torch.Tensor):
    """Context for the entropy models under mixed precision: autocast off
    (their likelihoods need float32); the tensor is cast to float32."""
    return contextlib.nullcontext() if not torch.is_autocast_enabled(x.device.type) else \
        torch.autocast(device_type=x.device.type, enabled=False)


class SebNet(nn.Module):
    def __init__(self, cfg: SebConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or SebConfig()
        if cfg.mode not in ("seb", "hyperprior"):
            raise ValueError(f"mode must be 'seb' or 'hyperprior', not {cfg.mode!r}")
        n = cfg.n
        if cfg.mode == "seb":
            self.seb_enc = analysis(3, n, cfg.m_seb)  # f_phi
            self.seb_dec = synthesis(cfg.m_seb, n, 3)  # f_theta
            self.seb_eb = EntropyBottleneck(cfg.m_seb)  # R(S)
            self.comp_enc = analysis(6, n, cfg.m_comp)
            self.comp_eb = EntropyBottleneck(cfg.m_comp)  # R(Z^m)
            self.comp_dec = synthesis(cfg.m_comp, n, 3)
        if cfg.cond and cfg.mode != "seb":
            raise ValueError("cond=True needs mode 'seb'")
        self.res_enc = analysis(3, n, cfg.m_res)
        if cfg.cond:
            self.side_enc = analysis(3, n, cfg.m_res)  # s(pred), a copy of g_a at the start
            self.side_gate = nn.Parameter(torch.zeros(cfg.m_res))  # w, 0 = the hyperprior
        self.res_dec = synthesis(cfg.m_res, n, 3)
        self.h_a = nn.Sequential(_conv(cfg.m_res, n, 3, 1), nn.ReLU(inplace=True), _conv(n, n), nn.ReLU(inplace=True),
                                 _conv(n, n))
        self.h_s = nn.Sequential(_deconv(n, n), nn.ReLU(inplace=True), _deconv(n, n), nn.ReLU(inplace=True),
                                 _conv(n, cfg.m_res, 3, 1), nn.ReLU(inplace=True))
        self.hyper_eb = EntropyBottleneck(n)  # R(hyper-latent)
        self.gc = GaussianConditional(None)  # R(Z^r)

    @property
    def uses_bases(self) -> bool:
        return self.cfg.mode == "seb"

    def config_dict(self) -> dict:
        return asdict(self.cfg)

    def entropy_bottlenecks(self):
        return [m for m in self.modules() if isinstance(m, EntropyBottleneck)]

    def aux_loss(self) -> torch.Tensor:
        return sum(m.loss() for m in self.entropy_bottlenecks())

    def update(self, force: bool = True) -> None:
        """Build the entropy coders' CDF tables (after training or loading)."""
        for m in self.entropy_bottlenecks():
            m.update(force=force)
        self.gc.update_scale_table(scale_table(), force=force)

    # -- pieces shared by training and the codec ---------------------------
    def patch_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B * n_p, m_seb, 2, 2) latents F of the 32x32 patches."""
        return self.seb_enc(to_patches(x))

    @staticmethod
    def bases_as_map(bases: torch.Tensor) -> torch.Tensor:
        """(K, m, 2, 2) -> (1, m, 2K, 2), the layout the bases' entropy model codes."""
        k, m = bases.shape[:2]
        return bases.permute(1, 0, 2, 3).reshape(1, m, 2 * k, 2)

    @staticmethod
    def map_as_bases(t: torch.Tensor) -> torch.Tensor:
        m, k2 = t.shape[1], t.shape[2]
        return t.reshape(m, k2 // 2, 2, 2).permute(1, 0, 2, 3).contiguous()

    def reference(self, f_sel: torch.Tensor, b: int, h: int, w: int) -> torch.Tensor:
        """Per-patch latents (bases picked by the indices) -> reference image."""
        return from_patches(self.seb_dec(f_sel), b, h, w)

    def prediction(self, ref: torch.Tensor, zm_hat: torch.Tensor) -> torch.Tensor:
        return ref + self.comp_dec(zm_hat)

    def side(self, pred: torch.Tensor) -> torch.Tensor:
        """w * s(pred): what the conditional residual codec subtracts from the
        latent at the transmitter and adds back at the receiver."""
        return self.side_gate.view(1, -1, 1, 1) * self.side_enc(pred)

    def residual_parts(self) -> list[str]:
        """Top-level modules of the residual codec (what a conditional Seb
        copies from its hyperprior and keeps frozen)."""
        return ["res_enc", "res_dec", "h_a", "h_s", "hyper_eb", "gc"]

    # -- training forward ----------------------------------------------------
    def forward(self, x: torch.Tensor, k: int | None = None, seed: int = 0) -> dict:
        """One image subset (B images of one size) -> reconstruction, rates
        (bits, by part) and the regulariser, with the noisy-quantisation
        proxies of compressai's entropy models (training mode)."""
        b, _, h, w = x.shape
        npix = b * h * w
        bits = {}
        reg = x.new_zeros(())
        if self.uses_bases:
            f = self.patch_features(x)
            fv = f.flatten(1)
            n_p = (h // PATCH) * (w // PATCH)
            k = k or n_bases(b, n_p, self.cfg.base_ratio)
            centres, assign = kmeans(fv, k, seed=seed)
            bases = centres.view(-1, *f.shape[1:])
            with fp32(x):
                b_hat, b_lik = self.seb_eb(self.bases_as_map(bases).float())
            bases_hat = self.map_as_bases(b_hat)
            sel = bases_hat[assign].flatten(1)
            f_st = fv + (sel - fv).detach()  # gradient copy (straight-through), Sec. III-B
            reg = ((fv - sel.detach()) ** 2).sum() / npix  # eq. (9), per pixel
            ref = self.reference(f_st.view_as(f), b, h, w)
            zm = self.comp_enc(torch.cat([x, ref], 1))
            with fp32(x):
                zm_hat, zm_lik = self.comp_eb(zm.float())
            pred = self.prediction(ref, zm_hat)
            bits["bases"] = -torch.log2(b_lik).sum()
            bits["indices"] = x.new_tensor(b * n_p * math.log2(max(k, 1)))
            bits["compensation"] = -torch.log2(zm_lik).sum()
        else:
            ref = pred = torch.zeros_like(x)
        if self.cfg.cond:
            side = self.side(pred)
            y = self.res_enc(x) - side
        else:
            y = self.res_enc(x - pred)
        z = self.h_a(y)
        with fp32(x):
            z_hat, z_lik = self.hyper_eb(z.float())
        scales = self.h_s(z_hat)
        with fp32(x):
            y_hat, y_lik = self.gc(y.float(), scales.float())
        x_hat = self.res_dec(y_hat + side) if self.cfg.cond else pred + self.res_dec(y_hat)
        bits["hyper"] = -torch.log2(z_lik).sum()
        bits["residual"] = -torch.log2(y_lik).sum()
        return {"x_hat": x_hat, "ref": ref, "pred": pred, "bits": bits, "reg": reg, "npix": npix}

    def loss(self, x: torch.Tensor, out: dict, lam: float | None = None, beta: float = 1.0) -> tuple:
        lam = self.cfg.lam if lam is None else lam
        mse = torch.mean((out["x_hat"].float() - x) ** 2)
        bpp = sum(out["bits"].values()) / out["npix"]
        return lam * mse + bpp + beta * out["reg"], mse, bpp
