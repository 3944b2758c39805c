"""What every layer may import: the repository's folders and the payload-type
byte each system writes into the frame header (phy/framing.py carries it
as an opaque u8; nothing below this module knows what the values mean).

Nothing here imports anything of gr_semcom, GNU Radio or torch."""
from __future__ import annotations

import enum
import os
from pathlib import Path

#: the checkout (or installed tree) gr_semcom runs from
REPO = Path(__file__).resolve().parents[1]
#: shipped weights (safetensors + model cards); GR_SEMCOM_MODELS overrides it
MODELS = Path(os.environ.get("GR_SEMCOM_MODELS", REPO / "models"))
EXAMPLES = REPO / "examples"
#: converted third-party weights (LPIPS, DISTS, detectors), made by scripts/setup.sh, not in git
THIRD_PARTY = MODELS / "third_party"


def model_path(name: str, file: str = "model.safetensors") -> Path:
    """``models/<name>/<file>``."""
    return MODELS / name / file


def checkout_dir() -> Path | None:
    """The gr_semcom checkout this package runs from (editable install), or None."""
    return REPO if (REPO / "pyproject.toml").is_file() and (REPO / "flowgraphs").is_dir() else None


class PayloadType(enum.IntEnum):
    """The frame header's ``payload_type`` byte: which semantic field a PDU is."""

    FILE = 0x01  # raw bytes (`semcom transmit FILE`, recordings)
    J2K = 0x4A  # JPEG2000 code stream
    ULBSC = 0x51  # ULBSC payload: caption + saliency indices
    CAPTION = 0x52  # a caption field alone (ULBSC's caption-only baseline)
    SEB_SET = 0x53  # Seb set packet: semantic bases
    SEB_IMAGE = 0x54  # Seb / hyperprior image packet
    MULTISC_SLICE = 0x61  # Multi-SC main-object slice
    MULTISC_CAPTIONS = 0x62  # Multi-SC region captions (digital text mode)
