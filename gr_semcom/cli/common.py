"""Options every ``semcom`` command that runs the PHY shares: the frame
(waveform, modulation, LDPC rate, codewords per burst), the simulated channel
and the CBR budget."""
from __future__ import annotations

import argparse

from ..systems.options import cbr_value as parse_fraction  # noqa: F401 (the CBR type of every command)


def _add_phy_args(p: argparse.ArgumentParser) -> None:
    from ..phy.channel import CHANNELS
    from ..phy.constellations import MODULATIONS
    from ..phy.fec import CODE_RATES

    p.add_argument("--waveform", default="sc", choices=("sc", "ofdm"),
                   help="single-carrier bursts (default) or OFDM (64-point, 16 CP, 48 data carriers)")
    p.add_argument("--mod", default=None, choices=MODULATIONS,
                   help="modulation (default qpsk; image schemes: chosen from --snr, phy/mcs.py)")
    p.add_argument("--rate", default=None, choices=CODE_RATES,
                   help="LDPC code rate, gr-fec alist codes (default 1/2; image schemes: chosen from --snr)")
    p.add_argument("--codewords", type=int, default=None,
                   help="LDPC codewords per burst (default 4; image schemes: the most payload for the budget)")
    p.add_argument("--channel", default="awgn", choices=CHANNELS)
    p.add_argument("--snr", type=float, default=10.0, help="Es/N0 in dB per complex symbol (unit-energy symbols)")
    p.add_argument("--ebn0", type=float, default=None, help="give Eb/N0 in dB instead of --snr")
    p.add_argument("--cfo", type=float, default=0.0,
                   help="carrier offset: cycles per symbol (sc) or fraction of the subcarrier spacing (ofdm)")
    p.add_argument("--timing-offset", type=float, default=0.0, help="fractional sample delay (0..1)")
    p.add_argument("--sro-ppm", type=float, default=0.0, help="sample-rate offset in ppm")
    p.add_argument("--doppler", type=float, default=1e-3, help="fading fD*T per symbol")
    p.add_argument("--seed", type=int, default=0)


def _specs(args):
    from ..phy.channel import ChannelSpec, ebn0_to_esn0
    from ..phy.frame import FrameSpec
    from ..phy.ofdm import OfdmSpec

    kw = {"modulation": args.mod or "qpsk", "code_rate": args.rate or "1/2", "codewords": args.codewords or 4}
    spec = OfdmSpec(**kw) if args.waveform == "ofdm" else FrameSpec(**kw)
    esn0 = args.snr
    if args.ebn0 is not None:
        esn0 = ebn0_to_esn0(args.ebn0, spec.constellation.bits_per_symbol, spec.code.rate)
    chan = ChannelSpec(model=args.channel, esn0_db=esn0, cfo=args.cfo, timing_offset=args.timing_offset,
                       sro_ppm=args.sro_ppm, doppler=args.doppler, seed=args.seed)
    return spec, chan
