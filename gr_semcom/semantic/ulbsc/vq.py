"""ULBSC saliency-map codec: conv encoder with ResBlocks -> codebook quantiser
-> indices; decoder mirror (ULBSC Sec. III-D, Fig. 3).

The paper's quantiser ``Q: R^{h' x w' x c'} -> R^1`` maps the *whole* latent
of a map to one index of a learnable codebook ``C in R^{D x N_idx}``: the
codebook is a knowledge base of saliency layouts shared by both ends. Here
``grid`` generalises it: the 4x4xc' latent is cut into grid x grid blocks and
each block gets an index (grid = 1 is the paper's single index; 2 and 4 trade
bits for detail). Bits per map = grid^2 * ceil(log2 N_idx), sent as fixed
length fields through CRC + LDPC + QAM.

Loss (eq. 11): (1/N) sum_i ||m_i - m_hat_i||^2 - lambda * E[log p(z)] with
lambda = 0.001 (squared error summed over a map's pixels), plus
the VQ-VAE codebook and commitment terms (van den Oord et al., NeurIPS 2017,
beta = 0.25) that make the codebook learnable end to end. p(z) is a learned
categorical prior over indices; the expectation is taken under the soft
assignment softmax(-||z - c_k||^2) so that the rate term reaches the encoder.
Unused codes are restarted on encoder outputs during training.

Weights are safetensors with the config in the file's metadata (no pickle).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class VQConfig:
    size: int = 64  # maps are coded at size x size
    channels: int = 64
    latent_channels: int = 16  # c' of the 4x4 latent
    grid: int = 1  # indices per side (1 = one index per map, as in the paper)
    codebook_size: int = 1024  # N_idx
    beta: float = 0.25
    rate_lambda: float = 1e-3

    @property
    def code_dim(self) -> int:
        b = 4 // self.grid
        return b * b * self.latent_channels

    @property
    def n_indices(self) -> int:
        return self.grid * self.grid

    @property
    def bits_per_index(self) -> int:
        return max(1, math.ceil(math.log2(self.codebook_size)))

    @property
    def bits_per_map(self) -> int:
        return self.n_indices * self.bits_per_index


class ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1), nn.GroupNorm(8, ch), nn.SiLU(),
                                  nn.Conv2d(ch, ch, 3, padding=1), nn.GroupNorm(8, ch))

    def forward(self, x):
        return F.silu(x + self.body(x))


def _levels(size: int) -> int:
    n = int(round(math.log2(size / 4)))
    if 4 * 2 ** n != size:
        raise ValueError("size must be 4 * 2^k")
    return n


class SaliencyVQ(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        if cfg.grid not in (1, 2, 4):
            raise ValueError("grid must be 1, 2 or 4")
        self.cfg = cfg
        n = _levels(cfg.size)
        # widths grow as the resolution falls (16 at full size .. channels at 8x8)
        widths = [max(16, cfg.channels >> (n - 1 - i)) for i in range(n)]
        enc = [nn.Conv2d(1, widths[0], 3, padding=1), nn.SiLU()]
        for i in range(n):
            nxt = widths[min(i + 1, n - 1)]
            enc += [ResBlock(widths[i]), nn.Conv2d(widths[i], nxt, 4, stride=2, padding=1), nn.SiLU()]
        enc += [ResBlock(widths[-1]), nn.Conv2d(widths[-1], cfg.latent_channels, 1)]
        self.encoder = nn.Sequential(*enc)
        dec = [nn.Conv2d(cfg.latent_channels, widths[-1], 3, padding=1), nn.SiLU(), ResBlock(widths[-1])]
        for i in reversed(range(n)):
            prev = widths[min(i + 1, n - 1)]
            dec += [nn.ConvTranspose2d(prev, widths[i], 4, stride=2, padding=1), nn.SiLU(), ResBlock(widths[i])]
        dec += [nn.Conv2d(widths[0], 1, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)
        # codebook learnt by exponential moving averages of its assigned
        # encoder outputs (the VQ-VAE paper's EMA variant of the codebook loss)
        self.register_buffer("codebook", torch.randn(cfg.codebook_size, cfg.code_dim) * 0.1)
        self.register_buffer("ema_count", torch.ones(cfg.codebook_size))
        self.register_buffer("ema_sum", self.codebook.clone())
        self.prior_logits = nn.Parameter(torch.zeros(cfg.codebook_size))
        self.ema_decay = 0.99

    # latent (B, c', 4, 4) <-> vectors (B, grid^2, code_dim)
    def _to_vectors(self, z):
        g, b = self.cfg.grid, 4 // self.cfg.grid
        B, C = z.shape[:2]
        z = z.reshape(B, C, g, b, g, b).permute(0, 2, 4, 1, 3, 5)
        return z.reshape(B, g * g, C * b * b)

    def _from_vectors(self, v):
        g, b, C = self.cfg.grid, 4 // self.cfg.grid, self.cfg.latent_channels
        B = v.shape[0]
        v = v.reshape(B, g, g, C, b, b).permute(0, 3, 1, 4, 2, 5)
        return v.reshape(B, C, 4, 4)

    def _dist(self, v, cb=None):
        cb = self.codebook if cb is None else cb
        return v.pow(2).sum(-1, keepdim=True) - 2 * v @ cb.t() + cb.pow(2).sum(-1)

    @torch.no_grad()
    def encode(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, 1, S, S) maps in [0, 1] -> (B, grid^2) int64 indices."""
        return self._dist(self._to_vectors(self.encoder(maps * 2 - 1))).argmin(-1)

    @torch.no_grad()
    def decode(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, grid^2) indices -> (B, 1, S, S) maps in [0, 1]."""
        idx = idx.clamp(0, self.cfg.codebook_size - 1)
        return torch.sigmoid(self.decoder(self._from_vectors(self.codebook[idx])))

    def forward(self, maps):
        v = self._to_vectors(self.encoder(maps * 2 - 1))
        cb = self.codebook.clone()  # the EMA update below changes the buffer in place
        d = self._dist(v, cb)
        idx = d.argmin(-1)
        q = cb[idx]
        if self.training:
            self._ema_update(v.detach().reshape(-1, self.cfg.code_dim), idx.reshape(-1))
        commit = F.mse_loss(v, q.detach(), reduction="sum") / maps.shape[0]  # ||z - sg(e)||^2 per map
        q_st = v + (q - v).detach()
        logits = self.decoder(self._from_vectors(q_st))
        rec = torch.sigmoid(logits)
        # eq. (11): (1/N) sum_i ||m_i - m_hat_i||^2 -- squared error summed over each map's
        # pixels, averaged over maps; against it lambda = 0.001 keeps the rate term a light
        # regulariser (per-pixel MSE would let 0.001 x ~10 bits outweigh it and collapse the codebook)
        sse = F.mse_loss(rec, maps, reduction="sum") / maps.shape[0]
        mse = sse.detach() / maps[0].numel()
        soft = torch.softmax(-d / d.detach().mean().clamp_min(1e-6), -1)
        logp = torch.log_softmax(self.prior_logits, -1)
        rate_bits = -(soft * logp).sum(-1).mean() / math.log(2)
        loss = sse + self.cfg.beta * commit + self.cfg.rate_lambda * rate_bits
        return loss, {"mse": mse.item(), "rate_bits": rate_bits.item(), "commit": commit.item()}, idx, v

    @torch.no_grad()
    def _ema_update(self, v, idx):
        onehot = F.one_hot(idx, self.cfg.codebook_size).float()
        self.ema_count.mul_(self.ema_decay).add_(onehot.sum(0), alpha=1 - self.ema_decay)
        self.ema_sum.mul_(self.ema_decay).add_(onehot.t() @ v, alpha=1 - self.ema_decay)
        n = self.ema_count.sum()
        count = (self.ema_count + 1e-5) / (n + self.cfg.codebook_size * 1e-5) * n
        self.codebook.copy_(self.ema_sum / count[:, None])

    @torch.no_grad()
    def restart_codes(self, dead: torch.Tensor, pool: torch.Tensor, gen: torch.Generator) -> None:
        """Move unused codes onto random recent encoder outputs."""
        pick = pool[torch.randint(0, len(pool), (len(dead),), generator=gen)]
        self.codebook[dead] = pick
        self.ema_sum[dead] = pick
        self.ema_count[dead] = 1.0

    # -- bit packing ----------------------------------------------------------
    def indices_to_bits(self, idx: np.ndarray) -> np.ndarray:
        n = self.cfg.bits_per_index
        idx = np.asarray(idx, dtype=np.int64).ravel()
        return ((idx[:, None] >> np.arange(n - 1, -1, -1)) & 1).astype(np.uint8).ravel()

    def bits_to_indices(self, bits: np.ndarray) -> np.ndarray:
        n = self.cfg.bits_per_index
        b = np.asarray(bits, dtype=np.int64).reshape(-1, n)
        idx = (b << np.arange(n - 1, -1, -1)).sum(1)
        return np.minimum(idx, self.cfg.codebook_size - 1)

    # -- safetensors I/O (the class name is the checkpoint's 'model' field) --------
    def save(self, path: str | Path, extra: dict | None = None) -> None:
        from ..weights import save_checkpoint

        save_checkpoint(self, path, type(self).__name__, asdict(self.cfg), extra)

    @classmethod
    def load(cls, path: str | Path):
        from ..weights import load_checkpoint

        meta, state = load_checkpoint(path, cls.__name__)
        m = cls(VQConfig(**meta["config"]))
        m.load_state_dict(state)
        return m.eval()


def prepare_map(sal: np.ndarray, size: int) -> torch.Tensor:
    """HxW float map in [0, 1] -> (1, 1, size, size) tensor (area resize)."""
    t = torch.from_numpy(np.asarray(sal, dtype=np.float32))[None, None]
    return F.interpolate(t, size=(size, size), mode="area").clamp(0, 1)


def restore_map(m: torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
    """(1, 1, S, S) -> HxW numpy map at the source resolution (bilinear)."""
    return F.interpolate(m, size=shape, mode="bilinear", align_corners=False)[0, 0].clamp(0, 1).numpy()


def kmeans(x: torch.Tensor, k: int, iters: int = 25, gen: torch.Generator | None = None) -> torch.Tensor:
    """Lloyd's k-means on rows of ``x`` (random data points as the start);
    empty clusters are re-seeded on the worst-fitting points."""
    c = x[torch.randperm(len(x), generator=gen)[:k]].clone()
    if len(c) < k:
        c = torch.cat([c, c[torch.randint(0, len(c), (k - len(c),), generator=gen)] + 1e-3])
    for _ in range(iters):
        d = x.pow(2).sum(1, keepdim=True) - 2 * x @ c.t() + c.pow(2).sum(1)
        a = d.argmin(1)
        counts = torch.bincount(a, minlength=k).float()
        sums = torch.zeros_like(c).index_add_(0, a, x)
        empty = counts == 0
        c = torch.where(empty[:, None], c, sums / counts.clamp_min(1)[:, None])
        if empty.any():
            worst = d.gather(1, a[:, None]).squeeze(1).argsort(descending=True)[: int(empty.sum())]
            c[empty] = x[worst]
    return c


def train_vq(cfg: VQConfig, train_maps: np.ndarray, epochs: int = 12, ae_epochs: int = 8, batch: int = 64,
             lr: float = 2e-3, seed: int = 0, val_maps: np.ndarray | None = None,
             progress: bool = True) -> tuple[SaliencyVQ, list]:
    """Train on (N, S, S) float maps; returns the model and per-epoch logs.

    Stage 1 (``ae_epochs``): encoder/decoder as a plain autoencoder, so the
    latents carry the maps before any quantiser exists. Then the codebook is
    initialised by k-means over the training latents (a single-index codebook
    trained from random codes collapses onto a few entries). Stage 2
    (``epochs``): the full loss of eq. (11), end to end, codebook by EMA; codes
    unused for a whole epoch restart on encoder outputs (not in the last 2)."""
    from tqdm import tqdm

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    model = SaliencyVQ(cfg)
    x_all = torch.from_numpy(train_maps.astype(np.float32))[:, None]
    logs = []

    def batches():
        perm = torch.from_numpy(rng.permutation(len(x_all)))
        for i in range(0, len(perm), batch):
            xb = x_all[perm[i:i + batch]]
            yield xb.flip(-1) if torch.rand((), generator=gen) < 0.5 else xb

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    bar = tqdm(total=ae_epochs + epochs, desc="train saliency VQ", disable=not progress)
    for ep in range(ae_epochs):
        model.train()
        tot = 0.0
        for xb in batches():
            mse = F.mse_loss(torch.sigmoid(model.decoder(model.encoder(xb * 2 - 1))), xb)
            opt.zero_grad()
            mse.backward()
            opt.step()
            tot += mse.item() * len(xb)
        logs.append({"stage": "autoencoder", "epoch": ep + 1, "train_mse": tot / len(x_all)})
        bar.update(1)
    with torch.no_grad():
        model.eval()
        lat = torch.cat([model._to_vectors(model.encoder(x_all[i:i + 512] * 2 - 1))
                         for i in range(0, len(x_all), 512)]).reshape(-1, cfg.code_dim)
        model.codebook.copy_(kmeans(lat, cfg.codebook_size, gen=gen))
        model.ema_sum.copy_(model.codebook)
        model.ema_count.fill_(1.0)
    opt = torch.optim.Adam(model.parameters(), lr=lr / 10)  # gentle: the quantiser is in the loop now
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, epochs))
    for ep in range(epochs):
        model.train()
        used = torch.zeros(cfg.codebook_size, dtype=torch.bool)
        recent, tot, rate = [], 0.0, 0.0
        for xb in batches():
            loss, parts, idx, v = model(xb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            used[idx.ravel()] = True
            recent = (recent + [v.detach().reshape(-1, cfg.code_dim)])[-50:]
            tot += parts["mse"] * len(xb)
            rate += parts["rate_bits"] * len(xb)
        dead = (~used).nonzero().ravel()
        if len(dead) and ep < epochs - 2:
            model.restart_codes(dead, torch.cat(recent), gen)
        sched.step()
        log = {"stage": "vq", "epoch": ep + 1, "train_mse": tot / len(x_all), "rate_bits": rate / len(x_all),
               "codes_used": int(used.sum())}
        if val_maps is not None:
            log.update(evaluate_vq(model, val_maps))
        logs.append(log)
        bar.update(1)
        bar.set_postfix(mse=f"{log['train_mse']:.4f}", used=log["codes_used"])
    bar.close()
    return model.eval(), logs


@torch.no_grad()
def evaluate_vq(model: SaliencyVQ, maps: np.ndarray) -> dict:
    from ..metrics import f_measure, mae

    model.eval()
    x = torch.from_numpy(maps.astype(np.float32))[:, None]
    rec = model.decode(model.encode(x))[:, 0].numpy()
    return {"val_mae": float(np.mean([mae(r, m) for r, m in zip(rec, maps)])),
            "val_fmeasure": float(np.mean([f_measure(r, m) for r, m in zip(rec, maps)]))}
