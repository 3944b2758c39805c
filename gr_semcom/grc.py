"""Where GNU Radio Companion finds our block YAML, and how to tell it."""
from __future__ import annotations

import configparser
from pathlib import Path


def grc_block_dir() -> Path:
    return Path(__file__).resolve().parent / "blocks" / "grc"


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
