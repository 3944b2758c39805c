"""Generator bridge: protocol, server + client over tcp:// and ipc://, tiny
diffusers pipelines (the real pipeline classes, random weights), many
clients, a server that dies and comes back, malformed messages, and the GNU
Radio client block."""
import importlib.util
import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from shared import free_port

from gr_semcom.bridge import protocol as P  # numpy only
from gr_semcom.bridge.generators import MissingWeights, make_generator  # diffusers imported on use


def _have(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


# marks per test, not a skip of the module: the protocol test needs numpy only
needs_zmq = pytest.mark.skipif(not _have("zmq"), reason="pyzmq not installed")
needs_diffusers = pytest.mark.skipif(not _have("diffusers"), reason="diffusers not installed")
if _have("zmq"):
    from gr_semcom.bridge.client import BridgeError, BridgeTimeout, GeneratorClient
    from gr_semcom.bridge.server import GeneratorServer




@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory):
    pytest.importorskip("zmq")
    pytest.importorskip("diffusers")
    ipc = f"ipc://{tmp_path_factory.mktemp('ipc')}/gen.ipc"
    tcp = f"tcp://127.0.0.1:{free_port()}"
    srv = GeneratorServer(lambda: make_generator("controlnet", tiny=True), [tcp, ipc], workers=2).start()
    yield srv, tcp, ipc
    srv.stop()


def _req(caption="a red car", seed=0, **kw):
    return P.GenerateRequest(id=0, captions=[caption], seed=seed, steps=2, width=64, height=64,
                             control=np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1)), **kw)


def test_protocol_roundtrip_and_validation():
    req = _req(image_prompt=np.zeros((8, 8, 3), np.uint8))
    h, arrays = P.decode(req.to_frames())
    r2 = P.GenerateRequest.from_message(h, arrays)
    assert r2.captions == ["a red car"] and np.array_equal(r2.control, req.control)
    assert r2.image_prompt.shape == (8, 8, 3)
    with pytest.raises(P.ProtocolError) as e:
        P.decode([b"\xff\x00"])
    assert e.value.code == "bad_request"
    with pytest.raises(P.ProtocolError) as e:
        P.decode([json.dumps({"schema": 99, "op": "ping"}).encode()])
    assert e.value.code == "schema"
    bad = P.encode({"op": "generate", "id": 1}, {"control": np.zeros((4, 4), np.uint8)})
    with pytest.raises(P.ProtocolError):
        P.decode(bad[:1])  # frame count does not match the header
    h = json.loads(bad[0])
    h["frames"][0]["shape"] = [5, 5]
    with pytest.raises(P.ProtocolError) as e:
        P.decode([json.dumps(h).encode(), bad[1]])
    assert e.value.code == "bad_frame"
    with pytest.raises(P.ProtocolError):
        P.GenerateRequest.from_message({"id": 1, "width": 500, "height": 512}, {})


@pytest.mark.parametrize("which", ["tcp", "ipc"])
def test_one_request_end_to_end(tiny_server, which):
    srv, tcp, ipc = tiny_server
    with GeneratorClient(tcp if which == "tcp" else ipc, timeout=60) as c:
        assert c.ping()["pipeline"] == "controlnet"
        a = c.generate(_req(seed=3))
        b = c.generate(_req(seed=3))
        d = c.generate(_req(seed=4))
    assert a.image.shape == (64, 64, 3) and a.image.dtype == np.uint8
    assert a.png[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.array_equal(a.image, b.image)  # seeded: same request, same image
    assert not np.array_equal(a.image, d.image)
    assert a.header["seconds"]["generate"] > 0 and a.seconds >= a.header["seconds"]["server"]


def test_100_requests_from_4_clients_none_lost_or_crossed(tiny_server):
    srv, tcp, ipc = tiny_server
    results, errors = {}, []

    def run(k):
        try:
            with GeneratorClient(tcp if k % 2 else ipc, timeout=120) as c:
                for i in range(25):
                    cap = f"client {k} request {i}"
                    r = c.generate(_req(cap, seed=k * 100 + i))
                    results[(k, i)] = (r.header["prompt"], r.header["seed"], r.image.shape)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(repr(exc))

    ts = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)
    assert not errors, errors
    assert len(results) == 100
    for (k, i), (prompt, seed, shape) in results.items():
        assert prompt == f"client {k} request {i}" and seed == k * 100 + i and shape == (64, 64, 3)


def test_malformed_messages_get_error_replies_and_server_stays_up(tiny_server):
    srv, tcp, _ = tiny_server
    # 60 s: run alone, the last generate is the pipeline's first (torch warm-up, >10 s on a loaded 2-core box)
    with GeneratorClient(tcp, timeout=60) as c:
        cases = {
            "bad_request": [b"this is not json"],
            "schema": [json.dumps({"schema": 7, "op": "generate", "id": 5}).encode()],
            "bad_frame": [json.dumps({"schema": 1, "op": "generate", "id": 6, "frames": [
                {"name": "control", "encoding": "raw", "dtype": "object", "shape": [2]}]}).encode(), b"xx"],
            "too_large": P.encode({"op": "generate", "id": 8}, {"control": np.zeros((1, 1), np.uint8)})[:1]
            + [b"\0" * (P.MAX_FRAME + 1)],
        }
        for code, frames in cases.items():
            if code == "too_large":
                h = json.loads(frames[0])
                h["frames"][0]["shape"] = [P.MAX_FRAME + 1]
                frames = [json.dumps(h).encode(), frames[1]]
            h, _, _, _ = c.send_frames(frames, None)
            assert h["ok"] is False and h["error"] == code, (code, h)
        # a valid request for the wrong pipeline, and a pipeline error
        with pytest.raises(BridgeError) as e:
            c.generate(_req(pipeline="ip_adapter"))
        assert e.value.code == "wrong_pipeline"
        r = P.GenerateRequest(id=0, captions=["no map"], steps=1, width=64, height=64)
        with pytest.raises(BridgeError) as e:
            c.generate(r)
        assert e.value.code == "generation_failed" and "control" in e.value.detail
        assert c.ping()["ok"] and c.generate(_req()).image.shape == (64, 64, 3)


def _serve(endpoint):
    return subprocess.Popen([sys.executable, "-m", "gr_semcom.cli", "serve", "--pipeline", "echo",
                             "--endpoint", endpoint], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_up(c, deadline=30):
    t0 = time.monotonic()
    while time.monotonic() - t0 < deadline:
        try:
            return c.ping(timeout=0.5)
        except BridgeTimeout:
            pass
    raise AssertionError("server did not come up")


@needs_zmq
def test_server_killed_then_restarted_client_recovers():
    ep = f"tcp://127.0.0.1:{free_port()}"
    proc = _serve(ep)
    try:
        c = GeneratorClient(ep, timeout=2.0)
        _wait_up(c)
        assert c.generate(_req()).image.shape == (64, 64, 3)
        proc.kill()
        proc.wait()
        t0 = time.monotonic()
        with pytest.raises(BridgeTimeout):
            c.generate(_req())
        assert time.monotonic() - t0 < 4.0  # bounded by the timeout, no hang
        proc = _serve(ep)
        _wait_up(c)
        r = c.generate(_req("after restart"))
        assert r.header["prompt"] == "after restart" and c.reconnects >= 1
    finally:
        proc.kill()
        proc.wait()


@needs_zmq
@needs_diffusers
def test_missing_weights_error_names_them(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingWeights) as e:
        make_generator("controlnet", model=str(tmp_path / "no-sd"), controlnet=str(tmp_path / "no-cn"))
    assert "no-cn" in str(e.value) and "semcom models download" in str(e.value)
    out = subprocess.run([sys.executable, "-m", "gr_semcom.cli", "serve", "--pipeline", "text", "--model",
                          str(tmp_path / "absent"), "--endpoint", f"tcp://127.0.0.1:{free_port()}"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "absent" in out.stderr and "Traceback" not in out.stderr


@needs_diffusers
def test_saved_tiny_pipeline_loads_with_from_pretrained(tmp_path):
    """The real loading path (from_pretrained, local directory, offline) on a pipeline saved here."""
    from gr_semcom.bridge.generators import DiffusersGenerator, tiny_pipeline

    tiny_pipeline("text").save_pretrained(tmp_path / "sd")
    g = DiffusersGenerator.from_pretrained("text", model=str(tmp_path / "sd"))
    img = g.generate(P.GenerateRequest(id=1, captions=["x"], steps=1, width=32, height=32))
    assert img.shape == (32, 32, 3)


@needs_diffusers
def test_tiny_ip_adapter_pipeline_uses_image_prompt():
    g = make_generator("ip_adapter", tiny=True)
    base = dict(id=1, captions=["a vase"], steps=2, width=32, height=32, seed=1)
    a = g.generate(P.GenerateRequest(image_prompt=np.zeros((32, 32, 3), np.uint8), **base))
    b = g.generate(P.GenerateRequest(image_prompt=np.full((32, 32, 3), 255, np.uint8), **base))
    assert a.shape == (32, 32, 3) and not np.array_equal(a, b)


@needs_zmq
def test_gnuradio_client_block_times_out_keeps_running_and_recovers(tmp_path):
    pytest.importorskip("gnuradio.gr")
    import pmt
    from gnuradio import gr

    from gr_semcom.blocks.generator_blocks import generator_client, png_file_sink
    from gr_semcom.blocks.pdu_util import make_pdu
    from gr_semcom.link.sim import _collector

    ep = f"tcp://127.0.0.1:{free_port()}"
    tb = gr.top_block()
    cli = generator_client(ep, timeout=1.0)
    out, err = _collector("out"), _collector("err")
    sink = png_file_sink(str(tmp_path / "img"), "gen")
    tb.msg_connect(cli, "out", out, "in")
    tb.msg_connect(cli, "out", sink, "in")
    tb.msg_connect(cli, "error", err, "in")
    ctrl = np.zeros((16, 16), np.uint8)
    pdu = make_pdu({"captions": ["a boat"], "control_shape": [16, 16], "width": 32, "height": 32}, ctrl)
    tb.start()
    proc = None
    try:
        cli._post(pmt.intern("in"), pdu)  # no server yet: timeout -> error message
        cli._post(pmt.intern("in"), make_pdu({"captions": ["bad"], "control_shape": [3, 3]}, ctrl))
        t0 = time.monotonic()
        while len(err.items) < 2 and time.monotonic() - t0 < 10:
            time.sleep(0.05)
        codes = sorted(pmt.to_python(m)["error"] for m in err.items)
        assert codes == ["bad_input", "timeout"], codes
        proc = _serve(ep)
        time.sleep(1.0)
        t0 = time.monotonic()
        while not out.items and time.monotonic() - t0 < 20:
            if len(err.items) < 10 and cli.q.empty():
                cli._post(pmt.intern("in"), pdu)
            time.sleep(0.5)
        assert out.items, [pmt.to_python(m) for m in err.items]
    finally:
        tb.stop()
        tb.wait()
        if proc:
            proc.kill()
            proc.wait()
    meta = pmt.to_python(pmt.car(out.items[0]))
    assert meta["captions"] == ["a boat"] and meta["shape"] == [32, 32, 3]
    files = sorted((tmp_path / "img").glob("gen_*.png"))
    assert files and files[0].read_bytes()[:4] == b"\x89PNG"
    assert json.loads(files[0].with_suffix(".json").read_text())["captions"] == ["a boat"]
    assert P.png_decode(files[0].read_bytes()).shape == (32, 32, 3)


def test_stock_gnuradio_zmq_message_blocks_through_the_gateway(tiny_server):
    """GRC users without our client block: ZMQ PUSH Message Sink -> semcom
    gateway -> server -> ZMQ PULL Message Source, pmt.serialize_str frames."""
    pytest.importorskip("gnuradio.zeromq")
    import pmt
    from gnuradio import gr, zeromq

    from gr_semcom.blocks.pdu_util import make_pdu
    from gr_semcom.blocks.generator_gateway import GrGateway
    from gr_semcom.link.sim import _collector

    _, tcp, _ = tiny_server
    a, b = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    class relay(gr.basic_block):  # stands in for the decoder that feeds the sink
        def __init__(self):
            gr.basic_block.__init__(self, "relay", None, None)
            self.message_port_register_in(pmt.intern("in"))
            self.message_port_register_out(pmt.intern("out"))
            self.set_msg_handler(pmt.intern("in"), self.handle)

        def handle(self, m):
            self.message_port_pub(pmt.intern("out"), m)

    tb = gr.top_block()
    snk = zeromq.push_msg_sink(a, 100, True)
    src = zeromq.pull_msg_source(b, 100, True)
    got, rel = _collector("got"), relay()
    tb.msg_connect(rel, "out", snk, "in")
    tb.msg_connect(src, "out", got, "in")
    gw = GrGateway(tcp, a, b, timeout=30)
    th = threading.Thread(target=gw.serve_forever, daemon=True)
    tb.start()
    th.start()
    try:
        ctrl = np.zeros((16, 16), np.uint8)
        good = make_pdu({"captions": ["a boat"], "control_shape": [16, 16], "width": 32, "height": 32,
                         "steps": 2}, ctrl)
        rel._post(pmt.intern("in"), good)
        rel._post(pmt.intern("in"), make_pdu({"captions": ["x"], "control_shape": [3, 3]}, ctrl))
        t0 = time.monotonic()
        while len(got.items) < 2 and time.monotonic() - t0 < 30:
            time.sleep(0.05)
    finally:
        gw.stop()
        th.join(5)
        tb.stop()
        tb.wait()
    metas = [pmt.to_python(pmt.car(m)) for m in got.items]
    assert len(metas) == 2, metas
    ok = [m for m in metas if "error" not in m]
    assert len(ok) == 1 and ok[0]["captions"] == ["a boat"]
    png = bytes(pmt.u8vector_elements(pmt.cdr(got.items[metas.index(ok[0])])))
    assert P.png_decode(png).shape == (32, 32, 3)
    assert [m["error"] for m in metas if "error" in m] == ["bad_input"]
    # bytes that are no serialised PMT: an error PDU back, the gateway carries on
    bad = pmt.to_python(pmt.car(pmt.deserialize_str(gw.handle(b"\x00 not a pmt", None))))
    assert bad["error"] == "bad_input"
    assert gw.handled == 1 and gw.errors == 2
