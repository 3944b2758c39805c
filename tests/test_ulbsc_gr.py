"""ULBSC through GNU Radio: the blocks in a flowgraph (digital and analog
caption modes), the analog burst link, and `semcom transmit --scheme ulbsc`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("gnuradio")
import pmt  # noqa: E402
from gnuradio import gr  # noqa: E402

from shared import wait_for  # noqa: E402
from gr_semcom.blocks.analog import analog_rx, analog_spec, analog_tx  # noqa: E402
from gr_semcom.blocks.phy_hier import phy_rx, phy_tx  # noqa: E402
from gr_semcom.blocks.ulbsc_blocks import image_source, semantic_image_sink, ulbsc_decoder, ulbsc_encoder  # noqa: E402
from gr_semcom.phy.channel import ChannelSpec, make_channel  # noqa: E402
from gr_semcom.phy.frame import FrameSpec  # noqa: E402
from gr_semcom.semantic.metrics import bleu  # noqa: E402
from gr_semcom.link.sim import _collector, run_analog  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")


def _wait(cond, timeout):
    return wait_for(cond, timeout, 0.05)


@pytest.mark.parametrize("mode,analog_esn0_db", [("digital", None), ("analog", 12.0), ("analog", -10.0)],
                         ids=["digital", "analog", "analog-10dB"])
def test_ulbsc_flowgraph_delivers_caption_and_map(tmp_path, mode, analog_esn0_db):
    spec = FrameSpec(modulation="qpsk", code_rate="1/2", codewords=1)
    chan = ChannelSpec(model="awgn", esn0_db=12, cfo=0.005, timing_offset=0.3, seed=3)
    tb = gr.top_block()
    src = image_source(EXAMPLES, interval=0.3)
    enc = ulbsc_encoder(caption_mode=mode, saliency="u2netp")
    tx, ch, rx = phy_tx(spec), make_channel(chan, spec.sps), phy_rx(spec)
    # no analog burst gets through at -10 dB: a short pairing wait keeps the test fast
    dec = ulbsc_decoder(caption_mode=mode, pair_timeout=0.5 if (analog_esn0_db or 0) < 0 else 2.0)
    sink = semantic_image_sink(str(tmp_path), "rx")
    got, status = _collector("got"), _collector("status")
    tb.msg_connect(src, "out", enc, "in")
    tb.msg_connect(enc, "out", tx, "in")
    tb.connect(tx, ch, rx)
    tb.msg_connect(rx, "out", dec, "in")
    tb.msg_connect(dec, "out", sink, "in")
    tb.msg_connect(dec, "out", got, "in")
    tb.msg_connect(enc, "status", status, "in")
    if mode == "analog":
        aspec = analog_spec(codewords=1)
        atx, ach = analog_tx(aspec), make_channel(replace(chan, esn0_db=analog_esn0_db), aspec.sps)
        arx = analog_rx(aspec, n_symbols=dec.codec.deepsc.cfg.n_symbols)
        tb.msg_connect(enc, "analog", atx, "in")
        tb.connect(atx, ach, arx)
        tb.msg_connect(arx, "out", dec, "analog")
    tb.start()
    try:
        assert _wait(lambda: len(got.items) >= 2, 60), [pmt.to_python(s) for s in status.items]
    finally:
        tb.stop()
        tb.wait()
    metas = [pmt.to_python(pmt.car(m)) for m in got.items]
    caps = {m["caption"] for m in metas}
    if mode == "digital":
        assert caps == {"a cat lying on a table", "a cup of coffee on a saucer"}
    elif analog_esn0_db > 0:  # DeepSC over the analog burst, each image's caption against the one sent
        by_width = {m["control_shape"][1]: m for m in metas}  # chelsea.jpg 451 px wide, coffee.jpg 450
        cat, coffee = by_width[451]["caption"], by_width[450]["caption"]
        assert not by_width[451]["caption_erased"] and not by_width[450]["caption_erased"]
        # in DeepSC's corpus: arrives (near) word for word
        assert bleu([cat], ["a cat lying on a table"]) >= 50 and not {"cup", "coffee"} & set(cat.split()), cat
        # outside it (the channel-free DeepSC round trip already gives "a blue cup ... window"): the object
        assert {"cup", "coffee"} & set(coffee.split()) and "cat" not in coffee.split(), coffee
    else:  # -10 dB: below the analog burst detector's reach, the captions are erased, not made up
        assert caps == {""} and all(m["caption_erased"] for m in metas)
    assert all(not m["saliency_erased"] for m in metas)
    assert sorted(m["control_shape"] for m in metas) == [[300, 450], [300, 451]]
    assert len(sink.written) == 2 and all(os.path.exists(f"{s}_saliency.png") for s in sink.written)


def test_bad_image_is_reported_and_flowgraph_continues(tmp_path):
    (tmp_path / "a_bad.png").write_bytes(b"not an image at all")
    (tmp_path / "b_good.jpg").write_bytes(open(os.path.join(EXAMPLES, "chelsea.jpg"), "rb").read())
    tb = gr.top_block()
    src = image_source(str(tmp_path), interval=0.1)
    enc = ulbsc_encoder(caption="a cat", saliency="spectral")
    out, status = _collector("out"), _collector("status")
    tb.msg_connect(src, "out", enc, "in")
    tb.msg_connect(enc, "out", out, "in")
    tb.msg_connect(enc, "status", status, "in")
    tb.start()
    try:
        assert _wait(lambda: out.items and status.items, 30)
    finally:
        tb.stop()
        tb.wait()
    st = pmt.to_python(status.items[0])
    assert st["event"] == "encode_error" and "not an image" in st["error"]
    assert pmt.to_python(pmt.car(out.items[0]))["caption"] == "a cat"


def test_analog_burst_link_snr():
    rng = np.random.default_rng(0)
    x = ((rng.standard_normal(512) + 1j * rng.standard_normal(512)) / np.sqrt(2)).astype(np.complex64)
    for snr in (0.0, 10.0):
        r = run_analog(x, ChannelSpec(model="awgn", esn0_db=snr, cfo=0.01, timing_offset=0.4, seed=2))
        assert r.symbols is not None and r.symbols.size == 512
        measured = -10 * np.log10(np.mean(np.abs(r.symbols - x) ** 2))
        assert abs(measured - snr) < 0.8, (snr, measured)
        assert abs(r.snr_db - snr) < 0.8


def test_cli_transmit_ulbsc(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "gr_semcom.cli", "transmit", os.path.join(EXAMPLES, "chelsea.jpg"),
           "--scheme", "ulbsc", "--channel", "awgn", "--snr", "6", "--out", str(out),
           "--generator", "ipc:///tmp/semcom-nobody-listens.ipc", "--generator-timeout", "1"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "compression ratio" in p.stdout and "bytes sent" in p.stdout
    m = json.loads((out / "metrics.json").read_text())
    assert m["caption_received"] == "a cat lying on a table"
    assert m["bytes_sent"] < 40 and m["generated"] is False and m["generator_error"].startswith("timeout")
    assert (out / "received_saliency.png").exists() and (out / "received.json").exists()
    bad = tmp_path / "x.jpg"
    bad.write_text("nope")
    p = subprocess.run(cmd[:4] + [str(bad)] + cmd[5:], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "not an image" in p.stderr


def test_cli_transmit_ulbsc_with_a_generator(tmp_path):
    """--generator: the received caption + map go through the ZeroMQ bridge
    (echo pipeline: returns the control map, so the image is checkable)."""
    ep = f"ipc://{tmp_path}/gen.ipc"
    srv = subprocess.Popen([sys.executable, "-m", "gr_semcom.cli", "serve", "--pipeline", "echo", "--endpoint", ep],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # the server is bound once it says so (its imports take seconds on a busy machine)
        t0, line = time.monotonic(), ""
        while "listening" not in line and time.monotonic() - t0 < 120 and srv.poll() is None:
            line = srv.stdout.readline()
        assert "listening" in line, "the generator server did not start"
        out = tmp_path / "run"
        p = subprocess.run([sys.executable, "-m", "gr_semcom.cli", "transmit", os.path.join(EXAMPLES, "coffee.jpg"),
                            "--scheme", "ulbsc", "--snr", "10", "--out", str(out), "--generator", ep,
                            "--generator-timeout", "30"], capture_output=True, text=True, timeout=180)
    finally:
        srv.kill()
        srv.wait()
    assert p.returncode == 0, p.stderr[-2000:]
    assert "generated image: generated.png" in p.stdout, p.stdout[-1200:]
    from PIL import Image

    gen = np.asarray(Image.open(out / "generated.png"))
    ctrl = np.asarray(Image.open(out / "received_saliency.png").resize((512, 512)))
    assert gen.shape == (512, 512, 3)
    assert np.corrcoef(gen[:, :, 0].ravel().astype(float), ctrl.ravel().astype(float))[0, 1] > 0.9
