"""Where GNU Radio Companion finds our block YAML and how to tell it; the import guard of our blocks;
how their path parameters resolve (GRC runs flowgraphs from their own folder)."""
from __future__ import annotations

import configparser
from pathlib import Path
from ..common import checkout_dir


def grc_block_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "blocks" / "grc"


def install_grc_config(config: Path | None = None) -> Path:
    """Add our YAML directory to ``[grc] local_blocks_path`` in ~/.gnuradio/config.conf."""
    config = config or Path.home() / ".gnuradio" / "config.conf"
    config.parent.mkdir(parents=True, exist_ok=True)
    cp = configparser.ConfigParser()
    if config.exists():
        cp.read(config)
    if not cp.has_section("grc"):
        cp.add_section("grc")
    paths = [p for p in cp.get("grc", "local_blocks_path", fallback="").split(":") if p]
    ours = str(grc_block_dir())
    if ours not in paths:
        paths.append(ours)
    cp.set("grc", "local_blocks_path", ":".join(paths))
    with config.open("w") as f:
        cp.write(f)
    return config


# First line of every block's ``imports`` (gr_semcom/blocks/grc/*.block.yml; tests/test_grc_companion.py
# checks it). GRC writes the imports at the top of the generated flowgraph, dropping repeated import lines,
# so the check runs once, before any gr_semcom import: run by an interpreter that cannot import gr_semcom
# (Debian's gnuradio-companion runs flowgraphs with /usr/bin/python3) the flowgraph stops with this one
# line instead of a traceback. Inside GRC (which execs the imports to evaluate blocks, with no __name__)
# and when imported as a module it does nothing.
IMPORT_GUARD = ("import sys, importlib.util; importlib.util.find_spec('gr_semcom') or __name__ != '__main__' or "
                "sys.exit(f'gr_semcom: {sys.executable} cannot import gr_semcom, so it cannot run this flowgraph; "
                "open the flowgraph with `semcom companion FILE.grc` (.venv/bin/semcom in the gr_semcom checkout, "
                "made by scripts/setup.sh) and press Execute there')")




def semcom_path(path: str) -> str:
    """A path parameter of a flowgraph block, made absolute.

    GRC runs a flowgraph with the flowgraph's folder as working directory, so
    the shipped defaults (``examples``, ``out/seb_flowgraph``,
    ``hardware/recordings/...``) mean the checkout's folders: a relative path
    that exists in the working directory is taken from there; otherwise, when
    its first component is a folder of the checkout (or ``out``, the
    checkout's output folder), from the checkout; otherwise from the working
    directory.
    """
    if not str(path):
        return str(path)
    p = Path(path).expanduser()
    if p.is_absolute():
        return str(p)
    if p.exists():
        return str(p.resolve())
    root = checkout_dir()
    first = p.parts[0] if p.parts else ""
    if root is not None and first not in ("", ".", "..") and (first == "out" or (root / first).exists()):
        return str(root / p)
    return str(p.resolve())
