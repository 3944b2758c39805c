"""DeepJSCC of the saliency map: the benchmark ULBSC compares against
(Bourtsoulatze, Kurka, Gunduz, IEEE TCCN 2019: conv encoder -> power-normalised
complex channel symbols -> noisy channel -> conv decoder, trained end to end
through the channel). Same conv/ResBlock encoder and decoder as the ULBSC
codec (:class:`SaliencyVQ`) without the codebook: the 4x4xc' latent is sent
as 16 * c' / 2 complex symbols (128 channel uses per map for the default
c' = 16). Trained with Es/N0 uniform in
-3..15 dB on AWGN, MSE loss.
"""
from __future__ import annotations


import numpy as np
import torch
import torch.nn.functional as F

from .vq import SaliencyVQ, VQConfig


class SaliencyJSCC(SaliencyVQ):
    @property
    def n_symbols(self) -> int:
        return 16 * self.cfg.latent_channels // 2

    @torch.no_grad()
    def encode_symbols(self, maps: torch.Tensor) -> np.ndarray:
        return self._symbols(maps).numpy().astype(np.complex64)

    def _symbols(self, maps):
        z = self.encoder(maps * 2 - 1).reshape(maps.shape[0], -1)
        x = torch.complex(z[:, 0::2], z[:, 1::2])
        return x / x.abs().pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-8)

    def _from_symbols(self, y):
        z = torch.stack([y.real, y.imag], -1).reshape(y.shape[0], self.cfg.latent_channels, 4, 4).float()
        return torch.sigmoid(self.decoder(z))

    @torch.no_grad()
    def decode_symbols(self, y: np.ndarray) -> torch.Tensor:
        return self._from_symbols(torch.as_tensor(np.asarray(y, np.complex64)).reshape(-1, self.n_symbols))


def train_jscc(maps: np.ndarray, epochs: int = 8, batch: int = 64, lr: float = 2e-3, seed: int = 0,
               snr_range=(-3.0, 15.0), progress: bool = True):
    from tqdm import tqdm

    from ..deepsc import channel

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = SaliencyJSCC(VQConfig())
    x_all = torch.from_numpy(maps.astype(np.float32))[:, None]
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    logs = []
    for ep in tqdm(range(epochs), desc="train saliency DeepJSCC", disable=not progress):
        model.train()
        perm = torch.from_numpy(rng.permutation(len(x_all)))
        tot = 0.0
        for i in range(0, len(perm), batch):
            xb = x_all[perm[i:i + batch]]
            snr = torch.from_numpy(rng.uniform(*snr_range, len(xb)).astype(np.float32))
            y = channel(model._symbols(xb), snr, "awgn")
            loss = F.mse_loss(model._from_symbols(y), xb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += loss.item() * len(xb)
        sched.step()
        logs.append({"epoch": ep + 1, "train_mse": tot / len(x_all)})
    return model.eval(), logs
