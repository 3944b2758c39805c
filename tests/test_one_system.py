"""One system behind GRC and the CLI (issue 18): the compiled headless .grc
flowgraph and `semcom transmit` with the same options and images put the same
payload bytes on the PHY and get the same received fields / reconstructions."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("grcc") is None, reason="grcc (GNU Radio Companion) not installed")


def _flowgraph(name: str, tmp: Path, **params):
    from gr_semcom.grc import grc_block_dir

    env = dict(os.environ, GRC_BLOCKS_PATH=str(grc_block_dir()))
    r = subprocess.run(["grcc", "-o", str(tmp), str(ROOT / "flowgraphs" / f"{name}.grc")], capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    spec = importlib.util.spec_from_file_location(name, tmp / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return getattr(mod, name)(**params)


def _run_until(tb, port_block, port: str, n: int, limit: float = 240.0):
    """Start ``tb`` with a store on (block, port); stop once ``n`` messages came."""
    import pmt
    from gnuradio import blocks

    dbg = blocks.message_debug()
    tb.msg_connect((port_block, port), (dbg, "store"))
    tb.start()
    t0 = time.monotonic()
    try:
        while dbg.num_messages() < n and time.monotonic() - t0 < limit:
            time.sleep(0.05)
    finally:
        tb.stop()
        tb.wait()
    out = []
    for i in range(dbg.num_messages()):
        m = dbg.get_message(i)
        meta = pmt.to_python(pmt.car(m)) or {}
        data = pmt.cdr(m)
        arr = np.asarray(pmt.u8vector_elements(data), np.uint8) if pmt.is_u8vector(data) else \
            np.asarray(pmt.c32vector_elements(data), np.complex64)
        out.append((meta, arr.tobytes()))
    return out


def _cli(*args) -> subprocess.CompletedProcess:
    exe = ROOT / ".venv" / "bin" / "semcom"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "gr_semcom.cli"]
    r = subprocess.run(cmd + ["transmit", *map(str, args)], capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return r


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


SEB_MODELS = sorted((ROOT / "models").glob("seb_lam*/model.safetensors"))


@pytest.mark.skipif(not SEB_MODELS, reason="no trained Seb models in models/")
def test_seb_flowgraph_and_transmit_send_and_decode_the_same(tmp_path, gnuradio):
    from PIL import Image

    from gr_semcom.semantic.images import load_image
    from gr_semcom.semantic.seb.train import test_crops

    names, ims = test_crops()
    d = tmp_path / "images"
    d.mkdir()
    for n, im in zip(names[:2], ims[:2]):  # two images: one set of two (the flowgraph's set_size), no split
        Image.fromarray(im).save(d / f"{n}.png")
    tb = _flowgraph("seb_awgn_headless", tmp_path, snr_db=20, cfo=0.0, images=str(d), out_dir=str(tmp_path / "fg"))
    enc, dec = tb.enc, tb.dec
    from gnuradio import blocks

    sent_dbg = blocks.message_debug()
    tb.msg_connect((enc, "out"), (sent_dbg, "store"))
    got = _run_until(tb, dec, "out", 2)
    import pmt

    fg_sent, images_seen = [], 0  # the first set: its set packet (if the plan sends bases) + two image packets
    for i in range(sent_dbg.num_messages()):
        m = sent_dbg.get_message(i)
        fg_sent.append(bytes(np.asarray(pmt.u8vector_elements(pmt.cdr(m)), np.uint8)))
        images_seen += (pmt.to_python(pmt.car(m)) or {}).get("kind") == "image"
        if images_seen == 2:
            break
    assert images_seen == 2 and len(got) >= 2  # two images sent and decoded
    out = tmp_path / "cli"
    # the flowgraph's PHY: QPSK, LDPC 1/2, one codeword per burst
    _cli(d, "--scheme", "seb", "--channel", "awgn", "--snr", 20, "--cbr", "1/30", "--mod", "qpsk", "--rate", "1/2",
         "--codewords", 1, "--out", out)
    manifest = json.loads((out / "payloads.json").read_text())
    assert [m["sha256"] for m in manifest] == [_sha(b) for b in fg_sent]
    assert [m["kind"] for m in manifest if m["kind"] == "image"] == ["image", "image"]
    image_names = [m["name"] for m in manifest if m["kind"] == "image"]
    for k, (meta, png) in enumerate(got[:2]):
        fg_img = load_image(png)
        name = image_names[k]
        cli_img = np.asarray(Image.open(out / "recon" / f"{Path(name).stem}.png").convert("RGB"))
        assert not meta["failed"] and np.array_equal(fg_img, cli_img), name


def test_ulbsc_flowgraph_and_transmit_send_and_decode_the_same(tmp_path, gnuradio):
    d = tmp_path / "images"
    d.mkdir()
    for f in ("chelsea.jpg", "chelsea.jpg.txt"):  # the sidecar caption: no captioner weights needed
        shutil.copy(ROOT / "examples" / f, d / f)
    tb = _flowgraph("ulbsc_awgn_headless", tmp_path, snr_db=20, cfo=0.0, images=str(d), out_dir=str(tmp_path / "fg"))
    from gnuradio import blocks
    import pmt

    sent_dbg = blocks.message_debug()
    tb.msg_connect((tb.enc, "out"), (sent_dbg, "store"))
    got = _run_until(tb, tb.dec, "out", 1)
    assert got and sent_dbg.num_messages() >= 1
    fg_payload = bytes(np.asarray(pmt.u8vector_elements(pmt.cdr(sent_dbg.get_message(0))), np.uint8))
    out = tmp_path / "cli"
    _cli(d / "chelsea.jpg", "--scheme", "ulbsc", "--channel", "awgn", "--snr", 20, "--mod", "qpsk", "--rate", "1/2",
         "--codewords", 1, "--out", out)
    manifest = json.loads((out / "payloads.json").read_text())
    assert [m["sha256"] for m in manifest] == [_sha(fg_payload)]
    received = json.loads((out / "received.json").read_text())
    meta = got[0][0]
    assert received["caption"] == meta["caption"] and received["caption"]
    assert list(received["indices"]) == list(meta["indices"])
    sal = np.frombuffer(got[0][1], np.uint8).reshape(meta["shape"] if "shape" in meta else meta["control_shape"])
    from PIL import Image

    cli_sal = np.asarray(Image.open(out / "received_saliency.png").convert("L"))
    assert cli_sal.shape == sal.shape and np.abs(cli_sal.astype(int) - sal.astype(int)).max() <= 1


def test_multisc_flowgraph_and_transmit_send_the_same(tmp_path, gnuradio):
    d = tmp_path / "images"
    d.mkdir()
    shutil.copy(ROOT / "examples" / "coffee.jpg", d / "coffee.jpg")
    tb = _flowgraph("multisc_awgn_headless", tmp_path, snr_db=20, images=str(d))
    from gnuradio import blocks
    import pmt

    slice_dbg, cap_dbg = blocks.message_debug(), blocks.message_debug()
    tb.msg_connect((tb.enc, "slice"), (slice_dbg, "store"))
    tb.msg_connect((tb.enc, "captions"), (cap_dbg, "store"))
    got = _run_until(tb, tb.dec, "out", 1)
    assert got and slice_dbg.num_messages() >= 1
    fg_slice = bytes(np.asarray(pmt.u8vector_elements(pmt.cdr(slice_dbg.get_message(0))), np.uint8))
    cap_meta = [pmt.to_python(pmt.car(cap_dbg.get_message(i))) or {} for i in range(cap_dbg.num_messages())]
    assert cap_meta
    n_caps = int(cap_meta[0]["n_regions"])
    fg_caps = [m["caption"] for m in cap_meta[:n_caps]]
    out = tmp_path / "cli"
    # the flowgraph's options: uncoded captions, fusion split, eps 0.25, 4 regions, 64 px slice of at most
    # 400 B, attribute captions, CBR 1/30 at its slice PHY (QPSK, LDPC 1/2, one codeword per burst)
    _cli(d / "coffee.jpg", "--scheme", "multisc", "--channel", "awgn", "--snr", 20, "--cbr", "1/30", "--text-mode",
         "uncoded", "--split", "fusion", "--eps", 0.25, "--max-regions", 4, "--slice-side", 64, "--slice-bytes", 400,
         "--vlm", "attributes", "--mod", "qpsk", "--rate", "1/2", "--codewords", 1, "--out", out)
    manifest = json.loads((out / "payloads.json").read_text())
    assert manifest[0]["sha256"] == _sha(fg_slice)
    caps = json.loads((out / "metrics.json").read_text())["captions"]
    assert [c["sent"] for c in caps] == fg_caps and len(caps) == n_caps
    # received fields: the same corrected captions and slice box at 20 dB
    meta = got[0][0]
    assert [c["corrected"] for c in caps] == list(meta["captions_corrected"])
    assert json.loads((out / "metrics.json").read_text())["received"]["slice_box"] == list(meta["slice_box"])
