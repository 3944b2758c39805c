"""Caption quality of the offline captioners against HAND-WRITTEN references
(tests/data/caption_references.json, 32 photos of data/photos).

For each captioner (``objects``: ObjectCaptioner, COCO detections +
attributes; ``attributes``: the colour/texture captions used before):
corpus BLEU (sacrebleu) and BLEU-1, MiniLM cosine similarity (mean), object
recall (share of the objects the reference names that the caption names,
counting an accepted word or its plural), and the share of caption words
outside the shipped DeepSC text model's vocabulary (those become <unk> on
the analog DeepSC path). Also the caption of every photo.

    python benchmarks/caption_quality.py [--photos data/photos] [--json out.json]

Needs the photos (python -m gr_semcom.semantic.photoset fetch) and the COCO
detector (bash scripts/setup.sh).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REFS = ROOT / "tests/data/caption_references.json"


def names_object(caption: str, accepted: list[str]) -> bool:
    from gr_semcom.semantic.captioner import plural
    from gr_semcom.semantic.data import normalise_text

    words = set(normalise_text(caption).split())
    return any(w in words or plural(w) in words for w in accepted)


def object_recall(captions: list[str], objects: list[list[list[str]]]) -> float:
    hit = sum(names_object(c, acc) for c, objs in zip(captions, objects) for acc in objs)
    return hit / max(1, sum(len(o) for o in objects))


def oov_share(captions: list[str]) -> float:
    from gr_semcom.semantic.data import normalise_text
    from gr_semcom.semantic.deepsc import DeepSC

    v = DeepSC.load(ROOT / "models/deepsc_text/model.safetensors")._vocab()
    words = [w for c in captions for w in normalise_text(c).split()]
    return sum(w not in v.stoi for w in words) / max(1, len(words))


def main(argv=None) -> int:
    from gr_semcom.semantic.captioner import AttributeImageCaptioner, ObjectCaptioner
    from gr_semcom.semantic.images import load_image
    from gr_semcom.semantic.metrics import bleu, bleu_n
    from gr_semcom.semantic.text_similarity import sentence_similarity

    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", default=os.environ.get("SEMCOM_PHOTOS", str(ROOT / "data/photos")))
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    refs = json.loads(REFS.read_text())["photos"]
    names = sorted(refs)
    images = [load_image(Path(a.photos) / n) for n in names]
    ref_caps = [refs[n]["caption"] for n in names]
    objs = [refs[n]["objects"] for n in names]
    res = {"photos": len(names), "captioners": {}}
    rows = {}
    for cap in (ObjectCaptioner(), AttributeImageCaptioner()):
        t = time.perf_counter()
        hyps = [cap(im) for im in images]
        dt = (time.perf_counter() - t) / len(images)
        sims = sentence_similarity(hyps, ref_caps)
        res["captioners"][cap.name] = {
            "bleu": bleu(hyps, ref_caps), "bleu1": bleu_n(hyps, ref_caps, 1),
            "minilm_similarity": float(np.mean(sims)), "object_recall": object_recall(hyps, objs),
            "deepsc_oov_share": oov_share(hyps), "seconds_per_photo": dt, "captions": dict(zip(names, hyps))}
        rows[cap.name] = hyps
    print(f"| captioner | BLEU | BLEU-1 | MiniLM similarity | object recall | DeepSC OOV words | s/photo |")
    print("|---|---|---|---|---|---|---|")
    for k, r in res["captioners"].items():
        print(f"| {k} | {r['bleu']:.1f} | {r['bleu1']:.3f} | {r['minilm_similarity']:.3f} | {r['object_recall']:.3f} "
              f"| {r['deepsc_oov_share']:.3f} | {r['seconds_per_photo']:.2f} |")
    print()
    print("| photo | hand-written reference | " + " | ".join(rows) + " |")
    print("|---|---|" + "---|" * len(rows))
    for i, n in enumerate(names):
        print(f"| {n} | {ref_caps[i]} | " + " | ".join(rows[k][i] for k in rows) + " |")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
