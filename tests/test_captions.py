"""Captions that name things (issue 20): ObjectCaptioner's grammar on given
detections, the captioner chosen by make_captioner('auto'), Multi-SC's
detection split with centre-distance fusion (eq. 9) and its fallback, and
bad input (no detection, 100 detections, a 1x1 image)."""
from __future__ import annotations

import numpy as np
import pytest

from gr_semcom.semantic.captioner import (ObjectCaptioner, count_phrase, make_captioner, place_phrase,
                                          plural)
from gr_semcom.semantic.detect.centernet import CenterNetDetector
from gr_semcom.semantic.multisc.regions import Box, DetectionSplit, ProposalDetector, fuse

needs_model = pytest.mark.skipif(not CenterNetDetector.available(),
                                 reason="models/third_party/centernet_coco.onnx not made (bash scripts/setup.sh)")


class _Fixed:
    """A detector that returns the boxes it was given."""

    name = "fixed"

    def __init__(self, boxes):
        self.boxes = boxes

    def __call__(self, image):
        return list(self.boxes)


def _scene():
    im = np.full((100, 200, 3), 240, np.uint8)  # white picture
    im[20:80, 10:50] = (200, 30, 30)  # two red things on the left
    im[20:80, 55:70] = (200, 30, 30)
    return im


def test_grammar_counts_plurals_places():
    assert [plural(w) for w in ("dog", "person", "bus", "knife", "dining table", "sheep", "mouse", "toothbrush")] \
        == ["dogs", "people", "buses", "knives", "dining tables", "sheep", "mice", "toothbrushes"]
    assert [count_phrase("dog", n) for n in (1, 2, 4, 9)] == ["a dog", "two dogs", "four dogs", "many dogs"]
    assert count_phrase("umbrella", 1) == "an umbrella"
    assert place_phrase(0.1, 0.5) == "on the left" and place_phrase(0.9, 0.1) == "at the top right"
    assert place_phrase(0.5, 0.5) == "in the center"


def test_caption_from_detections():
    im = _scene()
    dets = [Box(10, 20, 50, 80, 0.9, "dog"), Box(55, 20, 70, 80, 0.6, "dog")]
    cap = ObjectCaptioner(_Fixed(dets))
    assert cap(im) == "two red dogs on the left, white background"
    assert cap.last_source == "objects"
    # a thing on a support class is the subject, the support says where; others follow with 'with'
    dets2 = [Box(0, 0, 200, 100, 0.5, "dining table"), Box(90, 30, 110, 60, 0.6, "cup"),
             Box(150, 10, 160, 20, 0.4, "person")]  # area x score: cup 360, person 40
    assert cap.caption_from(im, dets2) == "a white cup in the center on a table with a person"
    assert ObjectCaptioner(_Fixed([Box(0, 0, 200, 100, 0.9, "person")]))(im) == "a close up of a person"  # no colour


def test_no_detection_gives_the_colour_caption():
    cap = ObjectCaptioner(_Fixed([]))
    im = np.zeros((50, 50, 3), np.uint8)
    im[:, 25:] = (40, 80, 200)
    assert cap(im) == "a picture mostly black and blue"
    assert cap.last_source == "attributes"
    assert ObjectCaptioner(_Fixed([Box(0, 0, 5, 5, 0.1, "dog")]), threshold=0.3)(im).startswith("a picture")


def test_hundred_detections_and_one_pixel():
    rng = np.random.default_rng(0)
    from gr_semcom.semantic.detect.centernet import COCO_CLASSES

    boxes = []
    for i in range(100):
        x0, y0 = (int(v) for v in rng.integers(0, 150, 2))
        boxes.append(Box(x0, y0, x0 + int(rng.integers(1, 50)), y0 + int(rng.integers(1, 50)), 0.31 + i * 1e-3,
                         COCO_CLASSES[i % 80]))
    im = rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)
    cap = ObjectCaptioner(_Fixed(boxes))
    text = cap(im)
    assert 4 <= len(text.split()) <= 30 and text.count(" with ") == 1  # three kinds at most
    one = np.full((1, 1, 3), 77, np.uint8)
    assert cap(one)  # boxes out of the picture: none named
    assert ObjectCaptioner(_Fixed([]))(np.full((1, 1, 3), 128, np.uint8)) == "a picture mostly gray"
    assert ObjectCaptioner(_Fixed([])).describe(one, Box(0, 0, 1, 1), (1, 1), 0.0)
    # the split: 100 detections are cut to the best k before fusion, 1x1 gives the whole picture
    split = DetectionSplit(_Fixed(boxes), k=8)
    got = split(im)
    assert len(got) == 8 and [b.score for b in got] == sorted((b.score for b in boxes), reverse=True)[:8]
    assert DetectionSplit(_Fixed([]))(one) == [Box(0, 0, 1, 1, 1.0, "image")]


def test_split_falls_back_to_proposals_when_nothing_is_detected():
    from skimage import data

    im = data.coffee()[::2, ::2].copy()
    split = DetectionSplit(_Fixed([]))
    assert split(im) == ProposalDetector()(im) and split.last_source == "proposals"
    dets = [Box(10, 10, 60, 60, 0.8, "cup")]
    split = DetectionSplit(_Fixed(dets + [Box(0, 0, 5, 5, 0.1, "dog")]))
    assert split(im) == dets and split.last_source == "fixed"  # below threshold dropped


def test_multisc_regions_are_fused_detections():
    """Multi-SC's split with a detector: eq. 9 fusion (centre distance < eps *
    diagonal) of exactly the detections, computed here by hand for three boxes."""
    from gr_semcom.semantic.multisc.codec import MultiScCodec, MultiScConfig

    a, b, c = Box(0, 0, 40, 40, 0.9, "dog"), Box(20, 10, 60, 50, 0.8, "dog"), Box(150, 60, 190, 95, 0.7, "cup")
    codec = MultiScCodec(None, DetectionSplit(_Fixed([a, b, c])), ObjectCaptioner(_Fixed([])), None,
                         MultiScConfig(eps=0.25))
    regs, dets = codec.regions(np.zeros((100, 200, 3), np.uint8), np.random.default_rng(0))
    # |centre(a) - centre(b)| = hypot(20, 10) = 22.4 < 0.25 * hypot(100, 200) = 55.9 -> merged; c is far
    assert dets == [a, b, c]
    assert regs == [Box(0, 0, 60, 50, 0.9, "dog+dog"), c] == fuse([a, b, c], 0.25 * np.hypot(100, 200))
    cap = codec.vlm.describe(np.full((50, 60, 3), (200, 30, 30), np.uint8), regs[0], (100, 200), 0.0)
    assert cap == "two red dogs at the top left of the picture"  # centre (30, 25) of 200 x 100


@needs_model
def test_auto_captioner_names_objects_of_real_photos(monkeypatch, tmp_path):
    from skimage import data

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # no BLIP weights there
    cap = make_captioner("auto")
    assert cap.name == "objects:centernet-coco"
    for im, word in ((data.astronaut(), "person"), (data.coffee(), "cup"), (data.stereo_motorcycle()[0], "motorcycle")):
        text = cap(im)
        assert word in text.replace(",", " ").split(), text
    monkeypatch.setenv("GR_SEMCOM_CENTERNET", str(tmp_path / "missing.onnx"))
    fb = make_captioner("auto")
    assert fb.name == "attributes" and fb(data.coffee()).startswith("a ")
    assert make_captioner("auto", caption="given").name == "fixed"


@needs_model
def test_multisc_default_split_uses_the_detector():
    from skimage import data

    from gr_semcom.semantic.multisc.codec import MultiScCodec, MultiScConfig

    class _Mask:
        name = "fixed"

        def __call__(self, im):
            m = np.zeros(im.shape[:2], np.float32)
            m[im.shape[0] // 4: 3 * im.shape[0] // 4, im.shape[1] // 4: 3 * im.shape[1] // 4] = 1
            return m

    codec = MultiScCodec.default(MultiScConfig(slice_side=32, slice_bytes=200), segmenter=_Mask())
    assert codec.detector.name == "centernet-coco|proposals" and codec.vlm.name == "objects:centernet-coco"
    p = codec.encode(data.coffee())
    assert [b.label for b in p.detections] == ["cup", "dining table"]
    assert p.meta()["captioner"] == "objects:centernet-coco" and p.meta()["split_source"] == "centernet-coco"
    assert "cup" in " ".join(p.captions).split()
    # nothing to detect in a flat picture: proposals (or the whole picture) and a caption still come back
    flat = np.full((64, 64, 3), 128, np.uint8)
    p = codec.encode(flat)
    assert p.regions and len(p.captions) == len(p.regions) and all(p.captions)
    assert p.split_source == "proposals"


def test_synthetic_object_captions_fit_deepsc():
    from gr_semcom.semantic.captioner import synthetic_object_captions
    from gr_semcom.semantic.data import normalise_text

    a = synthetic_object_captions(40, seed=3)
    assert a == synthetic_object_captions(40, seed=3) and a != synthetic_object_captions(40, seed=4)
    assert all(4 <= len(normalise_text(s).split()) <= 22 for s in a)  # DeepSC max_len 24 with <start>/<end>
    assert any(" background" in s for s in a) and any("of the picture" in s for s in a)
