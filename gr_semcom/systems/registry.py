"""The one scheme registry: every name `semcom transmit --scheme`, `semcom
sweep --schemes`, the benchmarks and the docs use, with its plot label and
colour and what it is."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scheme:
    name: str
    label: str
    colour: str
    kind: str  # "image": reconstructs the image at a CBR budget; "semantic": sends semantic fields
    system: str  # the module of gr_semcom.systems that runs it
    doc: str


SCHEMES: dict[str, Scheme] = {s.name: s for s in (
    Scheme("seb", "Seb", "C3", "image", "images", "semantic-base patch codec with residual coding (Seb)"),
    Scheme("hyperprior", "DL w/o corr. (hyperprior)", "C0", "image", "images",
           "the scale hyperprior alone: Seb's 'DL w/o corr.' baseline"),
    Scheme("jpeg2000", "JPEG2000 + LDPC", "C2", "image", "images", "JPEG2000 at the byte budget over LDPC + QAM"),
    Scheme("deepjscc", "DeepJSCC (analog)", "C1", "image", "images", "deep joint source-channel code, analog burst"),
    Scheme("ulbsc", "ULBSC", "C7", "semantic", "ulbsc", "caption + saliency codebook index (ULBSC)"),
    Scheme("caption-only", "caption only", "C8", "semantic", "ulbsc",
           "ULBSC's caption field alone; the receiver's map is the codebook prior ('OnlyCaption')"),
    Scheme("multisc", "Multi-SC, feature fusion", "C4", "semantic", "multisc",
           "main-object slice + one caption per fused region (Multi-SC)"),
    Scheme("multisc-random", "Multi-SC, random split", "C5", "semantic", "multisc", "Multi-SC with a random split"),
    Scheme("multisc-single", "single caption + slice", "C6", "semantic", "multisc", "Multi-SC with one caption"),
)}
IMAGE_SCHEMES = tuple(n for n, s in SCHEMES.items() if s.kind == "image")
SEMANTIC_SCHEMES = tuple(n for n, s in SCHEMES.items() if s.kind == "semantic")
#: the Multi-SC split each Multi-SC scheme uses
MULTISC_SPLITS = {"multisc": "fusion", "multisc-random": "random", "multisc-single": "single"}
#: what `semcom transmit --scheme` takes: the registry, plus raw bytes
TRANSMIT_SCHEMES = ("file", "ulbsc", "multisc") + IMAGE_SCHEMES


def scheme(name: str) -> Scheme:
    try:
        return SCHEMES[name]
    except KeyError:
        raise ValueError(f"unknown scheme {name!r}; available: {', '.join(SCHEMES)}") from None
