"""GNU Radio Companion the way a new user opens it: `semcom companion FILE.grc`.

* Execute, as GRC does it: GRC's own Platform loads each shipped .grc,
  GRC's generator writes it next to the .grc, and GRC's run command (built by
  GRC's FlowGraph with the interpreter `semcom companion` gives GRC) runs it
  with the flowgraph's folder as working directory, the way GRC's Executor
  does; this test itself runs from a folder outside the repository. Each
  headless flowgraph delivers (complete PDUs, and its images where it writes
  any), each Qt GUI one runs on Qt's offscreen platform and delivers too; the
  radio ones stop with RadioNotFoundError. A run is stopped, like GRC's Kill
  button does, as soon as it has delivered.
* Under Xvfb: the documented command opens GRC's window, its block tree holds
  [Semantic Comms]; F6 (Execute) opens the flowgraph's Qt window and images
  land in the checkout's out/; F7 (Kill) stops it. Screenshots of both are
  kept in out/test_artifacts/.
* No two blocks of any shipped flowgraph overlap (GRC's own block sizes), and
  connections run left to right.
* A flowgraph run by an interpreter that cannot import gr_semcom stops with
  one line that says how to open GRC.

What a flowgraph delivered is read by a sitecustomize module put on
PYTHONPATH for these runs only (it reports the flowgraph's message_debug
counts, and GRC's block tree, to a JSON file); the flowgraphs, GRC and its
run command are not changed.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from gr_semcom.grc.companion import companion_env
from gr_semcom.grc import IMPORT_GUARD, checkout_dir, grc_block_dir, semcom_path

ROOT = Path(__file__).resolve().parents[1]
FG = ROOT / "flowgraphs"
FLOWGRAPHS = sorted(FG.glob("*.grc"))
ARTIFACTS = ROOT / "out" / "test_artifacts"
SEMCOM = ROOT / ".venv" / "bin" / "semcom"
WAIT_S = 90  # upper bound per flowgraph; a run stops as soon as it has delivered
IMAGE_SINKS = {"gr_semcom_png_file_sink": "directory", "gr_semcom_semantic_image_sink": "directory"}


def _gtk_missing() -> str | None:
    r = subprocess.run([sys.executable, "-c", "import gi; gi.require_version('Gtk', '3.0'); "
                        "from gi.repository import Gtk"], capture_output=True, text=True)
    return None if r.returncode == 0 else "GTK 3 introspection data missing (apt-get install gir1.2-gtk-3.0)"


def _grc_interpreter() -> str:
    """The interpreter GRC runs on when opened with `semcom companion`: the console script's
    interpreter (semcom execs `sys.executable -m gnuradio.grc`)."""
    if SEMCOM.is_file():
        line = SEMCOM.read_text().splitlines()[0]
        assert line.startswith("#!"), line
        return shlex.split(line[2:])[0]
    return sys.executable


_SITECUSTOMIZE = r'''
"""Test observation only (tests/test_grc_companion.py): reports to $SEMCOM_TEST_REPORT."""
import json, os, sys, threading, time

_REPORT = os.environ.get("SEMCOM_TEST_REPORT")


def _write(data):
    tmp = _REPORT + ".tmp%d" % os.getpid()
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, _REPORT)


def _flowgraph_counts(top_blocks):
    # the flowgraph's top block: its message_debug blocks' stored message counts
    while not top_blocks:
        time.sleep(0.2)
    tb = top_blocks[0]
    while True:
        time.sleep(0.5)
        try:
            counts = {k: v.num_messages() for k, v in list(vars(tb).items()) if hasattr(v, "num_messages")}
            _write({"executable": sys.executable, "cwd": os.getcwd(), "counts": counts})
        except Exception:
            # this probe thread races the flowgraph's own teardown (blocks
            # released, the report directory removed): a failed read is retried,
            # and a probe that never reads leaves the counts missing, which the
            # test reports
            continue


def _record_top_blocks():
    # every gr.top_block made in this process, recorded by its constructor
    from gnuradio import gr

    made, init = [], gr.top_block.__init__

    def record(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(self)

    gr.top_block.__init__ = record
    return made


def _grc_tree():
    # GNU Radio Companion: its block tree, once the main window shows it
    while "gnuradio.grc.gui.Application" not in sys.modules:
        time.sleep(0.2)
    from gi.repository import GLib, Gtk

    def dump():
        app = Gtk.Application.get_default()
        main = getattr(app, "main_window", None)
        if main is None or not main.get_visible():
            return True
        store = main.btwin.treestore
        tree = {}
        it = store.get_iter_first()
        while it is not None:
            kids, child = [], store.iter_children(it)
            while child is not None:
                kids.append(store.get_value(child, 0))
                child = store.iter_next(child)
            tree[store.get_value(it, 0)] = kids
            it = store.iter_next(it)
        if "Semantic Comms" not in tree:
            return True
        # show our blocks in the screenshot: collapse everything, expand [Semantic Comms]
        view = main.btwin.treeview
        view.collapse_all()
        it = store.get_iter_first()
        while it is not None:
            if store.get_value(it, 0) == "Semantic Comms":
                view.expand_row(store.get_path(it), False)
            it = store.iter_next(it)
        _write({"executable": sys.executable, "title": main.get_title(), "tree": tree,
                "pages": [p.file_path for p in main.get_pages()]})
        return False

    GLib.idle_add(lambda: GLib.timeout_add(300, dump) and False)


if _REPORT and os.environ.get("SEMCOM_TEST_GRC"):
    threading.Thread(target=_grc_tree, daemon=True).start()
elif _REPORT:
    threading.Thread(target=_flowgraph_counts, args=(_record_top_blocks(),), daemon=True).start()
'''

# What GRC does on Execute (gnuradio/grc/gui/Application.py FLOW_GRAPH_GEN / FLOW_GRAPH_EXEC,
# Notebook.get_generator, Executor._popen), minus the window: run by the interpreter GRC runs on.
_EXECUTE = r'''
import json, os, shlex, sys
from os.path import dirname
from shutil import which
from gnuradio import gr
from gnuradio.grc.core.platform import Platform

platform = Platform(version=gr.version(), version_parts=(gr.major_version(), gr.api_version(), gr.minor_version()),
                    prefs=gr.prefs())
platform.build_library()
fg = platform.make_flow_graph(sys.argv[1])
fg.rewrite()
fg.validate()
errors = [f"{e}" for e in fg.get_error_messages()]
if errors:
    sys.exit("flowgraph not valid: " + "; ".join(errors))
generator = platform.Generator(fg, dirname(sys.argv[1]))
generator.write()
args = shlex.split(fg.get_run_command(generator.file_path))
terminal = which(gr.prefs().get_string("grc", "xterm_executable", "xterm"))  # gui/Config.py xterm_executable
if generator.generate_options == "no_gui" and terminal:
    args = [terminal, "--"] + args if "gnome-terminal" in terminal else [terminal, "-e", " ".join(args)]
print(json.dumps({"args": args, "cwd": dirname(generator.file_path), "terminal": terminal,
                  "generate_options": generator.generate_options}), flush=True)
# GRC goes on running here; this stand-in ends without interpreter teardown, which once crashed (SIGSEGV)
# with the loader's docstring-extraction thread still about
os._exit(0)
'''


@pytest.fixture(scope="module")
def hooks(tmp_path_factory):
    d = tmp_path_factory.mktemp("hooks")
    (d / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    (d / "grc_execute.py").write_text(_EXECUTE)
    return d


def _image_dirs(doc: dict) -> list[Path]:
    """Where the flowgraph's image sinks write, as its run resolves it (working directory: its folder)."""
    params = {b["name"]: b["parameters"].get("value") for b in doc["blocks"] if b["id"] == "parameter"}
    out = []
    for b in doc["blocks"]:
        if b["id"] in IMAGE_SINKS and b["states"].get("state") == "enabled":
            v = b["parameters"][IMAGE_SINKS[b["id"]]]
            v = params.get(v, v.strip("'\""))
            cwd = os.getcwd()
            try:
                os.chdir(FG)
                out.append(Path(semcom_path(v)))
            finally:
                os.chdir(cwd)
    return out


def _pngs(dirs, since: float) -> list[Path]:
    return [p for d in dirs if d.is_dir() for p in d.glob("*.png") if p.stat().st_mtime >= since]


def _stop(proc: subprocess.Popen, timeout: float = 45) -> str:
    """GRC's Kill button: terminate(); output of the run."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        out += f"\n[test: still running {timeout} s after SIGTERM; killed]"
    return out


@pytest.mark.skipif(shutil.which("grcc") is None, reason="GNU Radio Companion not installed")
@pytest.mark.parametrize("grc", FLOWGRAPHS, ids=[g.stem for g in FLOWGRAPHS])
def test_execute_as_grc_does(grc, hooks, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the user's shell is anywhere; GRC runs the flowgraph from its folder
    doc = yaml.safe_load(grc.read_text())
    env = companion_env()
    env.update(PYTHONPATH=str(hooks), SEMCOM_TEST_REPORT=str(tmp_path / "report.json"),
               QT_QPA_PLATFORM="offscreen", PYTHONUNBUFFERED="1")
    python = _grc_interpreter()
    r = subprocess.run([python, str(hooks / "grc_execute.py"), str(grc)], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, f"return code {r.returncode}\n{r.stdout}{r.stderr}"
    run = json.loads(r.stdout.strip().splitlines()[-1])
    generated = FG / f"{doc['options']['parameters']['id']}.py"
    assert run["cwd"] == str(FG) and generated.is_file(), run
    assert run["terminal"] is None and run["args"][0] == python, run  # GRC runs it itself, on its interpreter
    image_dirs = _image_dirs(doc)
    t0 = time.time()
    proc = subprocess.Popen(run["args"], cwd=run["cwd"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # as gnuradio/grc/gui/Executor.py
    report = tmp_path / "report.json"
    counts, exited = {}, None
    try:
        while time.time() - t0 < WAIT_S:
            exited = proc.poll()
            if exited is not None:
                break
            if report.is_file():
                counts = json.loads(report.read_text())["counts"]
            if counts.get("pdus_out", 0) >= 1 and (not image_dirs or _pngs(image_dirs, t0)):
                break
            time.sleep(0.25)
    finally:
        out = _stop(proc)
    if grc.stem.startswith("ota_"):  # no radio here: one clear error naming what to check
        assert exited is not None and exited != 0 and "RadioNotFoundError" in out and "semcom radios" in out, out
        return
    assert exited is None, f"{grc.name} ended by itself (return code {exited}):\n{out[-6000:]}"
    info = json.loads(report.read_text())
    assert info["executable"] == python and info["cwd"] == str(FG), info
    assert counts.get("pdus_out", 0) >= 1, f"no complete PDU in {WAIT_S} s: {counts}\n{out[-4000:]}"
    if image_dirs:
        assert _pngs(image_dirs, t0), f"no image written to {image_dirs} in {WAIT_S} s\n{out[-4000:]}"
        assert all(checkout_dir() in d.parents for d in image_dirs), image_dirs  # not under flowgraphs/
        assert not any(FG in d.parents for d in image_dirs), image_dirs
    if doc["options"]["parameters"]["generate_options"] == "no_gui":
        assert proc.returncode == 0, f"return code {proc.returncode} after Kill:\n{out[-4000:]}"
    assert "Traceback" not in out, out[-6000:]


def test_without_gr_semcom_one_line(tmp_path):
    """Debian's gnuradio-companion runs flowgraphs with /usr/bin/python3, which has GNU Radio but not
    gr_semcom: the generated flowgraph stops with one line naming `semcom companion`, no traceback."""
    system = Path("/usr/bin/python3")
    if shutil.which("grcc") is None or not system.is_file():
        pytest.skip("needs Debian's GNU Radio (grcc, /usr/bin/python3)")
    if subprocess.run([str(system), "-c", "import gr_semcom"], capture_output=True, cwd=tmp_path).returncode == 0:
        pytest.skip("/usr/bin/python3 can import gr_semcom here")
    env = dict(os.environ, GRC_BLOCKS_PATH=str(grc_block_dir()))
    for name in ("ulbsc_awgn_headless", "seb_awgn_gui"):
        r = subprocess.run(["grcc", "-o", str(tmp_path), str(FG / f"{name}.grc")], capture_output=True, text=True,
                           env=env, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        env_run = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env_run["QT_QPA_PLATFORM"] = "offscreen"
        r = subprocess.run([str(system), "-u", str(tmp_path / f"{name}.py")], capture_output=True, text=True,
                           cwd=tmp_path, env=env_run, timeout=120)
        ours = [line for line in r.stderr.splitlines() if line.startswith("gr_semcom:")]
        assert r.returncode == 1 and "Traceback" not in r.stderr + r.stdout, r.stderr
        # only GNU Radio's own import-time notices (qtgui without matplotlib) may come before our line
        assert len(ours) == 1 and r.stderr.strip().splitlines()[-1] == ours[0], r.stderr
        assert "/usr/bin/python3 cannot import gr_semcom" in ours[0] and "semcom companion" in ours[0], ours


def test_every_block_yaml_starts_with_the_guard():
    for f in sorted(grc_block_dir().glob("*.block.yml")):
        imports = yaml.safe_load(f.read_text())["templates"]["imports"]
        assert imports.splitlines()[0] == IMPORT_GUARD, f.name


def test_paths_resolve_to_the_checkout_from_any_folder(tmp_path, monkeypatch):
    for cwd in (FG, tmp_path):
        monkeypatch.chdir(cwd)
        assert semcom_path("examples") == str(ROOT / "examples")
        assert semcom_path("out/seb_flowgraph") == str(ROOT / "out" / "seb_flowgraph")
        assert semcom_path("hardware/recordings/x.sigmf-meta") == str(ROOT / "hardware/recordings/x.sigmf-meta")
    (tmp_path / "mine").mkdir()
    assert semcom_path("mine") == str(tmp_path / "mine")  # what exists in the working directory wins
    assert semcom_path("results") == str(tmp_path / "results")  # new, not a checkout folder: here
    assert semcom_path("/abs/x") == "/abs/x" and semcom_path("") == ""


# ---------------------------------------------------------------- layout

@pytest.fixture(scope="module")
def sizes():
    if _gtk_missing():
        pytest.skip(_gtk_missing())
    if not os.environ.get("DISPLAY") and shutil.which("Xvfb") is None:
        pytest.skip("no display and no Xvfb (apt-get install xvfb)")
    from gr_semcom.grc.layout import measure_files

    return {Path(k).name: v for k, v in measure_files(FLOWGRAPHS).items()}


@pytest.mark.parametrize("grc", FLOWGRAPHS, ids=[g.stem for g in FLOWGRAPHS])
def test_no_two_blocks_overlap(grc, sizes):
    from gr_semcom.grc.layout import boxes, is_top_row, overlaps

    doc = yaml.safe_load(grc.read_text())
    ext = sizes[grc.name]
    assert set(ext) == {b["name"] for b in doc["blocks"]} | {doc["options"]["parameters"]["id"]}
    # 8 px to spare for font differences between this machine and the one that laid them out
    assert overlaps(doc, ext, clearance=8) == []
    box = boxes(doc, ext)
    top = {b["name"] for b in doc["blocks"] if is_top_row(b)}
    body_top = min(box[b["name"]][1] for b in doc["blocks"] if b["name"] not in top)
    assert all(box[n][3] < body_top for n in top)  # options, variables, parameters above the signal blocks
    for c in doc["connections"]:  # signal order, left to right
        assert box[c[0]][0] < box[c[2]][0], c


def test_make_flowgraphs_lays_out_what_it_writes(sizes):
    from gr_semcom.grc.layout import layout, overlaps

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import make_flowgraphs as mf
    finally:
        sys.path.pop(0)
    doc = mf.gui(mf.load("ulbsc_awgn_headless.grc"))
    for b in doc["blocks"]:
        b["states"]["coordinate"] = [8, 8]  # all on one spot
    ext = sizes["ulbsc_awgn_gui.grc"]
    assert overlaps(doc, ext)
    assert overlaps(layout(doc, ext), ext, clearance=8) == []

    def blocks(d):  # the shipped file is what the script writes, up to positions (fonts may differ here)
        return [{k: v for k, v in b.items() if k != "states"} for b in d["blocks"]], d["connections"]

    assert blocks(doc) == blocks(yaml.safe_load((FG / "ulbsc_awgn_gui.grc").read_text()))


# ---------------------------------------------------------------- GRC's window under Xvfb

def _screenshot(path: Path, env: dict) -> Path:
    if shutil.which("import"):
        subprocess.run(["import", "-window", "root", str(path)], env=env, check=True, timeout=30)
        return path
    path = path.with_suffix(".xwd")
    subprocess.run(["xwd", "-root", "-silent", "-out", str(path)], env=env, check=True, timeout=30)
    return path


def _window(name: str, env: dict) -> str:
    r = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", name], capture_output=True, text=True,
                       env=env)
    return r.stdout.split()[0] if r.stdout.split() else ""


@pytest.mark.skipif(shutil.which("Xvfb") is None or shutil.which("xdotool") is None,
                    reason="needs Xvfb and xdotool (scripts/setup.sh installs them)")
def test_companion_opens_grc_and_executes(hooks, tmp_path):
    """`semcom companion FILE.grc` under Xvfb: GRC's window opens with [Semantic Comms] in its block
    tree; F6 (Execute) runs the flowgraph on the venv's interpreter, its Qt window opens and the received
    images land in the checkout's out/; F7 (Kill) stops it. Screenshots: out/test_artifacts/."""
    if _gtk_missing():
        pytest.skip(_gtk_missing())
    if not SEMCOM.is_file():
        pytest.skip(".venv/bin/semcom missing (scripts/setup.sh)")
    import psutil

    from gr_semcom.grc.layout import virtual_display

    grc = FG / "ulbsc_awgn_gui.grc"
    doc = yaml.safe_load(grc.read_text())
    image_dirs = _image_dirs(doc)
    report = tmp_path / "grc.json"
    home = tmp_path / "home"  # GRC's own settings (recent files, window size) stay out of the user's
    home.mkdir()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shots = [ARTIFACTS / "grc_companion_ulbsc_awgn_gui.png", ARTIFACTS / "grc_companion_ulbsc_awgn_gui_running.png"]
    for shot in shots:
        shot.unlink(missing_ok=True)
    with virtual_display("1600x1000x24") as display:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GRC_", "GR_CONF_", "QT_QPA"))}
        env.update(DISPLAY=display, HOME=str(home), PYTHONPATH=str(hooks), SEMCOM_TEST_REPORT=str(report),
                   SEMCOM_TEST_GRC="1", XDG_CACHE_HOME=os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")))
        xenv = dict(env, HOME=str(Path.home()))
        proc = subprocess.Popen([str(SEMCOM), "companion", str(grc)], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            t0 = time.monotonic()
            window = ""
            while time.monotonic() - t0 < 60 and proc.poll() is None and not (window and report.is_file()):
                window = _window(grc.name, xenv)
                time.sleep(0.5)
            assert proc.poll() is None, proc.communicate()[0][-4000:]
            assert window, "no GRC window titled with the flowgraph"
            info = json.loads(report.read_text())
            subprocess.run(["xdotool", "windowmove", window, "0", "0", "windowsize", window, "1600", "1000"],
                           env=xenv, check=True)
            time.sleep(1.5)
            shots[0] = _screenshot(shots[0], xenv)
            # Execute (F6), as a user would press it
            t_exec = time.time()
            subprocess.run(["xdotool", "windowfocus", "--sync", window, "key", "F6"], env=xenv, check=True)
            qt_window = ""
            while time.time() - t_exec < WAIT_S and proc.poll() is None:
                qt_window = qt_window or _window(doc["options"]["parameters"]["title"].replace("(", "\\("
                                                                                            ).replace(")", "\\)"), xenv)
                if qt_window and _pngs(image_dirs, t_exec):
                    break
                time.sleep(0.5)
            running = [c for c in psutil.Process(proc.pid).children(recursive=True)
                       if str(FG / "ulbsc_awgn_gui.py") in " ".join(c.cmdline())]
            if qt_window:  # no window manager here: give the Qt window room in the screenshot
                subprocess.run(["xdotool", "windowmove", qt_window, "700", "60", "windowsize", qt_window, "880", "900"],
                               env=xenv)
            time.sleep(1.5)
            shots[1] = _screenshot(shots[1], xenv)
            subprocess.run(["xdotool", "windowfocus", "--sync", window, "key", "F7"], env=xenv, check=True)  # Kill
            gone, alive = psutil.wait_procs(running, timeout=30)
        finally:
            for c in psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []:
                c.kill()  # what this test started: GRC's flowgraph process, if Kill did not stop it
            out = _stop(proc, timeout=10)
    assert "Semantic Comms" in info["tree"], sorted(info["tree"])
    assert {"PHY", "ULBSC Encoder", "ULBSC Decoder", "Seb Encoder"} <= set(info["tree"]["Semantic Comms"]), info
    assert info["executable"] == _grc_interpreter(), info  # the interpreter Execute uses
    assert info["pages"] == [str(grc)] and grc.name in info["title"], info
    assert f"Executing: {_grc_interpreter()} -u {FG / 'ulbsc_awgn_gui.py'}" in out, out[-4000:]
    assert running and qt_window, f"no flowgraph process or Qt window after Execute:\n{out[-4000:]}"
    assert _pngs(image_dirs, t_exec), f"no image in {image_dirs} {WAIT_S} s after Execute:\n{out[-4000:]}"
    assert not alive, "Kill did not stop the flowgraph"
    assert "Traceback" not in out, out[-6000:]
    from PIL import Image

    for shot in shots:
        if shot.suffix == ".png":
            im = Image.open(shot)
            assert im.size == (1600, 1000) and len(im.convert("L").getcolors(1 << 16) or ()) > 8, shot
