"""One options object per system (systems/options.py): its fields generate
`semcom transmit`'s flags, and every GRC block of the system has exactly the
parameters the options name, with the same defaults and choices."""
from __future__ import annotations

import argparse
import ast
import dataclasses
from fractions import Fraction

import pytest
import yaml

from gr_semcom.grc import grc_block_dir
from gr_semcom.systems.options import (DeepJsccOptions, Jpeg2000Options, MultiScOptions, SebOptions, UlbscOptions,
                                       cbr_value)

OPTIONS = (SebOptions, Jpeg2000Options, DeepJsccOptions, UlbscOptions, MultiScOptions)
# the PHY the encoder budgets for and the shape a lost stream decodes to belong to the frame / the image,
# not to a system's options
NOT_SYSTEM = {"modulation", "code_rate", "codewords", "analog_codewords", "height", "width"}


def _value(expr, dtype: str = "raw"):
    """A GRC default as a value: string parameters hold text, the others a
    Python literal (or a fraction such as 1/30)."""
    if dtype == "string":
        return "" if expr is None else str(expr)
    if isinstance(expr, (int, float)):
        return expr
    text = str(expr)
    if "/" in text and text.replace("/", "").isdigit():
        return float(Fraction(text))
    return ast.literal_eval(text)


@pytest.mark.parametrize("cls", OPTIONS, ids=[c.__name__ for c in OPTIONS])
def test_grc_blocks_match_the_options(cls):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    mapping = cls.grc_params()
    seen = set()
    for block in cls.GRC_BLOCKS:
        spec = yaml.safe_load((grc_block_dir() / f"{block}.block.yml").read_text())
        for p in spec["parameters"]:
            if p["id"] in NOT_SYSTEM:
                continue
            assert p["id"] in mapping, f"{block}: parameter {p['id']!r} is not a field of {cls.__name__}"
            f = fields[mapping[p["id"]]]
            seen.add(f.name)
            default = _value(p.get("default", ""), p.get("dtype", "raw"))
            assert default == pytest.approx(f.default) if isinstance(f.default, float) else default == f.default, \
                (block, p["id"], default, f.default)
            if p.get("options") and f.metadata.get("choices"):
                assert {_value(o) for o in p["options"]} <= set(f.metadata["choices"]), (block, p["id"])
    grc_fields = {f for f in mapping.values()}
    assert grc_fields <= seen, f"{cls.__name__}: fields {grc_fields - seen} have no GRC parameter"


def test_options_round_trip_through_argparse():
    ap = argparse.ArgumentParser()
    for cls in OPTIONS:
        cls.add_arguments(ap)
    ns = ap.parse_args(["--cbr", "1/20", "--set-size", "3", "--no-split-sets", "--caption-mode", "analog",
                        "--split", "random", "--max-regions", "2"])
    seb = SebOptions.from_args(ns)
    assert (seb.cbr, seb.set_size, seb.split) == (0.05, 3, False)
    assert Jpeg2000Options.from_args(ns).cbr == 0.05  # one --cbr for every system
    assert UlbscOptions.from_args(ns).caption_mode == "analog"
    m = MultiScOptions.from_args(ns)
    assert (m.split, m.max_regions, m.eps) == ("random", 2, 0.25)
    assert SebOptions.from_args(ap.parse_args([])) == SebOptions()
    with pytest.raises(SystemExit):
        ap.parse_args(["--cbr", "2"])
    with pytest.raises(argparse.ArgumentTypeError):
        cbr_value("x")
