"""Fine-tune the shipped DeepSC text model on the object captioner's sentences
(issue 20), keeping its vocabulary, and evaluate it on the model card's two
held-out sets plus fresh object captions.

    python scripts/finetune_deepsc_objects.py --out /tmp/deepsc_ft [--epochs 2] [--objects 8000] [--corpus 8000]

Training sentences: ``--objects`` captions of
``gr_semcom.semantic.captioner.synthetic_object_captions`` (seed 0; the
captioner's grammar over random COCO boxes, no photo) mixed with ``--corpus``
sentences of the original training corpus (``data.caption_corpus(24000,
12000, 0)[500:]``, so the old sentences are not forgotten). Evaluation: the
card's held-out sets (that corpus' first 500 sentences; 300 synthetic BLIP-style
captions, seed 99) and 300 fresh object captions (seed 99), AWGN and
Rayleigh, -3..15 dB, the same BLEU as the card (train.train_deepsc_model).
Writes OUT/model.safetensors and OUT/metrics.json (also the original model's
figures, for comparison).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def evaluate(model, sets: dict, channels=("awgn", "rayleigh"), snrs=(-3, 0, 3, 6, 9, 12, 15)) -> list[dict]:
    from gr_semcom.semantic.metrics import bleu, bleu_n

    rows = []
    for kind in channels:
        for snr in snrs:
            for name, sents in sets.items():
                hyp = []
                for i in range(0, len(sents), 100):
                    hyp += model.transmit(sents[i:i + 100], snr, kind, seed=snr + 100)
                ref = [model.vocab.decode(model.vocab.encode(s, model.cfg.max_len)[1:]) for s in sents]
                rows.append({"channel": kind, "esn0_db": snr, "set": name, "bleu": bleu(hyp, ref),
                             "bleu1": bleu_n(hyp, ref, 1)})
    return rows


def main(argv=None) -> int:
    import torch

    from gr_semcom.semantic import data
    from gr_semcom.semantic.captioner import synthetic_object_captions
    from gr_semcom.semantic.deepsc import DeepSC, train_deepsc

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT / "models/deepsc_text/model.safetensors"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--objects", type=int, default=8000)
    ap.add_argument("--corpus", type=int, default=8000)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-channels", default="awgn,rayleigh")
    ap.add_argument("--eval-snrs", default="-3,0,3,6,9,12,15")
    ap.add_argument("--eval-n", type=int, default=300, help="sentences per held-out set (corpus: up to 500)")
    a = ap.parse_args(argv)
    ev = dict(channels=a.eval_channels.split(","), snrs=[int(x) for x in a.eval_snrs.split(",")])
    t0 = time.time()
    base = DeepSC.load(a.model)
    corpus = data.caption_corpus(24000, 12000, 0)
    test, train_old = corpus[:500], corpus[500:]
    rng = np.random.default_rng(a.seed)
    old = [train_old[i] for i in rng.choice(len(train_old), min(a.corpus, len(train_old)), replace=False)]
    objs = [data.normalise_text(s) for s in synthetic_object_captions(a.objects, a.seed)]
    sents = old + objs
    rng.shuffle(sents)
    sets = {"held_out_corpus": test[: max(a.eval_n, 0) or 500], "synthetic_captions": data.synthetic_captions(a.eval_n, 99),
            "object_captions": [data.normalise_text(s) for s in synthetic_object_captions(a.eval_n, 99)]}
    before = evaluate(base, sets, **ev)
    print("before:", [(r["channel"], r["esn0_db"], r["set"], round(r["bleu"], 1)) for r in before], flush=True)
    model, logs = train_deepsc(base.cfg, sents, epochs=a.epochs, lr=a.lr, seed=a.seed, init=base)
    after = evaluate(model, sets, **ev)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.safetensors", extra={"eval": after[:6]})
    rec = {"finetuned_from": str(a.model), "command": "python " + " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
           "train_sentences": len(sents), "object_captions": len(objs), "corpus_sentences": len(old),
           "epochs": a.epochs, "lr": a.lr, "logs": logs, "eval": after, "eval_before": before,
           "seconds": round(time.time() - t0, 1),
           "env": f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads"}
    (out / "metrics.json").write_text(json.dumps(rec, indent=2) + "\n")
    for r0, r1 in zip(before, after):
        print(f"{r0['channel']:8s} {r0['esn0_db']:3d} dB {r0['set']:18s} BLEU {r0['bleu']:5.1f} -> {r1['bleu']:5.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
