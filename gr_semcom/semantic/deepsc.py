"""DeepSC text JSCC (Xie, Qin, Li, Juang, IEEE Trans. Signal Process. 2021),
the caption path of ULBSC (Sec. III-B).

* semantic encoder: word embedding + sinusoidal positions + Transformer
  encoder layers;
* channel encoder: dense 256 (ReLU) -> dense 2*S per word, i.e. S complex
  symbols per word, normalised to unit average power per complex symbol;
* channel: AWGN or flat Rayleigh (receiver knows h, as DeepSC), Es/N0 drawn
  uniformly from -3..15 dB per batch while training (ULBSC Sec. IV-A);
* channel decoder: dense 2S -> 128 -> 512 -> 128 with residual + LayerNorm;
* semantic decoder: Transformer decoder layers (teacher forcing in
  training, greedy decoding at test) + linear to the vocabulary.
* loss: cross-entropy - eta * MI, the MI of (transmitted, received) real
  symbol pairs estimated with MINE (Belghazi et al., ICML 2018); the MINE
  network is trained to maximise its lower bound and eta = 0.0009 as in the
  DeepSC reference setting.

The vocabulary is word-level (lower-case, punctuation split off) and travels
with the weights as JSON in the safetensors metadata; no pickle.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

PAD, START, END, UNK = 0, 1, 2, 3
SPECIALS = ["<pad>", "<start>", "<end>", "<unk>"]


@dataclass
class DeepSCConfig:
    vocab_size: int = 8000
    max_len: int = 32  # tokens incl. <start>/<end>
    d_model: int = 128
    heads: int = 8
    d_ff: int = 512
    enc_layers: int = 3
    dec_layers: int = 3
    symbols_per_word: int = 8  # complex channel symbols per token
    dropout: float = 0.1
    eta: float = 0.0009

    @property
    def n_symbols(self) -> int:
        """Complex channel symbols per sentence (fixed length)."""
        return self.max_len * self.symbols_per_word


class Vocab:
    def __init__(self, words: list[str]):
        self.itos = list(words)
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    @classmethod
    def build(cls, sentences: list[str], size: int) -> "Vocab":
        from collections import Counter

        c = Counter(w for s in sentences for w in s.split())
        words = [w for w, _ in c.most_common(size - len(SPECIALS)) if w not in SPECIALS]
        return cls(SPECIALS + words)

    def __len__(self):
        return len(self.itos)

    def encode(self, sentence: str, max_len: int) -> list[int]:
        from .data import normalise_text

        ids = [self.stoi.get(w, UNK) for w in normalise_text(sentence).split()][: max_len - 2]
        return [START] + ids + [END] + [PAD] * (max_len - 2 - len(ids))

    def decode(self, ids) -> str:
        out = []
        for i in ids:
            i = int(i)
            if i == END:
                break
            if i in (PAD, START):
                continue
            out.append(self.itos[i] if 0 <= i < len(self.itos) else "<unk>")
        return detokenise(" ".join(out))


def detokenise(s: str) -> str:
    import re

    s = re.sub(r" ([,.!?;:)])", r"\1", s)
    s = re.sub(r"\( ", "(", s)
    return re.sub(r" ' ", "'", s)


def _positions(n: int, d: int) -> torch.Tensor:
    pos = torch.arange(n)[:, None].float()
    div = torch.exp(torch.arange(0, d, 2).float() * (-math.log(10000.0) / d))
    pe = torch.zeros(n, d)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)
    return pe


class Mine(nn.Module):
    def __init__(self, hidden: int = 10):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))

    def lower_bound(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Donsker-Varadhan bound on I(x; y) from paired real samples."""
        x, y = x.reshape(-1, 1), y.reshape(-1, 1)
        joint = self.net(torch.cat([x, y], 1))
        marg = self.net(torch.cat([x, y[torch.randperm(len(y))]], 1))
        return joint.mean() - torch.logsumexp(marg, 0).squeeze() + math.log(len(marg))


def channel(x: torch.Tensor, esn0_db, kind: str = "awgn", generator=None) -> torch.Tensor:
    """Complex symbols (..., S) with unit average power -> equalised received
    symbols. ``esn0_db`` is a float or a per-row tensor. Rayleigh: one gain per
    sentence, known to the receiver (zero-forcing), as in DeepSC."""
    sigma = torch.as_tensor(10.0 ** (-torch.as_tensor(esn0_db, dtype=torch.float32) / 20.0))
    while sigma.dim() < x.dim():
        sigma = sigma[..., None]
    n = (torch.randn(x.shape, generator=generator) + 1j * torch.randn(x.shape, generator=generator)) / math.sqrt(2)
    if kind == "awgn":
        return x + sigma * n
    if kind == "rayleigh":
        shape = x.shape[:1] + (1,) * (x.dim() - 1)
        h = (torch.randn(shape, generator=generator) + 1j * torch.randn(shape, generator=generator)) / math.sqrt(2)
        return (h * x + sigma * n) / h
    raise ValueError(f"unknown channel {kind!r}")


class DeepSC(nn.Module):
    def __init__(self, cfg: DeepSCConfig, vocab: Vocab | None = None):
        super().__init__()
        self.cfg = cfg
        self.vocab = vocab
        d = cfg.d_model
        self.embed = nn.Embedding(cfg.vocab_size, d, padding_idx=PAD)
        self.register_buffer("pe", _positions(cfg.max_len, d), persistent=False)
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d, cfg.heads, cfg.d_ff, cfg.dropout, batch_first=True), cfg.enc_layers,
            enable_nested_tensor=False)
        self.ch_enc = nn.Sequential(nn.Linear(d, 256), nn.ReLU(), nn.Linear(256, 2 * cfg.symbols_per_word))
        self.ch_dec1 = nn.Linear(2 * cfg.symbols_per_word, d)
        self.ch_dec2 = nn.Sequential(nn.ReLU(), nn.Linear(d, 512), nn.ReLU(), nn.Linear(512, d))
        self.ch_norm = nn.LayerNorm(d)
        self.decoder = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(d, cfg.heads, cfg.d_ff, cfg.dropout, batch_first=True), cfg.dec_layers)
        self.out = nn.Linear(d, cfg.vocab_size)
        self.mine = Mine()

    # -- transmitter --------------------------------------------------------
    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids -> (B, L * S) complex symbols, unit average power."""
        pad = tokens == PAD
        h = self.encoder(self.embed(tokens) * math.sqrt(self.cfg.d_model) + self.pe[: tokens.shape[1]],
                         src_key_padding_mask=pad)
        z = self.ch_enc(h)  # (B, L, 2S)
        z = torch.complex(z[..., 0::2], z[..., 1::2]).reshape(tokens.shape[0], -1)
        return z / z.abs().pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-8)

    # -- receiver -------------------------------------------------------------
    def _memory(self, y: torch.Tensor) -> torch.Tensor:
        B = y.shape[0]
        S = self.cfg.symbols_per_word
        r = torch.stack([y.real, y.imag], -1).reshape(B, -1, 2 * S).float()
        h = self.ch_dec1(r)
        return self.ch_norm(h + self.ch_dec2(h))

    def _decode_logits(self, memory, tgt_in):
        L = tgt_in.shape[1]
        causal = torch.triu(torch.ones(L, L, dtype=torch.bool), 1)  # True = may not attend
        h = self.decoder(self.embed(tgt_in) * math.sqrt(self.cfg.d_model) + self.pe[:L], memory,
                         tgt_mask=causal, tgt_key_padding_mask=tgt_in == PAD)
        return self.out(h)

    @torch.no_grad()
    def decode(self, y: torch.Tensor) -> torch.Tensor:
        """(B, L * S) received complex symbols -> (B, L) greedy token ids."""
        memory = self._memory(y)
        B = y.shape[0]
        ys = torch.full((B, 1), START, dtype=torch.long)
        done = torch.zeros(B, dtype=torch.bool)
        for _ in range(self.cfg.max_len - 1):
            nxt = self._decode_logits(memory, ys)[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)
            ys = torch.cat([ys, nxt[:, None]], 1)
            done |= nxt == END
            if bool(done.all()):
                break
        return ys

    def forward(self, tokens, esn0_db, kind="awgn"):
        x = self.encode(tokens)
        y = channel(x, esn0_db, kind)
        logits = self._decode_logits(self._memory(y), tokens[:, :-1])
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1), ignore_index=PAD)
        xr = torch.cat([x.real, x.imag], -1)
        yr = torch.cat([y.real, y.imag], -1)
        return ce, xr, yr

    # -- text in/out --------------------------------------------------------
    def _vocab(self) -> Vocab:
        if self.vocab is None:
            raise RuntimeError("model has no vocabulary")
        return self.vocab

    def text_to_symbols(self, sentences: list[str]) -> np.ndarray:
        v = self._vocab()
        tok = torch.tensor([v.encode(s, self.cfg.max_len) for s in sentences])
        with torch.no_grad():
            return self.encode(tok).numpy().astype(np.complex64)

    def symbols_to_text(self, y: np.ndarray) -> list[str]:
        y = np.asarray(y, dtype=np.complex64).reshape(-1, self.cfg.n_symbols)
        ids = self.decode(torch.from_numpy(y))
        return [self._vocab().decode(r[1:]) for r in ids.tolist()]

    def transmit(self, sentences: list[str], esn0_db: float, kind: str = "awgn", seed: int = 0) -> list[str]:
        g = torch.Generator().manual_seed(seed)
        x = torch.from_numpy(self.text_to_symbols(sentences))
        return self.symbols_to_text(channel(x, esn0_db, kind, generator=g).numpy())

    # -- safetensors I/O --------------------------------------------------------
    def save(self, path: str | Path, extra: dict | None = None) -> None:
        from .weights import save_checkpoint

        save_checkpoint(self, path, "DeepSC", asdict(self.cfg), extra, vocab=self._vocab().itos)

    @classmethod
    def load(cls, path: str | Path) -> "DeepSC":
        from .weights import load_checkpoint

        meta, state = load_checkpoint(path, "DeepSC")
        m = cls(DeepSCConfig(**meta["config"]), Vocab(meta["vocab"]))
        m.load_state_dict(state)
        return m.eval()


def train_deepsc(cfg: DeepSCConfig, sentences: list[str], epochs: int = 10, batch: int = 128, lr: float = 5e-4,
                 snr_range=(-3.0, 15.0), kind: str = "awgn", seed: int = 0, progress: bool = True,
                 vocab: Vocab | None = None, init: "DeepSC | None" = None) -> tuple[DeepSC, list]:
    """Train from scratch, or fine-tune ``init`` (its config and vocabulary
    are kept; ``cfg``/``vocab`` are then ignored)."""
    from tqdm import tqdm

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if init is not None:
        cfg, vocab = init.cfg, init._vocab()
        model = DeepSC(cfg, vocab)
        model.load_state_dict(init.state_dict())
    else:
        vocab = vocab or Vocab.build(sentences, cfg.vocab_size)
        cfg.vocab_size = len(vocab)
        model = DeepSC(cfg, vocab)
    tok = torch.tensor([vocab.encode(s, cfg.max_len) for s in sentences])
    main_params = [p for n, p in model.named_parameters() if not n.startswith("mine.")]
    opt = torch.optim.Adam(main_params, lr=lr, betas=(0.9, 0.98), eps=1e-8)
    opt_mine = torch.optim.Adam(model.mine.parameters(), lr=1e-3)
    logs = []
    steps = math.ceil(len(tok) / batch)
    bar = tqdm(total=epochs * steps, desc="train DeepSC", disable=not progress)
    for ep in range(epochs):
        model.train()
        perm = torch.from_numpy(rng.permutation(len(tok)))
        ce_sum, mi_sum, n = 0.0, 0.0, 0
        for i in range(0, len(perm), batch):
            tb = tok[perm[i:i + batch]]
            snr = torch.from_numpy(rng.uniform(*snr_range, size=len(tb)).astype(np.float32))
            ce, xr, yr = model(tb, snr, kind)
            # 1. MINE: maximise its lower bound on fixed samples
            mi_est = model.mine.lower_bound(xr.detach(), yr.detach())
            opt_mine.zero_grad()
            (-mi_est).backward()
            opt_mine.step()
            # 2. transceiver: CE - eta * MI (MI through the transmitted symbols)
            mi = model.mine.lower_bound(xr, yr)
            loss = ce - cfg.eta * mi
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(main_params, 1.0)
            opt.step()
            ce_sum += ce.item() * len(tb)
            mi_sum += mi.item() * len(tb)
            n += len(tb)
            bar.update(1)
            bar.set_postfix(ce=f"{ce.item():.3f}", mi=f"{mi.item():.2f}")
        logs.append({"epoch": ep + 1, "ce": ce_sum / n, "mi_nats": mi_sum / n})
    bar.close()
    return model.eval(), logs
