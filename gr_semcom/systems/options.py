"""One options object per system, filled by argparse (``semcom transmit``,
``semcom sweep``) or by a GRC block's parameters, in the manner of
gr-satellites' component options: each field says its command-line flag,
its help text and the GRC parameter it corresponds to, so the CLI is
generated from it and tests/test_options.py checks every GRC block's YAML
against it (same parameter ids, same defaults)."""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from fractions import Fraction


def opt(default, help: str, *, flag: str | None = None, choices=None, grc: str | tuple | None = "",
        type=None, cli: bool = True):
    """A field of an options dataclass. ``flag``: the command-line flag
    (default ``--name-with-dashes``); ``grc``: the GRC parameter id(s) of the
    system's blocks it fills ("" = the field's own name, None = none)."""
    return field(default=default, metadata={"help": help, "flag": flag, "choices": choices, "grc": grc,
                                            "type": type, "cli": cli})


def cbr_value(text) -> float:
    """A CBR given as a number or a fraction (1/30), in (0, 1]."""
    try:
        v = float(Fraction(str(text)))
    except (ValueError, ZeroDivisionError) as exc:
        raise argparse.ArgumentTypeError(f"not a number or fraction: {text!r}") from exc
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"CBR must be in (0, 1], got {text}")
    return v


class Options:
    """Base of the per-system options dataclasses."""

    #: GRC block ids (gr_semcom/blocks/grc/<id>.block.yml) whose parameters these options fill
    GRC_BLOCKS: tuple = ()
    TITLE = ""

    @classmethod
    def flag(cls, f: dataclasses.Field) -> str:
        return f.metadata.get("flag") or "--" + f.name.replace("_", "-")

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, title: str | None = None) -> None:
        """Add a group with one flag per field; flags another group already
        added (``--cbr`` is shared by several systems) are left as they are."""
        g = parser.add_argument_group(title or cls.TITLE)
        taken = getattr(parser, "_option_string_actions", {})
        for f in dataclasses.fields(cls):
            md = f.metadata
            if not md.get("cli", True):
                continue
            fl = cls.flag(f)
            if fl in taken:
                continue
            kw = {"dest": f.metadata.get("dest") or (fl[2:].replace("-", "_") if md.get("flag") else f.name),
                  "default": f.default, "help": md["help"]}
            if isinstance(f.default, bool):
                kw["action"] = argparse.BooleanOptionalAction
            else:
                kw["type"] = md.get("type") or (type(f.default) if f.default is not None else str)
                if md.get("choices"):
                    kw["choices"] = md["choices"]
            g.add_argument(fl, **kw)

    @classmethod
    def from_args(cls, ns: argparse.Namespace, **override):
        kw = {}
        for f in dataclasses.fields(cls):
            dest = cls.flag(f)[2:].replace("-", "_") if f.metadata.get("flag") else f.name
            if hasattr(ns, dest):
                kw[f.name] = getattr(ns, dest)
        kw.update(override)
        return cls(**kw)

    @classmethod
    def grc_params(cls) -> dict:
        """GRC parameter id -> field name, over the system's blocks."""
        out = {}
        for f in dataclasses.fields(cls):
            g = f.metadata.get("grc", "")
            if g is None:
                continue
            for pid in ((g,) if isinstance(g, str) else g):
                out[pid or f.name] = f.name
        return out


@dataclass
class SebOptions(Options):
    """Seb (semantic bases + residual coding) or its hyperprior-alone baseline."""
    TITLE = "Seb / hyperprior (--scheme seb|hyperprior)"
    GRC_BLOCKS = ("gr_semcom_seb_encoder", "gr_semcom_seb_decoder")
    mode: str = opt("seb", "codec: seb or hyperprior", choices=("seb", "hyperprior"), cli=False)
    models: str = opt("", "weights, comma-separated (default: models/seb_lam* or models/hyperprior_lam*)",
                      cli=False)
    cbr: float = opt(1 / 30, "channel uses per source value (3 H W), e.g. 1/30", type=cbr_value)
    set_size: int = opt(4, "images per set (one set packet of semantic bases per set)")
    flush_timeout: float = opt(2.0, "seconds a partial set waits for more images (flowgraphs)", cli=False)
    split: bool = opt(True, "split each set into subsets of similar images (Sec. II-A)", flag="--split-sets")
    seed: int = opt(0, "seed of the set split and the bases' k-means", grc="seed", cli=False)

    def build(self):
        from ..blocks.seb_blocks import make_seb_codec

        return make_seb_codec(self.models, self.mode)


@dataclass
class Jpeg2000Options(Options):
    """The JPEG2000 + LDPC baseline."""
    TITLE = "JPEG2000 + LDPC (--scheme jpeg2000)"
    GRC_BLOCKS = ("gr_semcom_jpeg2000_encoder",)
    cbr: float = opt(1 / 30, "channel uses per source value (3 H W), e.g. 1/30", type=cbr_value)


@dataclass
class DeepJsccOptions(Options):
    """The DeepJSCC baseline (analog)."""
    TITLE = "DeepJSCC (--scheme deepjscc)"
    GRC_BLOCKS = ("gr_semcom_deepjscc_encoder", "gr_semcom_deepjscc_decoder")
    models: str = opt("", "weights (default models/image_deepjscc)", cli=False)
    cbr: float = opt(1 / 30, "channel uses per source value (3 H W), e.g. 1/30", type=cbr_value)

    def build(self):
        from ..blocks.deepjscc_blocks import load_deepjscc

        return load_deepjscc(self.models)


@dataclass
class UlbscOptions(Options):
    """ULBSC: caption + saliency codebook index."""
    TITLE = "ULBSC (--scheme ulbsc)"
    GRC_BLOCKS = ("gr_semcom_ulbsc_encoder", "gr_semcom_ulbsc_decoder")
    caption_mode: str = opt("digital", "caption as UTF-8 through LDPC+QAM, or as DeepSC symbols on an analog burst",
                            choices=("digital", "analog"))
    caption: str = opt("", "use this caption instead of a captioner")
    captioner: str = opt("auto", "auto: IMAGE.txt next to the image, else BLIP if its weights exist, else the "
                                 "offline COCO object captioner", choices=("auto", "blip", "sidecar", "objects",
                                                                            "attributes"))
    blip_model: str = opt("", "BLIP directory or HF id (local files / HF cache only; default Salesforce/blip-"
                              "image-captioning-base)")
    saliency: str = opt("auto", "saliency detector", choices=("auto", "u2netp", "spectral"))
    vq: str = opt("", "saliency VQ weights (default models/ulbsc_saliency_vq)")
    deepsc: str = opt("", "DeepSC text weights (default models/deepsc_text)")
    pair_timeout: float = opt(2.0, "receiver: seconds to wait for the analog caption of a digital payload", cli=False)
    fields: str = opt("all", "what is sent: caption + saliency indices, or the caption alone (--scheme caption-only)",
                      choices=("all", "caption"), cli=False)

    def build(self, image_path: str | None = None):
        """The ULBSC codec; its captioner resolved for ``image_path`` (a sidecar
        IMAGE.txt next to it counts) unless the blocks resolve it per image."""
        from ..blocks.ulbsc_blocks import make_codec
        from ..semantic.captioner import DEFAULT_BLIP, make_captioner

        codec = make_codec(self.vq, self.deepsc, self.caption_mode, self.saliency, self.captioner, self.blip_model,
                           self.caption, self.fields)
        if codec.captioner is None:
            codec.captioner = make_captioner(self.captioner, image_path, self.caption or None,
                                             self.blip_model or DEFAULT_BLIP)
        return codec


@dataclass
class MultiScOptions(Options):
    """Multi-SC: main-object slice + one caption per fused region."""
    TITLE = "Multi-SC (--scheme multisc); every stage has a no-download default"
    GRC_BLOCKS = ("gr_semcom_multisc_encoder", "gr_semcom_multisc_decoder")
    cbr: float = opt(1 / 30, "channel uses per source value (3 H W), e.g. 1/30", type=cbr_value)
    text_mode: str = opt("uncoded", "captions: uncoded QPSK symbols, UTF-8 over the digital PHY, or DeepSC",
                         choices=("uncoded", "digital", "deepsc"))
    deepsc: str = opt("", "DeepSC text weights of --text-mode deepsc (default models/deepsc_text)")
    split: str = opt("fusion", "region split: feature fusion (eq. 9), random, or one caption",
                     choices=("fusion", "random", "single"))
    eps: float = opt(0.25, "fusion threshold epsilon, fraction of the image diagonal")
    max_regions: int = opt(4, "captions at most")
    slice_side: int = opt(64, "main-object slice sent as SIDE x SIDE", grc=("slice_side",))
    slice_bytes: int = opt(400, "slice JPEG2000 bytes at most (the CBR budget may lower it)")
    vlm: str = opt("auto", "region captioner: auto = object captions (COCO detector) when installed, else "
                           "attributes", choices=("auto", "objects", "attributes", "llava"))
    vlm_model: str = opt("", "llava: LLaVA-class model directory / HF id")
    corrector: str = opt("symspell", "receiver's spelling correction", choices=("symspell", "bart", "none"))
    corrector_model: str = opt("", "bart: seq2seq corrector directory / HF id")
    ip_scale: float = opt(0.6, "IP-Adapter lambda (eq. 12)", grc="ip_adapter_scale")
    segmenter: str = opt("saliency", "main-object segmenter", choices=("saliency", "hf"), grc=None)
    segmenter_model: str = opt("", "hf: semantic-segmentation model directory / HF id", grc=None)
    detector: str = opt("auto", "region detector: auto = COCO detections when the detector is installed, else "
                                "Felzenszwalb proposals", choices=("auto", "coco", "proposals", "hf"), grc=None)
    detector_model: str = opt("", "hf: object-detection model directory / HF id", grc=None)
    pair_timeout: float = opt(3.0, "receiver: seconds to wait for a slice's captions", cli=False)
    seed: int = opt(0, "seed of the random split", cli=False)

    def build(self):
        from ..semantic.multisc.codec import MultiScCodec, MultiScConfig

        cfg = MultiScConfig(split=self.split, eps=self.eps, max_regions=self.max_regions,
                            slice_side=self.slice_side, slice_bytes=self.slice_bytes, seed=self.seed)
        return MultiScCodec.build(cfg, self.segmenter, self.segmenter_model or None, self.detector,
                                  self.detector_model or None, self.vlm, self.vlm_model or None, self.corrector,
                                  self.corrector_model or None)
