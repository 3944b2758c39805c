"""Seb checkpoints: safetensors (weights + JSON config), no pickle. The
entropy coders' CDF tables are not stored: they are rebuilt by
``SebNet.update()`` from the learned parameters at load time, so a file holds
only fixed-shape tensors."""
from __future__ import annotations

from pathlib import Path

KIND = "SebNet"
_DERIVED = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")


def save_net(net, path, **fields) -> None:
    from ..weights import save_checkpoint

    class _View:  # state_dict without the derived CDF buffers
        def state_dict(self_inner):
            return {k: v.detach().cpu() for k, v in net.state_dict().items() if not k.endswith(_DERIVED)}

    save_checkpoint(_View(), path, KIND, net.config_dict(), **fields)


def load_net(path):
    """SebNet from a checkpoint written by :func:`save_net`, entropy coders built."""
    from ..weights import load_checkpoint
    from .model import SebConfig, SebNet

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Seb weights not found: {p} (train them with `semcom train seb`, "
                             "see models/seb_*/README.md)")
    meta, state = load_checkpoint(p, KIND)
    net = SebNet(SebConfig(**meta["config"]))
    res = net.load_state_dict(state, strict=False)
    bad = [k for k in res.missing_keys if not k.endswith(_DERIVED)]
    if bad or res.unexpected_keys:
        raise ValueError(f"{p}: weights do not match the config (missing {bad[:5]}, "
                         f"unexpected {res.unexpected_keys[:5]})")
    net.update()
    net.eval()
    return net
