"""The evaluation harness (gr_semcom/sweep.py, ``semcom sweep``)."""
from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gr_semcom.eval import sweep

ROOT = Path(__file__).resolve().parents[1]


def test_parse_snrs():
    assert sweep.parse_snrs("-3:15:3") == [-3, 0, 3, 6, 9, 12, 15]
    assert sweep.parse_snrs("0:1:0.5") == [0, 0.5, 1]
    assert sweep.parse_snrs("5, 10") == [5, 10]
    with pytest.raises(ValueError):
        sweep.parse_snrs("0:10:0")


def test_summary_mean_and_interval():
    from scipy import stats

    rows = [{"scheme": "s", "channel": "awgn", "esn0_db": "3", "seed": str(k % 2), "accounting": "phy",
             "image": f"i{k}", "psnr": str(20 + k), "ms_ssim": "nan", "cbr": "0.03", "cbr_target": "0.0333",
             "bytes": "100", "failed": "False", "modulation": "qpsk", "code_rate": "1/2"} for k in range(6)]
    (s,) = sweep.summarise(rows)
    x = np.arange(20, 26, dtype=float)
    assert s["psnr"] == pytest.approx(x.mean())
    assert s["psnr_ci95"] == pytest.approx(stats.t.ppf(0.975, 5) * x.std(ddof=1) / np.sqrt(6), abs=1e-4)
    assert s["n"] == 6 and s["seeds"] == 2 and s["budget_met"] is True
    assert np.isnan(s["ms_ssim"])


def _uncoded_ber(mod: str, esn0_db: float) -> float:
    """Closed-form AWGN bit error rate of Gray-mapped BPSK / QPSK / square 16QAM (Cho & Yoon 2002)."""
    from scipy.special import erfc

    def q(x):
        return 0.5 * erfc(x / math.sqrt(2))

    es = 10 ** (esn0_db / 10)
    if mod == "bpsk":
        return q(math.sqrt(2 * es))
    if mod == "qpsk":
        return q(math.sqrt(es))
    if mod == "16qam":
        a = math.sqrt(es / 5)
        return 0.75 * q(a) + 0.5 * q(3 * a) - 0.25 * q(5 * a)
    raise ValueError(mod)


@pytest.mark.skipif(not (ROOT / "models" / "image_deepjscc" / "model.safetensors").exists(),
                    reason="image DeepJSCC weights not shipped")
def test_sweep_cli_resumable_and_bad_images(tmp_path):
    pytest.importorskip("gnuradio.gr")
    from PIL import Image

    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    Image.fromarray(small).resize((192, 192), Image.BICUBIC).save(d / "a.png")
    (d / "b.jpg").write_bytes(b"\xff\xd8\xff truncated")
    exe = ROOT / ".venv" / "bin" / "semcom"
    cmd = ([str(exe)] if exe.exists() else [sys.executable, "-m", "gr_semcom.cli"]) + [
        "sweep", "--schemes", "jpeg2000,deepjscc", "--snr", "6:9:3", "--images", str(d), "--workers", "2",
        "--capacity", "--grid-snrs", "9", "--out", str(tmp_path / "out")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    raw = list(csv.DictReader(open(tmp_path / "out" / "sweep_raw.csv")))
    ok = [x for x in raw if x["image"] == "a" and x["accounting"] == "phy"]
    assert len(ok) == 4 and all(float(x["cbr"]) <= 1 / 30 for x in ok)
    assert all(float(x["psnr"]) > 15 for x in ok)
    for x in ok:  # the PHY columns: raw BER of the coded bits against the closed form, BLER = 1 - ok / sent
        if x["scheme"] == "jpeg2000":
            n, ber = int(x["channel_bits"]), float(x["channel_ber"])
            ref = _uncoded_ber(x["modulation"], float(x["esn0_db"]))
            sigma = math.sqrt(ref * (1 - ref) / n)
            assert n >= 5000 and abs(ber - ref) < 5 * sigma + 0.1 * ref, (x["modulation"], ber, ref, n)
            assert float(x["bler"]) == pytest.approx(1 - int(x["frames_ok"]) / int(x["frames_sent"]))
            assert 0 <= float(x["erased_fraction"]) <= float(x["bler"]) + 1e-9
    bad = [x for x in raw if x["image"] == "b"]
    assert bad and all(x["failed"] == "True" and x["reason"] for x in bad)
    assert any(x["accounting"] == "capacity" for x in raw)
    summary = list(csv.DictReader(open(tmp_path / "out" / "sweep_summary.csv")))
    assert {x["scheme"] for x in summary} == {"jpeg2000", "deepjscc"}
    assert (tmp_path / "out" / "sweep.png").stat().st_size > 10000
    assert (tmp_path / "out" / "sweep_grid.png").is_file()
    # resumable: a second run adds nothing
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0
    assert len(list(csv.DictReader(open(tmp_path / "out" / "sweep_raw.csv")))) == len(raw)


def _clip_cosine(clip_dir, generated_png, source_png) -> float:
    """CLIP image-image cosine done by hand: the generated image resized
    (bilinear) to the source's size, both through the vision tower, pooled
    output -> visual projection -> unit vectors -> dot product."""
    import torch
    from PIL import Image

    from gr_semcom.semantic.clip_score import ClipSimilarity

    c = ClipSimilarity.from_pretrained(str(clip_dir))
    src = Image.open(source_png).convert("RGB")
    gen = Image.open(generated_png).convert("RGB").resize(src.size, Image.BILINEAR)
    px = c.processor(images=[np.asarray(gen), np.asarray(src)], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        e = c.model.visual_projection(c.model.vision_model(pixel_values=px).pooler_output)
    e = torch.nn.functional.normalize(e, dim=-1)
    return float(e[0] @ e[1])


def test_sweep_semantic_schemes_on_tiny_models(tmp_path):
    """Multi-SC (fusion / single), ULBSC's caption-only and ULBSC through the
    same harness, with the tiny IP-Adapter pipeline as generator and a tiny
    CLIP for the CLIP metric: the curves command the README gives, on tiny models."""
    pytest.importorskip("gnuradio")
    from gr_semcom.semantic.clip_score import tiny_clip

    clip = tiny_clip(tmp_path / "clip")
    r = subprocess.run([sys.executable, "-m", "gr_semcom.cli", "sweep", "--schemes",
                        "multisc,multisc-single,ulbsc,caption-only", "--snr", "6", "--n-images", "1",
                        "--workers", "2", "--generator", "tiny", "--steps", "1", "--clip", str(clip),
                        "--grid-snrs", "6", "--out", str(tmp_path / "out")], capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    raw = list(csv.DictReader(open(tmp_path / "out" / "sweep_raw.csv")))
    by = {row["scheme"]: row for row in raw}
    assert set(by) == {"multisc", "multisc-single", "ulbsc", "caption-only"}
    recon, (name,) = tmp_path / "out" / "recon", {row["image"] for row in raw}
    for s in ("multisc", "multisc-single"):
        row = by[s]
        for k in ("lpips", "clip", "clip_before", "psnr_before", "caption_bleu_raw", "caption_bleu_corrected",
                  "caption_cer_raw", "slice_psnr", "cbr"):
            assert math.isfinite(float(row[k])), (s, k, row[k])
        assert float(row["cbr"]) <= 1 / 30
        # CLIP of the generated image (saved by --grid-snrs) against the source, computed here: vision
        # tower -> pooled -> projection -> cosine, at the source's size
        assert float(row["clip"]) == pytest.approx(_clip_cosine(clip, recon / f"awgn_6dB_{s}_{name}.png",
                                                                recon / f"src_{name}.png"), abs=1e-5), s
    assert int(by["multisc-single"]["captions"]) == 1
    for s in ("multisc", "multisc-single", "ulbsc", "caption-only"):  # digital PDUs carry the PHY columns
        x = by[s]
        n, ber = int(x["channel_bits"]), float(x["channel_ber"])
        assert int(x["frames_sent"]) >= 1 and n > 0, s
        # raw BER of the coded bits against the closed form (QPSK / BPSK at 6 dB: 2.3e-2 / 2.4e-3)
        ref = _uncoded_ber(x["modulation"], float(x["esn0_db"]))
        assert abs(ber - ref) < 5 * math.sqrt(ref * (1 - ref) / n) + 0.1 * ref, (s, x["modulation"], ber, ref, n)
        # BLER from the frame counts; QPSK 1/2 and BPSK 1/4 LDPC at 6 dB decode every frame
        assert float(x["bler"]) == pytest.approx(1 - int(x["frames_ok"]) / int(x["frames_sent"])), s
        assert int(x["frames_ok"]) == int(x["frames_sent"]) and float(x["bler"]) == 0, s
        assert float(x["erased_fraction"]) == 0, s
    for row in raw:
        assert int(row["channel_uses"]) <= int(row["budget_channel_uses"]), row["scheme"]
    for s in ("ulbsc", "caption-only"):
        assert math.isfinite(float(by[s]["saliency_mae"])) and by[s]["caption_sent"]
    summary = list(csv.DictReader(open(tmp_path / "out" / "sweep_summary.csv")))
    assert all(row["budget_met"] == "True" for row in summary)
    for f in ("sweep.png", "sweep_semantic.png", "sweep_correction.png", "sweep_phy.png"):
        assert (tmp_path / "out" / f).stat().st_size > 5000, f
