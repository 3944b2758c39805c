"""What every learned-codec training run shares (issue 19): device and mixed
precision, resumable checkpoints (safetensors for the tensors + a small
JSON state), the learning curve (CSV + PNG), a progress bar, a wall-clock
limit. No pickle: optimizer moments and RNG states are tensors in a
safetensors file, the rest is JSON.

Layout of ``OUT`` (a model directory such as ``models/hyperprior_lam32``):

* ``model.safetensors``: the weights of the last evaluation (what the codec loads);
* ``checkpoint/train.safetensors`` + ``checkpoint/state.json``: weights,
  Adam moments, torch RNG state; step, numpy RNG state, seconds so far, the
  arguments of the run (a later run with ``resume=True`` continues from them);
* ``learning_curve.csv`` / ``learning_curve.png``: validation PSNR and bpp vs step.
"""
from __future__ import annotations

import contextlib
import csv
import json
import math
import time
from pathlib import Path

import numpy as np

CURVE = "learning_curve.csv"


def pick_device(device: str | None):
    import torch

    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    d = torch.device(device)
    if d.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but torch sees no CUDA device")
    return d


def autocast(device, amp: bool):
    """bfloat16 autocast on CUDA when ``amp`` (no loss scaling needed), else nothing.
    The entropy models switch it off for themselves (seb.model.fp32)."""
    import torch

    if not amp or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16)


def cosine_lr(step: int, steps: int, lr: float, warmup: int = 0, floor: float = 0.01, start: int = 0) -> float:
    """Learning rate at ``step`` of a cosine schedule from ``lr`` to ``floor*lr``
    over ``steps`` (a function of the step, so a resumed run with more steps
    simply continues the stretched schedule), times a linear warm-up over
    ``warmup`` steps from ``start`` (a fresh fine-tune, or a resume without
    the optimizer moments)."""
    t = min(1.0, step / max(1, steps))
    base = lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))
    if warmup and start <= step < start + warmup:
        return base * (step - start + 1) / warmup
    return base


def _opt_tensors(opt, names: dict) -> dict:
    out = {}
    for p, st in opt.state.items():
        n = names[id(p)]
        for k, v in st.items():
            if hasattr(v, "shape"):
                out[f"opt.{n}.{k}"] = v.detach().cpu().contiguous()
    return out


def save_checkpoint(out: Path, net, opts: dict, state: dict) -> None:
    """Atomic write of checkpoint/train.safetensors + checkpoint/state.json."""
    import torch
    from safetensors.torch import save_file

    ck = out / "checkpoint"
    ck.mkdir(parents=True, exist_ok=True)
    names = {id(p): n for n, p in net.named_parameters()}
    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    for tag, opt in opts.items():
        tensors.update({f"{tag}.{k}": v for k, v in _opt_tensors(opt, names).items()})
    tensors["rng.torch"] = torch.get_rng_state()
    tmp = ck / "train.safetensors.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(ck / "train.safetensors")
    (ck / "state.json.tmp").write_text(json.dumps(state, indent=1))
    (ck / "state.json.tmp").replace(ck / "state.json")


def load_checkpoint(out: Path, net, opts: dict) -> dict | None:
    """Restore weights, optimizer moments and RNG from ``out/checkpoint``;
    returns the JSON state, or None when there is no checkpoint."""
    import torch
    from safetensors.torch import load_file

    ck = out / "checkpoint"
    if not (ck / "state.json").is_file() or not (ck / "train.safetensors").is_file():
        return None  # (a committed model directory has state.json + model.safetensors only)
    state = json.loads((ck / "state.json").read_text())
    t = load_file(str(ck / "train.safetensors"))
    dev = next(net.parameters()).device
    own = net.state_dict()
    sd = {k[4:]: v for k, v in t.items() if k.startswith("net.")}
    bad = [k for k in sd if k in own and own[k].shape != sd[k].shape]
    if bad:
        raise ValueError(f"{ck}: checkpoint does not match the model ({bad[:3]}); remove it or pick another --out")
    net.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
    params = dict(net.named_parameters())
    for tag, opt in opts.items():
        pre = f"{tag}.opt."
        for k, v in t.items():
            if not k.startswith(pre):
                continue
            pname, field = k[len(pre):].rsplit(".", 1)
            p = params.get(pname)
            if p is not None:
                opt.state[p][field] = v.to(dev) if field != "step" else v
    if "rng.torch" in t:
        torch.set_rng_state(t["rng.torch"])
    return state


class Curve:
    """learning_curve.csv (append, resumable) and its PNG."""

    def __init__(self, out: Path, fields: list[str]):
        self.path = out / CURVE
        self.fields = fields

    def rows(self) -> list[dict]:
        if not self.path.is_file():
            return []
        with self.path.open() as f:
            return [dict(r) for r in csv.DictReader(f)]

    def truncate(self, step: int) -> None:
        """Drop rows after ``step`` (a resumed run repeats steps a crash lost)."""
        rows = [r for r in self.rows() if int(r["step"]) <= step]
        with self.path.open("w", newline="") as f:
            w = csv.DictWriter(f, self.fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)

    def add(self, row: dict) -> None:
        new = not self.path.is_file()
        with self.path.open("a", newline="") as f:
            w = csv.DictWriter(f, self.fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)

    def plot(self, title: str) -> Path | None:
        rows = self.rows()
        if not rows:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        st = np.array([float(r["step"]) for r in rows])
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
        ax[0].plot(st, [float(r["val_psnr"]) for r in rows], "o-", ms=3)
        ax[0].set_xlabel("step")
        ax[0].set_ylabel("validation PSNR (dB)")
        ax[0].grid(alpha=0.3)
        if "val_bpp" in self.fields and rows[0].get("val_bpp") not in (None, ""):
            ax[1].plot(st, [float(r["val_bpp"]) for r in rows], "o-", ms=3, color="C1")
            ax[1].set_ylabel("validation bpp (estimated)")
        else:
            tl = [(float(r["step"]), float(r["train_loss"])) for r in rows if r.get("train_loss") not in (None, "")]
            ax[1].plot([a for a, _ in tl], [b for _, b in tl], "o-", ms=3, color="C1")
            ax[1].set_ylabel("training loss")
        ax[1].set_xlabel("step")
        ax[1].grid(alpha=0.3)
        fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        p = self.path.with_suffix(".png")
        fig.savefig(p, dpi=90)
        plt.close(fig)
        return p


class Clock:
    """Seconds of training so far across resumed runs, and a wall-clock limit."""

    def __init__(self, before: float = 0.0, limit: float | None = None):
        self.t0 = time.monotonic()
        self.before = before
        self.limit = limit

    @property
    def total(self) -> float:
        return self.before + time.monotonic() - self.t0

    def expired(self) -> bool:
        return self.limit is not None and time.monotonic() - self.t0 >= self.limit
