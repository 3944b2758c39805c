"""Over-the-air support tested without radios: SigMF record/replay, the
shipped HackRF-like recordings, CFO acquisition range, false alarms on noise,
missing-radio errors."""
import hashlib
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from gr_semcom.link import ota
from gr_semcom.phy.frame import FrameSpec
from gr_semcom.phy.recording import RecordingError, frame_fields, read_meta, read_samples, write_recording

ROOT = Path(__file__).resolve().parents[1]
RECORDINGS = sorted((ROOT / "hardware" / "recordings").glob("*.sigmf-meta"))
SPEC = FrameSpec(modulation="qpsk", code_rate="1/2", codewords=2)


@pytest.fixture(scope="module")
def file_tx():
    data = np.random.default_rng(5).integers(0, 256, 1500, dtype=np.uint8).tobytes()
    x, spans = ota.tx_baseband([({"payload_type": 1}, data)], SPEC)
    return data, x, spans


def test_sigmf_roundtrip_and_bad_recordings(tmp_path):
    x = (np.random.default_rng(0).standard_normal(5000) + 1j).astype(np.complex64)
    meta = write_recording(tmp_path / "a", x, 2e6, 433.9e6, "t", {"frame": frame_fields(SPEC), "scheme": "file"},
                           [(10, 100, "burst", None)])
    y, g = read_samples(meta)
    assert np.array_equal(x, y)
    assert g["core:sample_rate"] == 2e6 and g["capture"]["core:frequency"] == 433.9e6
    assert g["semcom:frame"]["modulation"] == "qpsk" and g["annotations"][0]["core:sample_count"] == 100
    assert {"name": "semcom", "version": "0.1.0", "optional": True} in g["core:extensions"]
    # corrupted data: the sha512 no longer matches
    raw = bytearray((tmp_path / "a.sigmf-data").read_bytes())
    raw[100] ^= 0xFF
    (tmp_path / "a.sigmf-data").write_bytes(bytes(raw))
    with pytest.raises(RecordingError):
        read_samples(meta)
    with pytest.raises(RecordingError, match="not found"):
        read_meta(tmp_path / "missing")
    doc = json.loads(meta.read_text())
    doc["global"]["core:datatype"] = "rf64_le"
    (tmp_path / "b.sigmf-meta").write_text(json.dumps(doc))
    (tmp_path / "b.sigmf-data").write_bytes(b"")
    with pytest.raises(RecordingError, match="not supported"):
        read_meta(tmp_path / "b")
    (tmp_path / "c.sigmf-meta").write_text("{not json")
    with pytest.raises(RecordingError, match="not SigMF"):
        read_meta(tmp_path / "c")
    with pytest.raises(RecordingError, match="NaN"):
        write_recording(tmp_path / "d", np.array([np.nan + 0j], np.complex64), 1e6)


def test_sigmf_blocks_record_and_read_ci16(tmp_path):
    from gnuradio import blocks, gr

    from gr_semcom.blocks.sigmf_blocks import sigmf_sink, sigmf_source
    from gr_semcom.phy.recording import write_meta

    x = np.exp(2j * np.pi * 0.01 * np.arange(3000)).astype(np.complex64) * 0.5
    tb = gr.top_block()
    snk = sigmf_sink(str(tmp_path / "cap"), 1e6, 915e6, "capture", "hackrf", '{"scheme": "file"}',
                     frame=frame_fields(SPEC))
    tb.connect(blocks.vector_source_c(x.tolist()), snk)
    tb.run()
    snk.close()
    y, g = read_samples(tmp_path / "cap", verify=False)
    assert np.allclose(x, y) and g["core:hw"] == "hackrf" and g["semcom:scheme"] == "file"
    # an SDR tool's ci16 capture (hackrf_transfer-style interleaved I/Q)
    iq = np.empty(2 * x.size, np.int16)
    iq[0::2], iq[1::2] = np.round(x.real * 32767), np.round(x.imag * 32767)
    iq.tofile(tmp_path / "ci.sigmf-data")
    write_meta(tmp_path / "ci", 1e6, 915e6, "ci16", {"frame": frame_fields(SPEC)}, datatype="ci16_le")
    tb = gr.top_block()
    src = sigmf_source(str(tmp_path / "ci.sigmf-meta"))
    vs = blocks.vector_sink_c()
    tb.connect(src, vs)
    tb.run()
    z = np.asarray(vs.data(), np.complex64)
    assert z.size == x.size and np.max(np.abs(z - x)) < 1e-3
    assert src.frame_spec() == SPEC


@pytest.mark.skipif(not RECORDINGS, reason="no shipped recordings")
@pytest.mark.parametrize("rec", RECORDINGS, ids=[r.name.split(".")[0] for r in RECORDINGS])
def test_shipped_recordings_decode(rec):
    g = read_meta(rec)
    res = ota.replay(rec)
    assert all(res.checked) and len(res.checked) == len(g["semcom:payloads"]), res.summary()
    assert res.frames_crc_fail == 0
    if g["semcom:scheme"] == "seb":
        n_img = sum(p.get("kind") == "image" for p in g["semcom:payloads"])
        assert len(res.images) == n_img
        assert not any(m["failed"] for m, _ in res.images)
    if g["semcom:channel"]:  # the receiver's SNR estimate sees the impairments, not the nominal Es/N0 only
        assert 8 < np.mean(res.snr_db) <= g["semcom:channel"]["esn0_db"] + 1.0


@pytest.mark.parametrize("cfo", [0.02, -0.02])
def test_cfo_acquisition_range(file_tx, tmp_path, cfo):
    """hardware/README.md states |CFO| <= 0.02 cycles/symbol (2 % of the symbol
    rate) with every HackRF-like impairment on top."""
    data, x, spans = file_tx
    y = ota.apply_channel(x, replace(ota.HACKRF_LIKE, cfo=cfo, seed=3), SPEC.sps)
    write_recording(tmp_path / "r", y, 1e6, 915e6, "", {"frame": frame_fields(SPEC), "scheme": "file",
                                                         "payloads": [{"sha256": hashlib.sha256(data).hexdigest()}]})
    res = ota.replay(tmp_path / "r")
    assert res.frames_ok == len(spans) and res.checked == [True], res.summary()


def test_truncated_recording_is_an_erasure(file_tx, tmp_path):
    data, x, spans = file_tx
    cut = (spans[2][0] + spans[2][1]) // 2  # in the middle of the third burst
    write_recording(tmp_path / "t", x[:cut], 1e6, 0.0, "", {"frame": frame_fields(SPEC), "scheme": "file"})
    res = ota.replay(tmp_path / "t")
    assert res.frames_ok == 2 and len(res.pdus) == 1
    meta, got = res.pdus[0]
    from gr_semcom.phy.framing import OVERHEAD

    per = SPEC.capacity - OVERHEAD  # payload bytes per frame
    assert not meta["complete"] and meta["missing"][0][0] == 2 * per
    assert got[: 2 * per] == data[: 2 * per]


def test_false_alarms_on_pure_noise():
    fa = ota.false_alarms(SPEC, seconds_of_samples=1.0, sample_rate=1e6, threshold=0.3)
    assert fa["detections_per_msample"] <= 5 and fa["frames_crc_ok"] == 0 and fa["pdus"] == 0, fa
    low = ota.false_alarms(SPEC, seconds_of_samples=0.5, sample_rate=1e6, threshold=0.2, seed=1)
    assert low["detections"] > 0, low  # the detector does fire on noise at a low threshold ...
    assert low["frames_crc_ok"] == 0 and low["pdus"] == 0, low  # ... and nothing gets through


@pytest.mark.parametrize("driver,args,hint", [("uhd", "type=b200,serial=none", "uhd_find_devices"),
                                              ("soapy", "driver=hackrf,serial=none", "soapysdr-module-hackrf")])
def test_missing_radio_is_a_clear_error(driver, args, hint):
    from gr_semcom.blocks.radio import RadioNotFoundError, radio_sink, radio_source

    for cls in (radio_source, radio_sink):
        with pytest.raises(RadioNotFoundError, match=hint):
            cls(driver, args)
    r = subprocess.run([sys.executable, "-m", "gr_semcom.cli", "ota", "rx", "--driver", driver, "--args", args,
                        "--seconds", "1", "--scheme", "file"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 2 and "Traceback" not in r.stderr and hint in r.stderr, r.stderr


def test_radios_lists_without_hardware():
    from gr_semcom.blocks.radio import find_radios

    found = find_radios("type=b200")
    assert set(found) == {"uhd", "soapy", "notes"} and isinstance(found["uhd"], list)
