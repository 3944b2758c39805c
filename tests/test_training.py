"""Issue 19: conditional Seb (never worse than its hyperprior by construction),
resumable training (checkpoint + JSON state, learning curve), the photo set's
manifest and licences, the 32-pixel blockiness measure. Small nets and 64x64
crops: seconds, no GNU Radio."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from shared import photo  # noqa: F401 (used by the tests below)
import torch

from gr_semcom.semantic.seb.codec import (
    FLAG_HYPERPRIOR,
    FLAG_NO_BASES,
    IMG_HDR,
    SebCodec,
)
from gr_semcom.semantic.seb.model import SebConfig, SebNet


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


def tiny_hp(seed=0) -> SebNet:
    torch.manual_seed(seed)
    net = SebNet(SebConfig(mode="hyperprior", n=8, m_seb=4, m_comp=4, m_res=8, lam=64))
    # not trained, but with a non-trivial residual codec: scale the last layer so the latents are O(1..10)
    with torch.no_grad():
        net.res_enc[-1].weight.mul_(20)
    net.update()
    return net.eval()



def cond_from(hp: SebNet) -> SebNet:
    from gr_semcom.semantic.seb.train import init_conditional

    torch.manual_seed(1)
    net = SebNet(SebConfig(mode="seb", n=8, m_seb=4, m_comp=4, m_res=8, lam=64, cond=True))
    init_conditional(net, hp)
    net.update()
    return net.eval()


def test_conditional_seb_starts_as_its_hyperprior():
    hp = tiny_hp()
    seb = cond_from(hp)
    x = torch.from_numpy(np.stack([photo(0, 64, 64), photo(1, 64, 64)])).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        a, b = hp(x), seb(x)
    # gate 0: the side input is exactly zero, the reconstruction and the residual's bits are the hyperprior's
    assert torch.equal(a["x_hat"], b["x_hat"])
    assert float(a["bits"]["residual"]) == pytest.approx(float(b["bits"]["residual"]), rel=1e-6)
    assert float(b["bits"]["bases"]) > 0  # the bases cost bits the hyperprior does not pay
    # frozen parts are copies; the side encoder is a copy of the analysis transform
    assert torch.equal(seb.res_dec[0].weight, hp.res_dec[0].weight)
    assert torch.equal(seb.side_enc[0].weight, hp.res_enc[0].weight)


def test_no_bases_packet_is_the_hyperprior_packet():
    hp = tiny_hp()
    seb = cond_from(hp)
    # make the gate non-zero so the with-bases path really differs
    with torch.no_grad():
        seb.side_gate.fill_(0.5)
    ch, cs = SebCodec([hp]), SebCodec([seb])
    ims = [photo(2), photo(3)]
    sh = ch.encode_set(ims, 0)
    sn = cs.encode_set(ims, 0, use_bases=False)
    sb = cs.encode_set(ims, 0)
    assert sn.packet == b"" and sn.k == 0 and sb.k > 0 and sb.packet
    assert cs.plan_options() == [(0, True), (0, False)] and ch.plan_options() == [(0, False)]
    for i, im in enumerate(ims):
        for g in (0.5, 1.0, 2.0):
            ph, pn = ch.encode_image(im, sh, i, gain=g), cs.encode_image(im, sn, i, gain=g)
            hh, hn = IMG_HDR.unpack_from(ph), IMG_HDR.unpack_from(pn)
            assert hh[4] == FLAG_HYPERPRIOR and hn[4] == FLAG_NO_BASES
            assert ph[IMG_HDR.size:] == pn[IMG_HDR.size:]  # same streams byte for byte
            dh, dn = ch.decode_image(ph), cs.decode_image(pn, None)  # no set packet needed
            assert not dn.failed and not dn.bases_used and np.array_equal(dh.image, dn.image)
        pb = cs.encode_image(im, sb, i)
        db = cs.decode_image(pb, sb.bases)
        assert db.bases_used and not db.failed
        assert not np.array_equal(db.image, cs.decode_image(pn, None).image)
        # lost residual of a conditional packet: the side input alone, flagged as not failed (seb)
        lost = cs.decode_image(pb, sb.bases, missing=[(len(pb) - 2, len(pb))])
        assert lost.parts["residual"] is False and not lost.failed


def test_best_of_options_never_below_the_hyperprior():
    """The transmitter's choice between with and without bases (what plan_seb
    does over codec.plan_options) is >= the hyperprior at the same budget."""
    from gr_semcom.semantic.metrics import psnr
    from gr_semcom.semantic.seb.ratefit import fit_packet_fast

    hp = tiny_hp()
    seb = cond_from(hp)
    with torch.no_grad():
        seb.side_gate.fill_(0.3)
    ch, cs = SebCodec([hp]), SebCodec([seb])
    ims = [photo(4), photo(5)]
    for budget in (150, 600):
        sh = ch.encode_set(ims, 0)
        ref = np.mean([psnr(ch.decode_image(fit_packet_fast(ch, im, sh, i, budget)[0]).image, im)
                       for i, im in enumerate(ims)])
        best = -1.0
        for mid, ub in cs.plan_options():
            s = cs.encode_set(ims, mid, use_bases=ub)
            b = budget - len(s.packet) // len(ims)
            if b <= IMG_HDR.size:
                continue
            q = np.mean([psnr(cs.decode_image(fit_packet_fast(cs, im, s, i, b)[0], s.bases).image, im)
                         for i, im in enumerate(ims)])
            best = max(best, q)
        assert best >= ref - 1e-9


def test_cosine_lr_and_warmup():
    from gr_semcom.semantic.trainloop import cosine_lr

    assert cosine_lr(0, 100, 1.0) == pytest.approx(1.0)
    assert cosine_lr(100, 100, 1.0) == pytest.approx(0.01)
    assert cosine_lr(50, 100, 1.0) == pytest.approx(0.01 + 0.99 * 0.5)
    assert cosine_lr(0, 100, 1.0, warmup=10) == pytest.approx(0.1)
    assert cosine_lr(25, 100, 1.0, warmup=10, start=20) == pytest.approx(cosine_lr(25, 100, 1.0) * 6 / 10)


def _fake_photoset(root, n_train=3, n_test=2):
    from PIL import Image

    entries = []
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            name = f"{split}{i}"
            (root / "src").mkdir(parents=True, exist_ok=True)
            Image.fromarray(photo(10 * i + (split == "test"), 256, 320)).save(root / "src" / f"{name}.png")
            entries.append({"name": name, "source": "src" if split == "train" else "heldout", "file": f"src/{name}.png",
                            "split": split, "licence": "test"})
    (root / "manifest.json").write_text(json.dumps({"held_out_source": "heldout", "photos": entries}))
    return root


def _train(tmp, out, steps, **kw):
    from gr_semcom.semantic.seb.train import train_seb

    return train_seb(str(out), mode="hyperprior", lam=64, steps=steps, batch=2, lr=1e-3, n=8, crop=64,
                     eval_every=2, data=str(tmp / "photos"), progress=False, seed=3, **kw)


def test_training_resumes_exactly(tmp_path):
    """4 steps in one go == 2 steps, stop, resume to 4 (weights, optimizer, RNG
    restored); learning curve rows at 0, 2, 4; PNG and model card written."""
    from safetensors.torch import load_file

    _fake_photoset(tmp_path / "photos")
    a, b = tmp_path / "a", tmp_path / "b"
    _train(tmp_path, a, 4)
    _train(tmp_path, b, 4, run_steps=2)
    card = _train(tmp_path, b, 4)
    assert card["steps"] == 4 and len(card["runs"]) == 2 and card["runs"][1]["start_step"] == 2
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    rows = (b / "learning_curve.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "2", "4"]
    assert (b / "learning_curve.png").stat().st_size > 1000
    assert "learning_curve.png" in (b / "README.md").read_text()
    st = json.loads((b / "checkpoint" / "state.json").read_text())
    assert st["step"] == 4 and st["config"]["mode"] == "hyperprior"
    # finished: running the command again does nothing and returns the card
    again = _train(tmp_path, b, 4)
    assert again["steps"] == 4
    # the committed form (state.json + model.safetensors, no optimizer file) also resumes
    (b / "checkpoint" / "train.safetensors").unlink()
    more = _train(tmp_path, b, 6)
    assert more["steps"] == 6


def test_training_stop_file_checkpoints(tmp_path):
    _fake_photoset(tmp_path / "photos")
    out = tmp_path / "c"
    out.mkdir()
    (out / "STOP").write_text("")
    card = _train(tmp_path, out, 10)
    assert card["steps"] == 1  # one step, then the STOP file ends the run with a checkpoint
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 1


def test_photoset_licences_and_split(tmp_path):
    from gr_semcom.semantic import photoset

    dep5 = ("Format: x\n\nFiles: *\nCopyright: a\nLicense: GPL-2+\n\nFiles: nature/Aqua.jpg nature/Dune.jpg\n"
            "Copyright: b\nLicense: CC-BY-SA-3.0\n")
    assert photoset.licence_for(dep5, "Aqua.jpg") == "CC-BY-SA-3.0"
    assert photoset.licence_for(dep5, "nature/Dune.jpg") == "CC-BY-SA-3.0"
    assert photoset.licence_for(dep5, "Other.jpg") == "GPL-2+"
    root = _fake_photoset(tmp_path / "p")
    tr, te = photoset.load_photos("train", root), photoset.load_photos("test", root)
    assert len(tr) == 3 and len(te) == 2 and not {n for n, _ in tr} & {n for n, _ in te}
    with pytest.raises(ValueError):
        photoset.load_photos("val", root)
    rng = np.random.default_rng(0)
    c = photoset.random_crop(tr[0][1], 64, rng)
    assert c.shape == (64, 64, 3) and c.dtype == np.uint8
    assert photoset.centre_crop(te[0][1], 128).shape == (128, 128, 3)


def test_real_manifest_holds_out_one_whole_source():
    from gr_semcom.semantic import photoset

    try:
        m = photoset.manifest()
    except FileNotFoundError:
        pytest.skip("photos not fetched (bash scripts/fetch_photos.sh)")
    test_sources = {e["source"] for e in m["photos"] if e["split"] == "test"}
    train_sources = {e["source"] for e in m["photos"] if e["split"] == "train"}
    assert test_sources == {photoset.HELD_OUT} and photoset.HELD_OUT not in train_sources
    assert all(e["licence"] for e in m["photos"])


def test_blockiness_sees_a_32_pixel_grid():
    import skimage.data
    from PIL import Image

    from gr_semcom.semantic.blockiness import blockiness, excess_blockiness

    smooth = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((256, 256), Image.LANCZOS))
    assert 0.8 < blockiness(smooth) < 1.2  # a photo: no 32-pixel structure
    # constant 32x32 blocks of the same picture: every step is on the grid
    blocks = smooth.reshape(8, 32, 8, 32, 3).mean((1, 3), keepdims=True)
    blocky = np.broadcast_to(blocks, (8, 32, 8, 32, 3)).reshape(256, 256, 3).astype(np.uint8)
    noise = np.random.default_rng(0).normal(0, 2, blocky.shape)
    blocky_n = np.clip(blocky + noise, 0, 255).astype(np.uint8)
    assert blockiness(blocky_n) > 5
    assert excess_blockiness(blocky_n, smooth) > 4
    # a 16-pixel grid is also on the 32-pixel grid half the time; an 8-pixel shift is not
    assert blockiness(np.roll(blocky_n, 8, axis=(0, 1))) < 1.5
    with pytest.raises(ValueError):
        blockiness(smooth[:20, :20])
    assert math.isclose(excess_blockiness(smooth, smooth), 1.0)


def test_deepjscc_training_resumes_exactly(tmp_path):
    from safetensors.torch import load_file

    from gr_semcom.semantic.image_jscc import train_image_jscc

    _fake_photoset(tmp_path / "photos")
    kw = dict(steps=4, batch=2, crop=64, eval_every=2, data=str(tmp_path / "photos"), progress=False, seed=2)
    train_image_jscc(str(tmp_path / "a"), **kw)
    train_image_jscc(str(tmp_path / "b"), run_steps=2, **kw)
    card = train_image_jscc(str(tmp_path / "b"), **kw)
    assert card["steps"] == 4 and [r["esn0_db"] for r in card["test_awgn"]][0] == -3
    wa, wb = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    rows = (tmp_path / "b" / "learning_curve.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "2", "4"]


def test_device_pool_batches(tmp_path):
    """--pool: crops cut once (in worker processes), batches drawn from them."""
    from gr_semcom.semantic import photoset

    _fake_photoset(tmp_path / "photos")
    photos = [im for _, im in photoset.load_photos("train", tmp_path / "photos")]
    a = photoset.crop_pool(photos, 3, 64, seed=1, workers=2)
    b = photoset.crop_pool(photos, 3, 64, seed=1, workers=1)
    assert a.shape == (3, 3, 64, 64, 3) and np.array_equal(a, b)  # same crops in parallel or not
    card = _train(tmp_path, tmp_path / "p", 2, pool=3)
    assert card["steps"] == 2
