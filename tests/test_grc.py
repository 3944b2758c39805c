import subprocess
from pathlib import Path

import yaml

from gr_semcom.grc import grc_block_dir, install_grc_config


def test_block_yaml_found_and_valid(tmp_path):
    files = sorted(grc_block_dir().glob("*.block.yml"))
    assert {f.name for f in files} >= {"gr_semcom_phy_tx.block.yml", "gr_semcom_phy_rx.block.yml"}
    for f in files:
        d = yaml.safe_load(f.read_text())
        assert d["category"].startswith("[Semantic Comms]")
    cfg = install_grc_config(tmp_path / "config.conf")
    assert str(grc_block_dir()) in cfg.read_text()


def test_semcom_grc_path_cli():
    out = subprocess.run([str(Path(".venv/bin/semcom").resolve()) if Path(".venv/bin/semcom").exists() else "semcom",
                          "grc-path"], capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()) == grc_block_dir()
