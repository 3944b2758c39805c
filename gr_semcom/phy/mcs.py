"""Modulation-and-coding choice per Es/N0 and the channel-use budget of a
digital scheme (used by the image schemes that must meet a CBR).

The table is the measured AWGN waterfall of this PHY (benchmarks/README.md,
"Coded BLER" and "MCS table", `benchmarks/ber_curves.py --bler-only`): each
entry is the lowest Es/N0 at which that modulation + LDPC rate delivered
every frame of a drained run (93 frames of rate 1/2, 889 of BPSK 1/4: 6
lost at 0 dB, best effort) over the GNU Radio chain; above it the scheme
with the most information bits per channel use wins. 64QAM moved from 16
to 14 dB when the link runner stopped counting frames still being decoded
as lost (0 of 93 lost at 14-18 dB; 1 of 93 at 13 dB). Below the first threshold the most robust entry is used
anyway (best effort: frames are then lost and the schemes' erasure handling
shows).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from .frame import FrameSpec
from .framing import OVERHEAD

#: (lowest Es/N0 dB, modulation, LDPC rate) in increasing order
MCS_TABLE = (
    (0.0, "bpsk", "1/4"),
    (3.0, "qpsk", "1/2"),
    (8.0, "16qam", "1/2"),
    (14.0, "64qam", "1/2"),
)


def choose_mcs(esn0_db: float, base: FrameSpec | None = None) -> FrameSpec:
    """The frame spec (modulation, rate) for this Es/N0 per :data:`MCS_TABLE`."""
    base = base or FrameSpec()
    pick = MCS_TABLE[0]
    for row in MCS_TABLE:
        if esn0_db >= row[0]:
            pick = row
    return replace(base, modulation=pick[1], code_rate=pick[2])


def burst_symbols(spec: FrameSpec) -> int:
    """Channel uses (symbols incl. preamble, pilots and guard) of one burst."""
    return spec.n_symbols + spec.guard


def pdu_channel_uses(nbytes: int, spec: FrameSpec) -> int:
    """Channel uses of one PDU of ``nbytes``: whole bursts, each carrying
    ``capacity - OVERHEAD`` PDU bytes."""
    per = spec.capacity - OVERHEAD
    return -(-max(nbytes, 1) // per) * burst_symbols(spec)


@dataclass(frozen=True)
class Budget:
    channel_uses: int  # allowed
    spec: FrameSpec  # the codewords-per-burst setting that carries the most bytes
    payload_bytes: int  # PDU bytes that fit

    def describe(self) -> dict:
        return {"budget_channel_uses": self.channel_uses, "budget_bytes": self.payload_bytes,
                "modulation": self.spec.modulation, "code_rate": self.spec.code_rate,
                "codewords_per_burst": self.spec.codewords}


def byte_budget(channel_uses: int, spec: FrameSpec, search: bool = True) -> Budget:
    """Largest PDU that fits in ``channel_uses``, trying 1..8 LDPC codewords
    per burst (shorter bursts waste less of a small budget); ``search=False``
    keeps the spec's own codewords per burst (a flowgraph's fixed PHY)."""
    best = None
    for cw in (range(1, 9) if search else (spec.codewords,)):
        s = replace(spec, codewords=cw)
        n = channel_uses // burst_symbols(s)
        b = n * (s.capacity - OVERHEAD)
        if best is None or b > best.payload_bytes:
            best = Budget(channel_uses, s, b)
    return best


def cbr_channel_uses(height: int, width: int, cbr: float, channels: int = 3) -> int:
    """CBR = channel uses / source symbols (3 H W real values, Seb's eq. 11)."""
    return int(cbr * channels * height * width)
