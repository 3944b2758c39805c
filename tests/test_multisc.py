"""Multi-SC (seed 001): fusion (eq. 9), splits, text path, correction, the
third-party loading code on tiny config-built models, the codec with
erasures, the link over the GNU Radio chain and `semcom transmit --scheme multisc`."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from gr_semcom.semantic.multisc.codec import HEADER, MultiScCodec, MultiScConfig
from gr_semcom.semantic.multisc.correct import BartCorrector, NoCorrector, SymSpellCorrector, tiny_bart
from gr_semcom.semantic.multisc.regions import Box, ProposalDetector, centre_distance, fuse, random_split
from gr_semcom.semantic.multisc.textcode import ALPHABET, bits_to_text, char_error_rate, text_to_bits
from gr_semcom.semantic.multisc.vlm import QUERY, VOCABULARY, AttributeCaptioner, LlavaCaptioner, tiny_llava

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHELSEA = os.path.join(ROOT, "examples", "chelsea.jpg")


def _photo():
    from gr_semcom.semantic.images import load_image

    return load_image(CHELSEA)


class _FixedMask:
    name = "fixed"

    def __call__(self, image):
        m = np.zeros(image.shape[:2], np.float32)
        h, w = m.shape
        m[h // 4: h // 2, w // 4: w // 2] = 1
        return m


# ----------------------------------------------------------------- regions / fusion
def test_centre_distance_is_eq9():
    a, b = Box(0, 0, 10, 10), Box(30, 40, 50, 60)  # centres (5, 5) and (40, 50)
    assert centre_distance(a, b) == pytest.approx(math.hypot(35, 45))


def test_fusion_merges_below_eps_only():
    a, b, c = Box(0, 0, 10, 10), Box(4, 4, 14, 14), Box(100, 100, 110, 110)
    d_ab = centre_distance(a, b)
    out = fuse([a, b, c], eps=d_ab + 1e-6)  # a, b closer than eps: fused; c far: alone
    assert len(out) == 2 and Box(0, 0, 14, 14) in [Box(o.x0, o.y0, o.x1, o.y1) for o in out]
    assert len(fuse([a, b, c], eps=d_ab)) == 3  # d == eps is not "< eps"
    assert len(fuse([a, b, c], eps=1e9)) == 1
    merged = fuse([a, b, c], eps=50)
    for i in range(len(merged)):  # no pair left closer than eps
        for j in range(i + 1, len(merged)):
            assert centre_distance(merged[i], merged[j]) >= 50


def test_random_split_tiles_the_image():
    rng = np.random.default_rng(3)
    for n in (1, 2, 5):
        boxes = random_split((90, 160), n, rng)
        assert len(boxes) == n
        cover = np.zeros((90, 160), int)
        for b in boxes:
            cover[b.y0:b.y1, b.x0:b.x1] += 1
        assert (cover == 1).all()


def test_proposal_detector_boxes_inside_image():
    im = _photo()
    boxes = ProposalDetector()(im)
    assert 1 <= len(boxes) <= 8
    for b in boxes:
        assert 0 <= b.x0 < b.x1 <= im.shape[1] and 0 <= b.y0 < b.y1 <= im.shape[0]


# ------------------------------------------------------------------ text path
def test_text_code_roundtrip_and_bit_errors_make_misspellings():
    from gr_semcom.blocks.multisc_blocks import symbols_to_text, text_to_symbols  # uses the PHY's constellation

    t = "a large dark green region, at the top left of the picture!"
    assert bits_to_text(text_to_bits(t)) == t
    assert symbols_to_text(text_to_symbols(t)) == t
    assert symbols_to_text(text_to_symbols("ABC é")) == "abc ?"
    s = text_to_symbols(t)
    assert np.mean(np.abs(s) ** 2) == pytest.approx(1.0, abs=1e-5)
    rng = np.random.default_rng(0)
    y = s + (rng.normal(size=s.size) + 1j * rng.normal(size=s.size)) * 0.3
    got = symbols_to_text(y)
    assert got != t and set(got) <= set(ALPHABET)
    assert 0 < char_error_rate(got, t) < 0.5


def test_char_error_rate():
    assert char_error_rate("sitting", "kitten") == pytest.approx(3 / 6)
    assert char_error_rate("", "") == 0 and char_error_rate("abc", "abc") == 0


def test_symspell_corrects_channel_misspellings():
    from gr_semcom.blocks.multisc_blocks import symbols_to_text, text_to_symbols  # uses the PHY's constellation

    from gr_semcom.semantic.metrics import bleu

    cap = AttributeCaptioner()
    im = _photo()
    refs = [cap(im), "a small dark smooth navy and black region at the top left of the picture"]
    rng = np.random.default_rng(1)
    noisy = []
    for r in refs:
        s = text_to_symbols(r)
        noisy.append(symbols_to_text(s + (rng.normal(size=s.size) + 1j * rng.normal(size=s.size)) * 0.28))
    fixed = [SymSpellCorrector(VOCABULARY)(n) for n in noisy]
    assert bleu(fixed, refs) > bleu(noisy, refs) + 10
    assert NoCorrector()("x y") == "x y"
    assert SymSpellCorrector(VOCABULARY)(refs[1]) == refs[1]  # a clean caption is left alone


def test_tiny_bart_corrector_loads_and_generates(tmp_path):
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    d = tiny_bart(tmp_path / "bart")
    c = BartCorrector.from_pretrained(str(d), num_beams=2)
    # the corrector's text is what the saved model's own generate() gives for that input (beam search,
    # no sampling: deterministic), loaded here straight through transformers
    model, tok = AutoModelForSeq2SeqLM.from_pretrained(str(d)).eval(), AutoTokenizer.from_pretrained(str(d))
    for text in ("a lrge dark region", "small red"):
        enc = tok([text], return_tensors="pt")
        n = enc["input_ids"].shape[1]
        with torch.no_grad():
            ids = model.generate(**enc, num_beams=2, max_new_tokens=2 * n + 8, do_sample=False)
        want = tok.decode(ids[0], skip_special_tokens=True).strip()
        assert want and want != text
        assert c(text) == want, text
    assert c("") == ""


def test_missing_weights_name_the_model(tmp_path):
    from gr_semcom.semantic.hub import MissingWeights
    from gr_semcom.semantic.clip_score import ClipSimilarity
    from gr_semcom.semantic.multisc.regions import HFObjectDetector
    from gr_semcom.semantic.multisc.segment import HFSegmenter

    for cls, name in ((LlavaCaptioner, "VLM"), (BartCorrector, "spelling corrector"), (HFObjectDetector, "detector"),
                      (HFSegmenter, "segmenter"), (ClipSimilarity, "CLIP")):
        with pytest.raises(MissingWeights, match=name) as ei:
            cls.from_pretrained(str(tmp_path / "nope"))
        assert "semcom models download" in str(ei.value)


# ---------------------------------------------------------- VLM / detector / segmenter / CLIP (tiny)
def test_tiny_llava_captions_a_region_with_the_paper_query(tmp_path):
    d = tiny_llava(tmp_path / "llava")
    c = LlavaCaptioner.from_pretrained(str(d), max_new_tokens=6)
    assert QUERY in c.prompt()
    crop = _photo()[:80, :120]
    out = c(crop)
    assert out and "<image>" not in out
    # the caption is the tokens the saved model's own greedy generate() adds after the prompt
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model, proc = AutoModelForImageTextToText.from_pretrained(str(d)).eval(), AutoProcessor.from_pretrained(str(d))
    for im in (crop, np.ascontiguousarray(crop[::-1])):  # the random weights give the two crops different words
        inputs = proc(images=Image.fromarray(im), text=c.prompt(), return_tensors="pt")
        with torch.no_grad():
            ids = model.generate(**inputs, max_new_tokens=6, do_sample=False)
        assert c(im) == proc.decode(ids[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    assert c(crop) != c(np.ascontiguousarray(crop[::-1]))


def test_tiny_yolos_detector_and_segformer(tmp_path):
    import torch
    from transformers import (SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor,
                              YolosConfig, YolosForObjectDetection, YolosImageProcessor)

    from gr_semcom.semantic.multisc.regions import HFObjectDetector
    from gr_semcom.semantic.multisc.segment import HFSegmenter, main_object_slice

    torch.manual_seed(0)
    YolosForObjectDetection(YolosConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                        intermediate_size=64, image_size=[64, 64], patch_size=16, num_detection_tokens=5,
                                        num_labels=3)).save_pretrained(tmp_path / "det")
    YolosImageProcessor(size={"shortest_edge": 64, "longest_edge": 64}).save_pretrained(tmp_path / "det")
    det = HFObjectDetector.from_pretrained(str(tmp_path / "det"), threshold=0.0)
    im = _photo()
    boxes = det(im)
    assert boxes and all(0 <= b.x0 < b.x1 <= im.shape[1] and 0 <= b.y0 < b.y1 <= im.shape[0] for b in boxes)
    SegformerForSemanticSegmentation(SegformerConfig(num_channels=3, num_encoder_blocks=2, depths=[1, 1],
                                                     sr_ratios=[2, 1], hidden_sizes=[8, 16], num_attention_heads=[1, 2],
                                                     decoder_hidden_size=16, num_labels=3)).save_pretrained(tmp_path / "seg")
    SegformerImageProcessor(size={"height": 64, "width": 64}).save_pretrained(tmp_path / "seg")
    seg = HFSegmenter.from_pretrained(str(tmp_path / "seg"))
    m = seg(im)
    assert m.shape == im.shape[:2] and set(np.unique(m)) <= {0.0, 1.0}
    sl = main_object_slice(im, m, 48)
    assert sl.image.shape == (48, 48, 3)


def test_clip_similarity_matches_manual_embedding(tmp_path):
    import torch

    from gr_semcom.semantic.clip_score import ClipSimilarity, tiny_clip

    c = ClipSimilarity.from_pretrained(str(tiny_clip(tmp_path / "clip")))
    im = _photo()
    other = np.ascontiguousarray(im[::-1, ::-1])
    sim = c.image_similarity([im, im], [im, other])
    assert sim[0] == pytest.approx(1.0, abs=1e-5) and -1 <= sim[1] <= 1
    # independent computation: vision tower -> pooled -> projection, cosine
    px = c.processor(images=[im, other], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        pooled = c.model.vision_model(pixel_values=px).pooler_output
        e = torch.nn.functional.normalize(c.model.visual_projection(pooled), dim=-1)
    assert sim[1] == pytest.approx(float(e[0] @ e[1]), abs=1e-5)


# ----------------------------------------------------------------------- codec
@pytest.fixture(scope="module")
def codec():
    return MultiScCodec.default(MultiScConfig(slice_side=48, slice_bytes=300), segmenter=_FixedMask())


def test_codec_roundtrip_and_splits(codec):
    im = _photo()
    p = codec.encode(im)
    assert len(p.captions) == len(p.regions) >= 1 and len(p.slice_data) <= HEADER + 300
    r = codec.decode(p.slice_data, (), p.captions)
    assert r.shape == im.shape[:2] and r.slice_box.as_list() == p.slice_box.as_list() and not r.slice_erased
    assert r.captions_corrected == p.captions  # clean captions survive the corrector
    h, w = im.shape[:2]
    assert p.slice_box.x0 <= w // 4 and p.slice_box.x1 >= w // 2  # the mask's object is inside the slice
    for split in ("random", "single"):
        c2 = MultiScCodec(codec.segmenter, codec.detector, codec.vlm, codec.corrector, MultiScConfig(split=split))
        q = c2.encode(im)
        assert len(q.captions) == (1 if split == "single" else len(p.regions))


def test_codec_erasures_and_bad_input(codec):
    from gr_semcom.semantic.images import ImageError

    im = _photo()
    p = codec.encode(im)
    r = codec.decode(p.slice_data, [(HEADER + 10, len(p.slice_data))], ["", None])
    assert r.captions_received == ["", ""] and r.slice_image.shape == (48, 48, 3)
    r = codec.decode(p.slice_data, [(0, 4)], p.captions)
    assert r.slice_erased and any("header" in e for e in r.errors)
    r = codec.decode(None, (), [])
    assert r.slice_erased
    with pytest.raises(ImageError):
        codec.encode(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ImageError):
        codec.encode(np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError):
        MultiScConfig(split="nope")


@pytest.mark.parametrize("mode", ["uncoded", "digital"])
def test_cbr_budget_is_met_at_every_snr(codec, mode):
    """The same-budget rule: slice PDU + captions fit CBR x 3HW channel uses,
    from -3 dB (BPSK 1/4: no room for a JPEG 2000 slice, the header alone
    goes) to 15 dB (the slice reaches its --slice-bytes cap)."""
    from gr_semcom.blocks.analog import analog_spec
    from gr_semcom.blocks.multisc_blocks import caption_uses, slice_budget
    from gr_semcom.phy.mcs import pdu_channel_uses
    from gr_semcom.systems.multisc import multisc_phy

    im = _photo()
    h, w = im.shape[:2]
    sizes = {}
    aspec = analog_spec(codewords=1)
    for esn0 in (-3.0, 0.0, 3.0, 9.0, 15.0):
        for cbr in (1 / 30, 1 / 60):
            spec = multisc_phy(im, esn0, cbr, text_mode=mode)
            b = slice_budget(im.shape[:2], cbr, spec, aspec, mode)
            p = codec.encode(im, b)
            uses = (pdu_channel_uses(len(p.slice_data), spec) if p.slice_data else 0) + sum(
                caption_uses(c, mode, spec, aspec) for c in p.captions)
            assert uses <= b.channel_uses == int(cbr * 3 * h * w), (esn0, cbr, uses)
            assert 1 <= len(p.captions) == len(p.regions)
            assert len(p.slice_data) <= HEADER + 300
            sizes[esn0, cbr] = len(p.slice_data)
            r = codec.decode(p.slice_data, (), p.captions)  # a header-only slice decodes to grey, no crash
            assert r.shape == (h, w) and (r.slice_erased == (len(p.slice_data) <= HEADER))
    assert sizes[15.0, 1 / 30] > HEADER + 100 and sizes[-3.0, 1 / 30] <= sizes[15.0, 1 / 30]
    # the header survived but the slice side differs from the receiver's default (or the header was
    # lost): the metrics compare at the sent size
    from gr_semcom.systems.multisc import MultiScResult, multisc_metrics

    p = codec.encode(im, lambda caps: (len(caps), 40 + HEADER))  # room for no JPEG 2000 slice: header only
    assert len(p.slice_data) == HEADER and p.fields[1]["side"] == 48
    r = codec.decode(p.slice_data, [(0, HEADER)], p.captions)
    m = multisc_metrics(MultiScResult(p, r, {}, [], {}), im)
    assert math.isfinite(m["slice_psnr"]) and r.slice_erased
    p.slice_image = p.slice_image[:16, :16]  # a sender that shrank the slice
    assert math.isfinite(multisc_metrics(MultiScResult(p, r, {}, [], {}), im)["slice_psnr"])
    # a budget that does not even carry the header sends no slice PDU
    p = codec.encode(im, lambda caps: (1, None))
    assert p.slice_data == b"" and len(p.captions) == 1
    assert codec.decode(None, (), p.captions).slice_erased


# ------------------------------------------------------------------ over the GNU Radio chain
@pytest.mark.parametrize("snr,mode", [(15.0, "uncoded"), (15.0, "digital")])
def test_link_delivers_captions_and_slice(codec, snr, mode):
    pytest.importorskip("gnuradio")
    from gr_semcom.systems.multisc import run_multisc
    from gr_semcom.phy.channel import ChannelSpec

    im = _photo()
    res = run_multisc(codec, im, ChannelSpec(model="awgn", esn0_db=snr, seed=2), text_mode=mode, timeout=30)
    p = res.payload
    assert res.recon.captions_received == p.captions
    assert all(c["received"] and c["mode"] == mode for c in res.captions_link)
    assert res.metrics["caption_bleu_raw"] == pytest.approx(100)
    assert not res.recon.slice_erased and res.metrics["slice_psnr"] > 15
    assert res.metrics["cbr"] == pytest.approx(res.channel_uses / (3 * im.size / 3)) and res.metrics["cbr"] <= 1 / 30
    assert math.isnan(res.metrics["clip_before"])  # no CLIP weights given
    if mode == "digital":  # the captions' PDUs crossed the slice's PHY behind it, each frame accounted for
        assert all(c["frames_sent"] >= 1 and c["bler"] == 0 for c in res.captions_link)


def test_link_low_snr_misspells_and_correction_helps(codec):
    pytest.importorskip("gnuradio")
    from gr_semcom.systems.multisc import run_multisc
    from gr_semcom.phy.channel import ChannelSpec

    im = _photo()
    res = run_multisc(codec, im, ChannelSpec(model="awgn", esn0_db=5.0, seed=4), timeout=30)
    m = res.metrics
    assert m["caption_cer_raw"] > 0.02
    assert m["caption_cer_corrected"] < m["caption_cer_raw"]
    assert m["caption_bleu_corrected"] > m["caption_bleu_raw"]


def test_link_meets_the_budget_at_minus_3_db(codec):
    pytest.importorskip("gnuradio")
    from gr_semcom.systems.multisc import run_multisc
    from gr_semcom.phy.channel import ChannelSpec

    im = _photo()
    res = run_multisc(codec, im, ChannelSpec(model="awgn", esn0_db=-3.0, seed=1), timeout=30)
    p = res.payload
    assert res.channel_uses <= res.metrics["budget_channel_uses"] and res.metrics["cbr"] <= 1 / 30
    # every slice frame accounted for, BLER from the counts, and the bytes that came out agree with it
    lk = res.link
    assert lk["frames_ok"] + lk["frames_crc_fail"] + lk["frames_undetected"] == lk["frames_sent"] >= 1
    assert sum(lk["outcome_counts"].values()) == lk["frames_sent"]
    assert lk["outcome_counts"].get("ok", 0) == lk["frames_ok"]
    assert lk["bler"] == pytest.approx(1 - lk["frames_ok"] / lk["frames_sent"])
    assert (lk["bler"] == 0) == (lk["erased_fraction"] == 0) == (not lk["missing"])
    if lk["bler"] == 0:  # the slice arrived whole: the receiver's slice is the sent PDU's, decoded
        clean = codec.decode(p.slice_data, (), p.captions)
        assert not res.recon.slice_erased and np.array_equal(res.recon.slice_image, clean.slice_image)
    assert res.metrics["captions"] == len(p.captions) and res.recon.slice_image.ndim == 3


def test_cli_transmit_multisc_with_tiny_generator(tmp_path):
    pytest.importorskip("gnuradio")
    out = tmp_path / "ms"
    r = subprocess.run([sys.executable, "-m", "gr_semcom.cli", "transmit", CHELSEA, "--scheme", "multisc", "--snr",
                        "12", "--out", str(out), "--generator", "tiny", "--steps", "2", "--timeout", "30"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    for f in ("metrics.json", "captions.txt", "regions.png", "region_1.png", "slice_sent.png", "slice_received.png",
              "before_generation.png", "generated.png"):
        assert (out / f).is_file(), f
    s = json.loads((out / "metrics.json").read_text())
    assert s["generated"] and s["captions"][0]["sent"] and "corrected" in s["captions"][0]
    assert s["payload"]["slice_bytes"] > 0 and np.isfinite(s["metrics"]["lpips"])


def test_cli_multisc_generator_down_is_reported(tmp_path):
    pytest.importorskip("gnuradio")
    out = tmp_path / "ms"
    r = subprocess.run([sys.executable, "-m", "gr_semcom.cli", "transmit", CHELSEA, "--scheme", "multisc", "--snr",
                        "12", "--out", str(out), "--generator", "tcp://127.0.0.1:5", "--generator-timeout", "1",
                        "--timeout", "30"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads((out / "metrics.json").read_text())
    assert not s["generated"] and s["generator_error"]
    assert "none (" in r.stdout


def test_multisc_blocks_in_a_flowgraph(tmp_path):
    """image_source -> multisc_encoder -> slice via phy_tx/phy_rx, captions via
    analog_tx/analog_rx (uncoded QPSK), each over its own channel -> multisc_decoder
    -> a generator_client-ready PDU; a bad file is reported, the rest goes on."""
    pytest.importorskip("gnuradio")
    import time

    import pmt
    from gnuradio import gr

    from gr_semcom.blocks.analog import analog_rx, analog_spec, analog_tx
    from gr_semcom.blocks.generator_blocks import request_from_pdu
    from gr_semcom.blocks.multisc_blocks import multisc_decoder, multisc_encoder
    from gr_semcom.blocks.pdu_util import pdu_parts
    from gr_semcom.blocks.phy_hier import phy_rx, phy_tx
    from gr_semcom.blocks.ulbsc_blocks import image_source
    from gr_semcom.phy.channel import ChannelSpec, make_channel
    from gr_semcom.phy.frame import FrameSpec
    from gr_semcom.link.sim import _collector

    (tmp_path / "a_bad.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "b_cat.jpg").write_bytes(open(CHELSEA, "rb").read())
    spec, aspec = FrameSpec(modulation="qpsk", code_rate="1/2", codewords=1), analog_spec(codewords=1)
    tb = gr.top_block()
    src = image_source(str(tmp_path), interval=0.2)
    enc = multisc_encoder(text_mode="uncoded", slice_side=48, slice_bytes=300)
    tx, ch, rx = phy_tx(spec), make_channel(ChannelSpec(model="awgn", esn0_db=14, seed=1), spec.sps), phy_rx(spec)
    atx = analog_tx(aspec)
    ach = make_channel(ChannelSpec(model="awgn", esn0_db=14, seed=2), aspec.sps)
    arx = analog_rx(aspec, n_symbols=0)
    dec = multisc_decoder(slice_side=48)
    got, status, sent = _collector("got"), _collector("status"), _collector("sent")
    tb.msg_connect(src, "out", enc, "in")
    tb.msg_connect(enc, "slice", tx, "in")
    tb.msg_connect(enc, "captions", atx, "in")
    tb.msg_connect(enc, "captions", sent, "in")
    tb.msg_connect(enc, "status", status, "in")
    tb.connect(tx, ch, rx)
    tb.connect(atx, ach, arx)
    tb.msg_connect(rx, "out", dec, "slice")
    tb.msg_connect(arx, "out", dec, "captions")
    tb.msg_connect(dec, "out", got, "in")
    tb.start()
    try:
        t = time.monotonic() + 90
        while time.monotonic() < t and not got.items:
            time.sleep(0.1)
    finally:
        tb.stop()
        tb.wait()
    assert got.items, [pmt.to_python(s) for s in status.items]
    assert any("encode_error" in str(pmt.to_python(s)) for s in status.items)
    meta, data = pdu_parts(got.items[0])
    want = [pmt.to_python(pmt.car(m))["caption"] for m in sent.items]
    assert list(meta["captions_received"]) == want
    assert not meta["slice_erased"] and list(meta["slice_box"])[2] > 0
    req = request_from_pdu(meta, data)  # what generator_client sends to the bridge
    assert req.image_prompt.shape == (48, 48, 3) and req.prompt
