"""``semcom companion``: GNU Radio Companion on the project's interpreter.

GRC runs a flowgraph with the interpreter it runs on itself (``{python}`` in a
flowgraph's run command is GRC's ``sys.executable``). Debian's
``gnuradio-companion`` runs on ``/usr/bin/python3``, which cannot import
gr_semcom or torch; this starts GRC on the venv's interpreter instead
(``python -m gnuradio.grc``, the module behind Debian's launcher), with our
block YAML on ``GRC_BLOCKS_PATH``, so Execute runs every shipped flowgraph.

GRC runs a ``no_gui`` flowgraph inside the terminal named by its
``[grc] xterm_executable`` setting when that is an executable, and shows a
"missing xterm" dialog when the setting names no existing file. GNU Radio's
preferences read ``GR_CONF_GRC_XTERM_EXECUTABLE`` before its config files;
we set it to ``/dev/null``, which exists (no dialog) and is not executable,
so GRC runs headless flowgraphs itself: their log shows in GRC's console
panel and GRC's Kill button stops them (the shipped ones run until stopped and do
not read stdin).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from . import grc_block_dir

NO_TERMINAL = "/dev/null"


def companion_env(environ: dict | None = None) -> dict:
    """The environment GRC gets: our YAML on GRC_BLOCKS_PATH, the terminal setting."""
    env = dict(os.environ if environ is None else environ)
    paths = [p for p in env.get("GRC_BLOCKS_PATH", "").split(os.pathsep) if p]
    if str(grc_block_dir()) not in paths:
        paths.insert(0, str(grc_block_dir()))
    env["GRC_BLOCKS_PATH"] = os.pathsep.join(paths)
    env["GR_CONF_GRC_XTERM_EXECUTABLE"] = NO_TERMINAL
    return env


def companion_argv(files=()) -> list[str]:
    """GRC on this interpreter (the venv's when started as .venv/bin/semcom)."""
    return [sys.executable, "-m", "gnuradio.grc", *map(str, files)]


def problems(environ: dict | None = None) -> list[str]:
    """What keeps GRC from starting here, one line each (empty: it can start)."""
    env = os.environ if environ is None else environ
    out = []
    try:
        import gi

        gi.require_version("Gtk", "3.0")
        gi.require_version("PangoCairo", "1.0")
        gi.require_foreign("cairo", "Context")
    except (ImportError, ValueError) as exc:
        out.append(f"GTK 3 for Python is missing ({exc}): apt-get install gir1.2-gtk-3.0 python3-gi-cairo "
                   "(bash scripts/setup.sh installs them)")
    if not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
        out.append("no display (DISPLAY is not set): run it on a desktop, over `ssh -X`, or under `xvfb-run -a`")
    return out


def main(files) -> int:
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        print(f"semcom companion: no such flowgraph: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    found = problems()
    if found:
        for line in found:
            print(f"semcom companion: {line}", file=sys.stderr)
        return 2
    argv = companion_argv(files)
    os.execve(argv[0], argv, companion_env())
    return 0  # not reached
