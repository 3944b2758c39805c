"""Image generators the bridge server runs: diffusers pipelines (Stable
Diffusion text-to-image, SD + ControlNet, SD + IP-Adapter) loaded with
``from_pretrained`` from a local directory or the Hugging Face cache, tiny
random-weight versions of the same pipeline classes (tests, CPU, seconds),
and an ``echo`` generator (no model: the bridge overhead benchmark).

Nothing is downloaded at run time: loading passes ``local_files_only=True``
unless the caller allows downloads (``semcom models download``), so missing
weights fail at once with :class:`MissingWeights` naming what is missing.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ..semantic.hub import MissingWeights, load_pretrained  # noqa: F401 (re-exported)
from .protocol import GenerateRequest

DEFAULTS = {
    "sd": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "controlnet": "lllyasviel/sd-controlnet-canny",
    "ip_adapter": "h94/IP-Adapter",
}


_load = load_pretrained


def _rgb(a: np.ndarray) -> np.ndarray:
    """HxW or HxWx3 uint8 -> HxWx3 (control maps may be single-channel)."""
    a = np.asarray(a, dtype=np.uint8)
    return a if a.ndim == 3 else np.repeat(a[..., None], 3, axis=2)


class EchoGenerator:
    """No model: returns the control map (or mid-grey) at the requested size.
    Lets the bridge be measured and tested without any diffusion cost."""

    kind = "echo"
    device = "cpu"

    def generate(self, req: GenerateRequest) -> np.ndarray:
        if req.control is not None:
            c = _rgb(req.control)
            ys = np.linspace(0, c.shape[0] - 1, req.height).astype(int)
            xs = np.linspace(0, c.shape[1] - 1, req.width).astype(int)
            return np.ascontiguousarray(c[ys][:, xs, :3])
        return np.full((req.height, req.width, 3), 128, np.uint8)


class DiffusersGenerator:
    """One diffusers pipeline, loaded once, called per request.

    ``kind``: ``text`` (StableDiffusionPipeline), ``controlnet``
    (StableDiffusionControlNetPipeline: the control image is made from the
    ULBSC saliency map per ``control_mode``, see :meth:`control_image`),
    ``ip_adapter`` (StableDiffusionPipeline + ``load_ip_adapter``: the
    image prompt is the Multi-SC object slice, ``ip_adapter_scale`` its lambda).
    """

    def __init__(self, pipe, kind: str, device: str = "cpu", control_mode: str = "edges",
                 control_threshold: float = 0.5):
        from ..semantic.control import MODES

        if control_mode not in MODES:
            raise ValueError(f"control_mode is one of {MODES}, got {control_mode!r}")
        self.pipe, self.kind, self.device = pipe, kind, device
        self.control_mode, self.control_threshold = control_mode, control_threshold
        self.pipe.set_progress_bar_config(disable=True)

    def control_image(self, control: np.ndarray, width: int, height: int) -> np.ndarray:
        """The control map prepared for this ControlNet (semantic/control.py):
        ``edges`` (default; the canny ControlNet's input: the boundary of the
        thresholded received map at the generation size), ``threshold`` or
        ``raw`` (a ControlNet trained on saliency maps), HxWx3 uint8."""
        from ..semantic.control import prepare_control

        return _rgb(prepare_control(control, self.control_mode, (width, height), self.control_threshold))

    @classmethod
    def from_pretrained(cls, kind: str, model: str | None = None, controlnet: str | None = None,
                        ip_adapter: str | None = None, device: str = "cpu", fp16: bool | None = None,
                        control_mode: str = "edges", control_threshold: float = 0.5):
        import torch
        from diffusers import ControlNetModel, StableDiffusionControlNetPipeline, StableDiffusionPipeline

        model = model or DEFAULTS["sd"]
        fp16 = device.startswith("cuda") if fp16 is None else fp16
        dtype = torch.float16 if fp16 else torch.float32
        kw = dict(dtype=dtype, safety_checker=None, requires_safety_checker=False)
        if kind == "controlnet":
            cn = _load(ControlNetModel, "ControlNet", controlnet or DEFAULTS["controlnet"], dtype=dtype)
            pipe = _load(StableDiffusionControlNetPipeline, "Stable Diffusion", model, controlnet=cn, **kw)
        elif kind in ("text", "ip_adapter"):
            pipe = _load(StableDiffusionPipeline, "Stable Diffusion", model, **kw)
            if kind == "ip_adapter":
                where = ip_adapter or DEFAULTS["ip_adapter"]
                try:
                    pipe.load_ip_adapter(where, subfolder="models", weight_name="ip-adapter_sd15.safetensors",
                                         local_files_only=True)
                except (OSError, ValueError) as exc:
                    raise MissingWeights("IP-Adapter", where, exc) from None
        else:
            raise ValueError(f"unknown pipeline kind {kind!r}")
        return cls(pipe.to(device), kind, device, control_mode, control_threshold)

    def generate(self, req: GenerateRequest) -> np.ndarray:
        import torch
        from PIL import Image

        g = torch.Generator(device="cpu").manual_seed(req.seed)
        kw = dict(prompt=req.prompt or "", num_inference_steps=req.steps, guidance_scale=req.guidance,
                  width=req.width, height=req.height, generator=g, output_type="np")
        if self.kind == "controlnet":
            if req.control is None:
                raise ValueError("the controlnet pipeline needs a 'control' map")
            kw["image"] = Image.fromarray(self.control_image(req.control, req.width, req.height))
        elif self.kind == "ip_adapter":
            if req.image_prompt is None:
                raise ValueError("the ip_adapter pipeline needs an 'image_prompt'")
            self.pipe.set_ip_adapter_scale(req.ip_adapter_scale)
            kw["ip_adapter_image"] = Image.fromarray(np.asarray(req.image_prompt, dtype=np.uint8))
        with torch.inference_mode():
            out = self.pipe(**kw).images[0]
        return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


# ---------------------------------------------------------------- tiny pipelines
def _byte_chars() -> list:
    """The 256 printable stand-ins byte-level BPE uses for bytes (GPT-2's
    table: printable Latin-1 bytes map to themselves, the rest to 256+i)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return [out[b] for b in range(256)]


def _tiny_tokenizer():
    """A CLIP BPE tokenizer with a byte-level vocabulary and no merges (one
    token per character): the real tokenizer class, 514 tokens."""
    from transformers import CLIPTokenizer

    chars = _byte_chars()
    vocab = {c: i for i, c in enumerate(chars)}
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def tiny_pipeline(kind: str, seed: int = 0, sample: int = 32):
    """The real diffusers pipeline classes with tiny random weights built from
    configs (a ~1 M parameter UNet, 2-level VAE, 2-layer CLIP text encoder).
    Images come out at the requested size; content is noise-like."""
    import torch
    from diffusers import (AutoencoderKL, ControlNetModel, DDIMScheduler, StableDiffusionControlNetPipeline,
                           StableDiffusionPipeline, UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    cross = 32
    unet = UNet2DConditionModel(sample_size=sample, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=cross,
                                attention_head_dim=8, norm_num_groups=8)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=8, sample_size=sample * 2)
    tok = _tiny_tokenizer()
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=cross, intermediate_size=64,
                                        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
                                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                        pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else 0))
    sched = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)
    common = dict(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=sched, safety_checker=None,
                  feature_extractor=None, requires_safety_checker=False)
    if kind == "controlnet":
        cn = ControlNetModel(in_channels=4, block_out_channels=(32, 64), layers_per_block=1,
                             down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), cross_attention_dim=cross,
                             attention_head_dim=8, norm_num_groups=8, conditioning_embedding_out_channels=(16, 32))
        pipe = StableDiffusionControlNetPipeline(controlnet=cn, image_encoder=None, **common)
    elif kind in ("text", "ip_adapter"):
        pipe = StableDiffusionPipeline(image_encoder=None, **common)
    else:
        raise ValueError(kind)
    return pipe


def save_tiny_ip_adapter(pipe, dirpath: str | os.PathLike, seed: int = 0) -> Path:
    """Write random IP-Adapter weights + a tiny CLIP vision encoder in the
    layout ``load_ip_adapter`` reads (``ip_adapter.safetensors`` with
    ``image_proj.*``/``ip_adapter.*`` keys, ``image_encoder/``), so tests go
    through diffusers' real IP-Adapter loading code."""
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    d = Path(dirpath)
    (d / "image_encoder").mkdir(parents=True, exist_ok=True)
    embed = 32
    enc = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                         num_attention_heads=4, image_size=32, patch_size=8,
                                                         projection_dim=embed))
    enc.save_pretrained(d / "image_encoder")
    unet = pipe.unet
    cross = unet.config.cross_attention_dim
    sd = {"image_proj.proj.weight": torch.randn(cross * 4, embed) * 0.02, "image_proj.proj.bias": torch.zeros(cross * 4),
          "image_proj.norm.weight": torch.ones(cross), "image_proj.norm.bias": torch.zeros(cross)}
    key = 1
    for name, proc in unet.attn_processors.items():
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = unet.config.block_out_channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(unet.config.block_out_channels))[int(name[len("up_blocks.")])]
        else:
            hidden = unet.config.block_out_channels[int(name[len("down_blocks.")])]
        sd[f"ip_adapter.{key}.to_k_ip.weight"] = torch.randn(hidden, cross) * 0.02
        sd[f"ip_adapter.{key}.to_v_ip.weight"] = torch.randn(hidden, cross) * 0.02
        key += 2
    save_file(sd, str(d / "ip_adapter.safetensors"))
    # a tiny CLIPImageProcessor config so the pipeline resizes prompts to 32x32
    (d / "image_encoder" / "preprocessor_config.json").write_text(json.dumps({
        "crop_size": {"height": 32, "width": 32}, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "image_mean": [0.4815, 0.4578, 0.4082], "image_std": [0.2686, 0.2613, 0.2758], "resample": 3,
        "size": {"shortest_edge": 32}, "image_processor_type": "CLIPImageProcessor"}))
    return d


def tiny_generator(kind: str, seed: int = 0, **kw) -> DiffusersGenerator:
    """DiffusersGenerator over :func:`tiny_pipeline` (IP-Adapter loaded through
    ``load_ip_adapter`` from weights written by :func:`save_tiny_ip_adapter`)."""
    pipe = tiny_pipeline(kind, seed)
    if kind == "ip_adapter":
        from transformers import CLIPImageProcessor

        with tempfile.TemporaryDirectory() as d:
            save_tiny_ip_adapter(pipe, d, seed)
            pipe.load_ip_adapter(d, subfolder="", weight_name="ip_adapter.safetensors",
                                 image_encoder_folder="image_encoder", local_files_only=True)
            pipe.feature_extractor = CLIPImageProcessor.from_pretrained(str(Path(d) / "image_encoder"))
    return DiffusersGenerator(pipe, kind, **kw)


def make_generator(kind: str, tiny: bool = False, **kw):
    """``kw``: DiffusersGenerator.from_pretrained's (model, controlnet, ...,
    ``control_mode`` edges | threshold | raw)."""
    if kind == "echo":
        return EchoGenerator()
    if tiny:
        return tiny_generator(kind, **{k: v for k, v in kw.items() if k in ("control_mode", "control_threshold")})
    return DiffusersGenerator.from_pretrained(kind, **kw)

