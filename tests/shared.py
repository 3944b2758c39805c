"""Helpers several test files use (fixtures are in conftest.py)."""
from __future__ import annotations

import socket
import time

import numpy as np


def wait_for(pred, timeout: float = 20.0, poll: float = 0.01) -> bool:
    """Poll ``pred()`` until it is true or ``timeout`` seconds pass; returns
    its last value (for flowgraph tests that wait on a block's counters)."""
    t0 = time.monotonic()
    while not pred() and time.monotonic() - t0 < timeout:
        time.sleep(poll)
    return bool(pred())


def allzero_llrs(code, esn0_db: float, b: int, rng) -> np.ndarray:
    """Exact BPSK-per-dimension LLRs (float32, log P0/P1) of ``b`` all-zero
    codewords of ``code`` at Es/N0 ``esn0_db`` (belief propagation is
    symmetric in the codeword), the first codeword's first three erased (NaN)
    and saturated (inf, the sent bit 0): what the LDPC decoders' tests feed."""
    s2 = 1 / (2 * 10 ** (esn0_db / 10))
    a = 1 / np.sqrt(2)
    y = a + np.sqrt(s2) * rng.standard_normal((b, code.n))
    L = (2 * a * y / s2).astype(np.float32)
    L[0, :3] = [np.nan, np.inf, np.nan]
    return L


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def photo(seed=0, h=128, w=192) -> np.ndarray:
    """Smooth random colour field (compressible, like a photo)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 16, w // 16, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC))
