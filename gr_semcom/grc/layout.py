"""Flowgraph canvases laid out with GNU Radio Companion's own block sizes.

GRC sizes a block on its canvas from the Pango layout of its title and
shown parameters and from its port labels (gnuradio/grc/gui/canvas/block.py,
``create_labels`` / ``create_shapes``); ``get_extents`` is the block's box
with its ports, which stick out left and right. ``measure`` loads flowgraphs
with GRC's GUI Platform and asks every block for exactly that, so it needs
GTK and a display (``measure_files`` starts a private Xvfb when there is
none). ``layout`` then places the flowgraph: the options block, variables and
parameters in a row at the top; below them the other blocks in columns by
signal order (a block's column is the longest chain of connections leading to
it), each column as wide as its widest block plus a gap, blocks in a column
stacked by the mean height of their inputs' blocks with a gap between them.
The gaps (40 px across, 24 px down) also absorb small font differences
between machines; ``overlaps`` is the check (tests/test_grc_companion.py).

    python -m gr_semcom.grc.layout measure FILE.grc...   # JSON {file: {block: [x0, y0, x1, y1]}}
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

GAP_X, GAP_Y, GRID, MARGIN = 40, 24, 8, 8
TOP_ROW_IDS = ("options", "parameter", "import", "snippet", "epy_module")


def is_top_row(block: dict) -> bool:
    return block["id"] in TOP_ROW_IDS or block["id"].startswith("variable")


# ---------------------------------------------------------------- measuring (GRC's GUI classes, needs a display)

def measure(paths) -> dict[str, dict[str, list[float]]]:
    """Each block's extents as GRC draws it, relative to its coordinate: {path: {name: [x0, y0, x1, y1]}}.
    Runs in this process: it initialises GTK (a display must be reachable)."""
    import gi

    gi.require_version("Gtk", "3.0")
    gi.require_version("PangoCairo", "1.0")
    from gi.repository import Gio, Gtk
    from gnuradio import gr
    from gnuradio.grc.gui.Platform import Platform  # first: gui.Actions alone is a circular import
    from gnuradio.grc.gui import Actions
    from gnuradio.grc.gui.canvas import flowgraph as canvas_flowgraph

    from .companion import companion_env

    os.environ["GRC_BLOCKS_PATH"] = companion_env()["GRC_BLOCKS_PATH"]
    if not Gtk.init_check(sys.argv)[0]:
        raise RuntimeError("GTK cannot open a display")
    platform = Platform(version=gr.version(), version_parts=(gr.major_version(), gr.api_version(),
                                                            gr.minor_version()),
                        prefs=gr.prefs(), install_prefix=gr.prefix())
    platform.build_library()
    # A canvas FlowGraph looks for GRC's main window for its context menu; sizes do not depend on it.
    app = Gtk.Application(application_id="org.gr_semcom.measure")  # kept alive: the default is a weak ref
    Gio.Application.set_default(app)
    canvas_flowgraph._ContextMenu = lambda main_window: None
    # View toggles as a new user has them (GRC's defaults, e.g. block IDs hidden), not as this user saved them.
    for action in Actions.actions._actions.values():
        if getattr(action, "preference_name", None):
            action.set_active(bool(action.default))
    out = {}
    for path in paths:
        fg = platform.make_flow_graph(str(path))
        fg.rewrite()
        fg.validate()
        sizes = {}
        for b in fg.blocks:
            b.create_labels()
            b.create_shapes()
            x, y = b.coordinate
            x0, y0, x1, y1 = b.get_extents()
            if b.comment:
                cx0, cy0, cx1, cy1 = b.get_extents_comment()
                x0, y0, x1, y1 = min(x0, cx0), min(y0, cy0), max(x1, cx1), max(y1, cy1)
            sizes[b.name] = [x0 - x, y0 - y, x1 - x, y1 - y]
        out[str(path)] = sizes
    del app
    return out


@contextlib.contextmanager
def virtual_display(size: str = "1600x1000x24"):
    """A private Xvfb for the block: yields its DISPLAY (':N')."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        raise FileNotFoundError("Xvfb is not installed (apt-get install xvfb; scripts/setup.sh installs it)")
    r, w = os.pipe()
    proc = subprocess.Popen([xvfb, "-displayfd", str(w), "-screen", "0", size, "-nolisten", "tcp"],
                            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    try:
        with os.fdopen(r) as f:
            number = f.readline().strip()
        if not number:
            raise RuntimeError("Xvfb did not start")
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(10)


def measure_files(paths) -> dict[str, dict[str, list[float]]]:
    """``measure`` in a subprocess of this interpreter, under a private Xvfb when no display is set."""
    paths = [str(Path(p).resolve()) for p in paths]
    cmd = [sys.executable, "-m", "gr_semcom.grc.layout", "measure", *paths]
    with contextlib.ExitStack() as stack:
        env = dict(os.environ)
        if not env.get("DISPLAY"):
            env["DISPLAY"] = stack.enter_context(virtual_display())
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"measuring block sizes failed:\n{r.stderr[-4000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- layout and check (plain data)

def _up(v: float) -> int:
    return int(-(-v // GRID) * GRID)


def columns(doc: dict) -> dict[str, int]:
    """Signal order: each block's column is the longest chain of connections ending at it
    (a connection closing a loop is ignored)."""
    names = [b["name"] for b in doc["blocks"] if not is_top_row(b)]
    preds = defaultdict(list)
    for c in doc.get("connections", []):
        if c[0] in names and c[2] in names and c[0] != c[2]:
            preds[c[2]].append(c[0])
    depth, visiting = {}, set()

    def visit(n):
        if n in depth:
            return depth[n]
        visiting.add(n)
        d = 0
        for p in preds[n]:
            if p not in visiting:
                d = max(d, visit(p) + 1)
        visiting.discard(n)
        depth[n] = d
        return d

    for n in names:
        visit(n)
    return depth


def layout(doc: dict, extents: dict[str, list[float]]) -> dict:
    """Sets ``states.coordinate`` of every block of ``doc`` (in place; returned): see the module docstring.
    ``extents``: this flowgraph's {block name: [x0, y0, x1, y1]} from ``measure``."""
    options = {"name": doc["options"]["parameters"]["id"], "states": doc["options"]["states"]}
    top = [options] + [b for b in doc["blocks"] if is_top_row(b)]
    x, row_bottom = MARGIN, MARGIN
    for b in top:
        x0, y0, x1, y1 = extents[b["name"]]
        b["states"]["coordinate"] = [_up(x - x0), _up(MARGIN - y0)]
        x = b["states"]["coordinate"][0] + x1 + GAP_X
        row_bottom = max(row_bottom, b["states"]["coordinate"][1] + y1)
    depth = columns(doc)
    body = [b for b in doc["blocks"] if not is_top_row(b)]
    preds = defaultdict(list)
    for c in doc.get("connections", []):
        preds[c[2]].append(c[0])
    order = {b["name"]: i for i, b in enumerate(body)}
    centre = {}
    y_start = _up(row_bottom + 2 * GAP_Y)
    left = MARGIN
    for d in range(max(depth.values(), default=-1) + 1):
        col = [b for b in body if depth[b["name"]] == d]

        def wanted(b):
            ys = [centre[p] for p in preds[b["name"]] if p in centre]
            return sum(ys) / len(ys) if ys else None

        col.sort(key=lambda b: (wanted(b) if wanted(b) is not None else float("inf"), order[b["name"]]))
        width = max(extents[b["name"]][2] - extents[b["name"]][0] for b in col)
        y_free = y_start
        for b in col:
            x0, y0, x1, y1 = extents[b["name"]]
            want = wanted(b)
            top_y = y_free if want is None else max(y_free, want - (y0 + y1) / 2)
            bx, by = _up(left - x0), _up(top_y - y0)
            b["states"]["coordinate"] = [bx, by]
            centre[b["name"]] = by + (y0 + y1) / 2
            y_free = by + y1 + GAP_Y
        left = _up(left + width + GAP_X)
    return doc


def boxes(doc: dict, extents: dict[str, list[float]]) -> dict[str, tuple[float, float, float, float]]:
    out = {}
    blocks = [{"name": doc["options"]["parameters"]["id"], "states": doc["options"]["states"]}] + doc["blocks"]
    for b in blocks:
        x, y = b["states"]["coordinate"]
        x0, y0, x1, y1 = extents[b["name"]]
        out[b["name"]] = (x + x0, y + y0, x + x1, y + y1)
    return out


def overlaps(doc: dict, extents: dict[str, list[float]], clearance: float = 0) -> list[tuple[str, str]]:
    """Pairs of blocks whose drawn boxes (with ports) come closer than ``clearance`` px."""
    bx = list(boxes(doc, extents).items())
    hits = []
    for i, (a, (ax0, ay0, ax1, ay1)) in enumerate(bx):
        for b, (bx0, by0, bx1, by1) in bx[i + 1:]:
            if ax0 < bx1 + clearance and bx0 < ax1 + clearance and ay0 < by1 + clearance and by0 < ay1 + clearance:
                hits.append((a, b))
    return hits


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "measure":
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    print(json.dumps(measure(argv[1:])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
