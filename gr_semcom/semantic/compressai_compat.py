"""Import compressai's GDN layers and entropy models next to the CPU torch.

compressai's top-level ``__init__`` imports its registry, which imports
``torchvision.transforms`` and ``torch_geometric`` only to list transform
names. No torchvision wheel on PyPI loads against the CPU build of
torch 2.13 here (``operator torchvision::nms does not exist``), so the normal
``import compressai`` fails although the parts a codec needs -- ``layers``
(GDN), ``entropy_models`` (EntropyBottleneck, GaussianConditional), ``ops``
and the compiled rANS coder -- use nothing but torch, numpy and scipy.

:func:`load` tries the normal import first (it works wherever torchvision
does). Otherwise it registers the ``compressai`` package *without running its
``__init__``* (a module object whose ``__path__`` is the installed package
directory) and defines the three entropy-coder selection functions that
``entropy_models`` calls (its own ``__init__``'s, with the one coder compressai
always ships, "ans"). Nothing of compressai is copied here.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types

_ENTROPY_CODER = "ans"


def _minimal_package() -> None:
    spec = importlib.util.find_spec("compressai")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("compressai is not installed: pip install --no-deps compressai "
                          "(scripts/setup.sh does this)")
    pkg = types.ModuleType("compressai")
    pkg.__spec__ = spec
    pkg.__file__ = spec.origin
    pkg.__path__ = list(spec.submodule_search_locations)
    pkg.__package__ = "compressai"
    pkg._entropy_coder = _ENTROPY_CODER
    pkg._available_entropy_coders = [_ENTROPY_CODER]
    pkg.get_entropy_coder = lambda: _ENTROPY_CODER
    pkg.available_entropy_coders = lambda: [_ENTROPY_CODER]

    def set_entropy_coder(name):
        if name != _ENTROPY_CODER:
            raise ValueError(f"entropy coder {name!r} not available (only {_ENTROPY_CODER!r})")

    pkg.set_entropy_coder = set_entropy_coder
    sys.modules["compressai"] = pkg


def load():
    """Return ``(layers, entropy_models)`` modules of compressai."""
    if "compressai.entropy_models" not in sys.modules:
        try:
            importlib.import_module("compressai")
        except Exception:  # torchvision / torch_geometric missing or built for another torch
            for name in [m for m in sys.modules if m == "compressai" or m.startswith("compressai.")]:
                del sys.modules[name]
            _minimal_package()
    layers = importlib.import_module("compressai.layers")
    entropy_models = importlib.import_module("compressai.entropy_models")
    return layers, entropy_models


def scale_table(smin: float = 0.11, smax: float = 256.0, levels: int = 64):
    """Log-spaced scale table of the Gaussian conditional (Ballé et al. 2018's
    values, as compressai's hyperprior models use)."""
    import math

    import torch

    return torch.exp(torch.linspace(math.log(smin), math.log(smax), levels))
