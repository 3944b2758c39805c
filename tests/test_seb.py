"""Seb codec (semantic/seb), its baselines and the CBR harness (image_link):
numerics without GNU Radio first, then the GNU Radio link."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from shared import photo  # noqa: F401 (used by the tests below)
import torch

from gr_semcom.semantic.seb.codec import (IMG_HDR, SebCodec, _pack_indices, _unpack_indices, elbow, index_bits,
                                          split_image_set)
from gr_semcom.semantic.seb.model import SebConfig, SebNet, from_patches, kmeans, n_bases, to_patches

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Small convs on two oversubscribed threads ran 18x slower (measured with
    a training job beside the tests); one thread is the benchmark setting too."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


SEB_MODELS = sorted(str(p) for p in (ROOT / "models").glob("seb_lam*/model.safetensors"))


def tiny(mode="seb", seed=0) -> SebNet:
    torch.manual_seed(seed)
    net = SebNet(SebConfig(mode=mode, n=8, m_seb=4, m_comp=4, m_res=8))
    net.update()
    return net.eval()



def test_compressai_parts_load_and_code_exactly():
    from gr_semcom.semantic.compressai_compat import load, scale_table

    layers, em = load()
    eb = em.EntropyBottleneck(4)
    eb.update(force=True)
    x = torch.randn(1, 4, 6, 6) * 4
    s = eb.compress(x)
    assert torch.equal(eb.decompress(s, (6, 6)), x.round())
    gc = em.GaussianConditional(None)
    gc.update_scale_table(scale_table())
    gc.update()
    idx = gc.build_indexes(torch.full((1, 4, 6, 6), 2.0))
    assert torch.equal(gc.decompress(gc.compress(x, idx), idx), x.round())
    assert layers.GDN(4)(torch.randn(2, 4, 5, 5)).shape == (2, 4, 5, 5)


def test_patches_round_trip():
    x = torch.rand(2, 3, 64, 96)
    p = to_patches(x)
    assert p.shape == (2 * 2 * 3, 3, 32, 32)
    assert torch.equal(p[1], x[0, :, 0:32, 32:64])
    assert torch.equal(from_patches(p, 2, 64, 96), x)


def test_kmeans_matches_sklearn_inertia():
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 10, (5, 8))
    x = np.concatenate([c + rng.normal(0, 1, (60, 8)) for c in centres]).astype(np.float32)
    c, a = kmeans(torch.from_numpy(x), 5, seed=1)
    ours = float(((torch.from_numpy(x) - c[a]) ** 2).sum())
    ref = KMeans(5, n_init=10, random_state=0).fit(x).inertia_
    assert ours == pytest.approx(ref, rel=1e-3)
    assert len(set(a.tolist())) == 5
    # more clusters than points never fails
    c, a = kmeans(torch.from_numpy(x[:3]), 10)
    assert c.shape[0] == 3


def test_n_bases_and_elbow():
    assert n_bases(16, 64) == 40 and n_bases(1, 4) == 1
    assert elbow([100, 40, 10, 9, 8.5, 8]) == 3
    assert elbow([10, 9.9, 9.8]) == 1
    assert elbow([10, 4]) == 2 and elbow([10, 8]) == 1 and elbow([5]) == 1


def test_split_image_set_finds_two_groups():
    net = tiny()
    dark = [photo(i) // 4 for i in range(4)]
    bright = [255 - photo(10 + i) // 4 for i in range(4)]
    labels, inertias = split_image_set(net, dark + bright)
    assert len(set(labels[:4])) == 1 and len(set(labels[4:])) == 1 and labels[0] != labels[4]
    assert inertias[0] > inertias[1]


@pytest.mark.parametrize("k", [1, 2, 5, 40, 1000])
def test_index_packing(k):
    idx = np.random.default_rng(k).integers(0, k, 37)
    nb = index_bits(k)
    assert np.array_equal(_unpack_indices(_pack_indices(idx, nb), 37, nb), idx)


@pytest.mark.parametrize("mode", ["seb", "hyperprior"])
def test_codec_round_trip_and_erasures(mode):
    codec = SebCodec([tiny(mode)])
    ims = [photo(0), photo(1, 100, 150)]  # the second is padded to 128x192
    sset = codec.encode_set(ims, 0, set_id=7)
    bases = codec.decode_set(sset.packet) if sset.packet else None
    if mode == "seb":
        assert sset.k == n_bases(2, 24) and torch.equal(bases, sset.bases)
        assert codec.decode_set_id(sset.packet)[0] == 7
    for i, im in enumerate(ims):
        pkt = codec.encode_image(im, sset, i)
        dec = codec.decode_image(pkt, bases)
        assert not dec.failed and dec.image.shape == im.shape and all(dec.parts.values())
        # decoding is deterministic: receiver = transmitter's own reconstruction
        assert np.array_equal(dec.image, codec.decode_image(pkt, sset.bases).image)
        # lost residual: the prediction (seb) or a failure (hyperprior), never an exception
        lost = codec.decode_image(pkt, bases, missing=[(len(pkt) - 3, len(pkt))])
        assert lost.parts["residual"] is False and lost.failed == (mode == "hyperprior")
        assert codec.decode_image(pkt, bases, missing=[(0, 4)]).failed  # header
        assert codec.decode_image(pkt[:IMG_HDR.size - 1], bases).failed
        assert codec.decode_image(None, bases, shape=(10, 20)).image.shape == (10, 20, 3)
        garbage = bytearray(pkt)
        garbage[IMG_HDR.size:] = np.random.default_rng(i).integers(0, 256, len(pkt) - IMG_HDR.size,
                                                                    dtype=np.uint8).tobytes()
        codec.decode_image(bytes(garbage), bases)  # must not raise
        if mode == "seb":
            assert codec.decode_image(pkt, None).failed  # set packet lost
    assert codec.decode_set(sset.packet, missing=[(0, 1)]) is None
    assert codec.decode_set(b"XX" + sset.packet[2:]) is None


def test_gain_controls_rate():
    codec = SebCodec([tiny("hyperprior")])
    im = photo(3)
    sset = codec.encode_set([im], 0)
    sizes = [len(codec.encode_image(im, sset, 0, gain=g)) for g in (1.0, 5.0, 20.0)]  # untrained: small latents
    assert sizes[0] < sizes[1] < sizes[2]
    # the header carries the gain in steps of 1/1000: the encoder must use exactly that
    # (a gain off the grid once desynchronised the rANS decoder: garbage images)
    assert codec.encode_image(im, sset, 0, gain=7.4567) == codec.encode_image(im, sset, 0, gain=7.457)
    with pytest.raises(ValueError):
        codec.encode_image(im, sset, 0, gain=100)
    with pytest.raises(ValueError):
        codec.encode_image(im[:32], sset, 0)


def test_fit_packet_and_plan_meet_the_budget():
    from gr_semcom.systems.images import plan_seb
    from gr_semcom.semantic.seb.ratefit import fit_packet
    from gr_semcom.phy.frame import FrameSpec
    from gr_semcom.phy.mcs import cbr_channel_uses, pdu_channel_uses

    codec = SebCodec([tiny("seb", 0), tiny("seb", 1)])
    ims = [photo(0), photo(1), photo(2)]
    sset = codec.encode_set(ims, 0)
    for budget in (60, 400, 3000):
        p, g = fit_packet(codec, ims[0], sset, 0, budget)
        assert len(p) <= budget
    spec = FrameSpec(modulation="16qam", code_rate="1/2")
    plan = plan_seb(codec, ims, spec, 1 / 10)
    assert plan is not None
    allowed = sum(cbr_channel_uses(*im.shape[:2], 1 / 10) for im in ims)
    used = plan["set_uses"] + sum(pdu_channel_uses(len(p), b.spec) for p, b in zip(plan["packets"], plan["budgets"]))
    assert used <= allowed
    assert plan_seb(codec, ims, spec, 1 / 5000) is None  # not even the set packet fits

    # a flowgraph stopping mid-search: a set stop event ends the search
    import threading

    from gr_semcom.systems.images import Cancelled

    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        plan_seb(codec, ims, spec, 1 / 10, stop=stop)
    assert plan_seb(codec, ims, spec, 1 / 10, stop=threading.Event())["tx_psnr"] == plan["tx_psnr"]


def test_checkpoint_round_trip(tmp_path):
    from gr_semcom.semantic.seb.weights import load_net, save_net

    net = tiny()
    save_net(net, tmp_path / "m.safetensors", steps=1)
    back = load_net(tmp_path / "m.safetensors")
    im = photo(5)
    a, b = SebCodec([net]), SebCodec([back])
    sa, sb = a.encode_set([im], 0), b.encode_set([im], 0)
    assert sa.packet == sb.packet and a.encode_image(im, sa, 0) == b.encode_image(im, sb, 0)
    with pytest.raises(FileNotFoundError, match="semcom train seb"):
        load_net(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"), metadata={"model": "Other"})
    with pytest.raises(ValueError, match="not a SebNet"):
        load_net(tmp_path / "other.safetensors")


def test_training_step_lowers_the_loss():
    net = SebNet(SebConfig(n=8, m_seb=4, m_comp=4, m_res=8))
    x = torch.from_numpy(np.stack([photo(i, 64, 64) for i in range(4)])).permute(0, 3, 1, 2).float() / 255
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    losses = []
    for _ in range(15):
        out = net(x)
        loss, _, _ = net.loss(x, out)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert set(out["bits"]) == {"bases", "indices", "compensation", "hyper", "residual"}
    # straight-through copy: the Seb generator gets gradients from the distortion
    assert net.seb_enc[0].weight.grad is not None and float(net.seb_enc[0].weight.grad.abs().sum()) > 0


def test_jpeg2000_budget_and_loss():
    from gr_semcom.semantic import jpeg2000

    im = photo(7, 256, 256)
    for budget in (300, 1500):
        s = jpeg2000.encode_to_budget(im, budget)
        assert s is not None and budget * 0.8 <= len(s) <= budget
        rec, failed = jpeg2000.decode(s, (256, 256))
        assert not failed and rec.shape == im.shape
    assert jpeg2000.encode_to_budget(im, 10) is None
    rec, failed = jpeg2000.decode(s, (256, 256), missing=[(len(s) // 2, len(s))])
    assert failed and (rec == 128).all()


def _ms_ssim_reference(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """MS-SSIM as Wang, Simoncelli & Bovik (2003) define it, written out in
    float64 numpy (no pytorch-msssim): 11-tap Gaussian window (sigma 1.5,
    'valid'), C1 = (0.01 peak)^2, C2 = (0.03 peak)^2, five scales with 2x2 mean
    downsampling, contrast-structure at every scale and luminance at the
    coarsest, exponents 0.0448 ... 0.1333, negative terms clamped to 0; per
    colour channel, then the mean. Even sides only (no padding rule needed)."""
    from numpy.lib.stride_tricks import sliding_window_view

    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5 ** 2))
    g /= g.sum()

    def blur(x):
        return sliding_window_view(sliding_window_view(x, 11, 0) @ g, 11, 1) @ g

    def half(x):
        return 0.25 * (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2])

    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    weights = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
    per_channel = []
    for ch in range(a.shape[2]):
        x, y = a[..., ch].astype(np.float64), b[..., ch].astype(np.float64)
        val = 1.0
        for s, w in enumerate(weights):
            mx, my = blur(x), blur(y)
            vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
            cs = (2 * cxy + c2) / (vx + vy + c2)
            if s < len(weights) - 1:
                val *= max(float(np.mean(cs)), 0.0) ** w
                x, y = half(x), half(y)
            else:
                lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
                val *= max(float(np.mean(lum * cs)), 0.0) ** w
        per_channel.append(val)
    return float(np.mean(per_channel))


def test_psnr_and_ms_ssim_against_references():
    from PIL import Image, ImageFilter
    from skimage.metrics import peak_signal_noise_ratio

    from gr_semcom.semantic.metrics import ms_ssim, psnr

    a = photo(1, 256, 256)
    b = np.clip(a.astype(int) + np.random.default_rng(0).integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), abs=1e-9)
    assert ms_ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    c = np.clip(a.astype(int) + np.random.default_rng(0).integers(-60, 61, a.shape), 0, 255).astype(np.uint8)
    blurred = np.asarray(Image.fromarray(a).filter(ImageFilter.GaussianBlur(3)))
    # against the definition, on uint8 images (data range 255): the metric's value, not just its order;
    # a data range of 1 or 250 moves these by > 2e-4
    for x in (b, c, blurred):
        assert ms_ssim(a, x) == pytest.approx(_ms_ssim_reference(a, x), abs=1e-5)
    assert 0 < ms_ssim(a, c) < ms_ssim(a, b) < 1
    assert np.isnan(ms_ssim(a[:100, :100], b[:100, :100]))


def test_mcs_choice_and_budget():
    from gr_semcom.systems.images import capacity_bytes, ideal_esn0_db
    from gr_semcom.phy.mcs import burst_symbols, byte_budget, cbr_channel_uses, choose_mcs, pdu_channel_uses

    assert choose_mcs(-5).modulation == "bpsk" and choose_mcs(5).modulation == "qpsk"
    assert choose_mcs(10).modulation == "16qam" and choose_mcs(20).modulation == "64qam"
    uses = cbr_channel_uses(256, 256, 1 / 30)
    assert uses == 6553
    prev = 0
    for snr in (0, 5, 10, 20):
        b = byte_budget(uses, choose_mcs(snr))
        assert b.payload_bytes > prev and pdu_channel_uses(b.payload_bytes, b.spec) <= uses
        assert pdu_channel_uses(b.payload_bytes + 1, b.spec) > uses or b.payload_bytes == 0
        prev = b.payload_bytes
    assert burst_symbols(choose_mcs(5)) > 0
    # eq. 11-12 inverse of each other
    assert ideal_esn0_db(capacity_bytes(5.0, 10000) * 8, 10000) == pytest.approx(5.0, abs=0.01)


def test_analog_layout_fits_the_budget(gnuradio):
    """Its own test: analog_layout takes analog_spec from blocks.analog, a GNU Radio block module."""
    from gr_semcom.systems.images import analog_layout
    from gr_semcom.phy.mcs import burst_symbols

    for n, budget in ((5120, 6553), (2880, 3686), (5120, 3000)):
        sp, k = analog_layout(n, budget)
        assert burst_symbols(sp) <= budget and k == min(n, sp.n_data) and k <= sp.n_data
    assert analog_layout(5120, 6553)[1] == 5120 and analog_layout(5120, 3000)[1] < 5120
    assert analog_layout(100, 50)[1] == 0


def test_image_jscc_symbols_and_checkpoint(tmp_path):
    from gr_semcom.semantic.image_jscc import ImageJSCC, load_model, save

    m = ImageJSCC().eval()
    im = photo(2, 64, 96)
    s = m.encode_image(im)
    assert s.size == m.symbols_for(64, 96) == 4 * 6 * 20
    assert np.mean(np.abs(s) ** 2) == pytest.approx(1.0, rel=1e-4)
    save(m, tmp_path / "j.safetensors")
    assert np.array_equal(load_model(tmp_path / "j.safetensors").decode_image(s, 64, 96), m.decode_image(s, 64, 96))
    with pytest.raises(ValueError):
        m.encode_image(photo(2, 70, 96))


# -- over the GNU Radio chain ----------------------------------------------------------------


@pytest.mark.skipif(not SEB_MODELS, reason="no trained Seb models in models/")
def test_seb_over_the_phy_with_shipped_models(gnuradio):
    from gr_semcom.systems.images import run_jpeg2000, run_seb
    from gr_semcom.phy.channel import ChannelSpec
    from gr_semcom.semantic.seb.train import test_crops

    names, ims = test_crops()
    names, ims = names[:2], list(ims[:2])
    codec = SebCodec.from_files(SEB_MODELS)
    chan = ChannelSpec(model="awgn", esn0_db=9.0, seed=3)
    res = run_seb(codec, names, ims, chan, 1 / 30)
    j2k = run_jpeg2000(names, ims, chan, 1 / 30)
    for r, j in zip(res, j2k):
        row = r.row
        assert not row["failed"] and row["frames_ok"] == row["frames_sent"]
        # a set packet, when the plan sends one (a conditional Seb plan may go without its bases)
        assert row["set_received"] or not row["bases"]
        assert row["cbr"] <= 1 / 30 + 1e-9 and row["modulation"] == "16qam"
        assert row["psnr"] == pytest.approx(row["tx_psnr"], abs=1e-6)  # decoded = the transmitter's own
        assert row["psnr"] > 18 and j.row["psnr"] > 18
    # a channel too poor for anything: erasures, grey images, no exception
    bad = run_seb(codec, names[:1], ims[:1], ChannelSpec(model="awgn", esn0_db=-12.0, seed=1), 1 / 30,
                  timeout=20)
    assert bad[0].row["failed"] and bad[0].image.shape == ims[0].shape


@pytest.mark.skipif(not SEB_MODELS, reason="no trained Seb models in models/")
def test_cli_transmit_image_dir(tmp_path, gnuradio):
    import csv

    from PIL import Image

    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(photo(1, 256, 256)).save(d / "a.png")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    exe = ROOT / ".venv" / "bin" / "semcom"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "gr_semcom.cli"]
    out = tmp_path / "out"
    r = subprocess.run(cmd + ["transmit", str(d), "--scheme", "seb", "--channel", "awgn", "--snr", "5",
                              "--cbr", "1/30", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(out / "results.csv")))
    by = {row["image"]: row for row in rows}
    assert by["a"]["failed"] == "False" and float(by["a"]["cbr"]) <= 1 / 30
    assert by["broken"]["failed"] == "True" and by["broken"]["reason"]
    assert (out / "recon" / "a.png").is_file()
    assert {"psnr", "ms_ssim", "channel_uses", "cbr"} <= set(rows[0])
