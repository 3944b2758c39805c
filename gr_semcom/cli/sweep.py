"""``semcom sweep``: the sub-parser and its command (the harness is
gr_semcom/eval/sweep.py, the engines gr_semcom/eval/engines.py).

``python -m gr_semcom.cli.sweep ARGS`` runs the same command as ``semcom sweep ARGS``."""
from __future__ import annotations

import argparse
import sys

from ..systems.registry import IMAGE_SCHEMES, SCHEMES
from .common import parse_fraction


def add_parser(sub) -> argparse.ArgumentParser:
    """Adds ``sweep`` to the sub-parsers ``sub`` of the ``semcom`` parser."""
    sw = sub.add_parser("sweep", help="schemes x channels x Es/N0 x seeds through the GNU Radio chain: tidy CSV, "
                                      "summary with 95 %% intervals, plots, image grid (resumable; on this machine "
                                      "or a Dask cluster)")
    add_arguments(sw)
    sw.set_defaults(func=cmd_sweep)
    return sw


def add_arguments(sw: argparse.ArgumentParser) -> None:
    sw.add_argument("--schemes", default=",".join(IMAGE_SCHEMES),
                    help="comma-separated, from: " + ", ".join(SCHEMES))
    sw.add_argument("--channels", default="awgn", help="comma-separated: awgn, rayleigh, rician, ...")
    sw.add_argument("--snr", default="-3:15:3", help="Es/N0 dB: start:stop:step (stop included) or a,b,c")
    sw.add_argument("--images", default="test256",
                    help="directory of images, or test256 (the 16 held-out photos, 256x256 centre crops); read "
                         "here and sent to the workers with each task")
    sw.add_argument("--n-images", type=int, default=0, help="first N images only")
    sw.add_argument("--size", type=int, default=None, help="resize + centre-crop a directory's images")
    sw.add_argument("--cbr", type=parse_fraction, default=1 / 30, help="the budget every scheme meets")
    sw.add_argument("--seeds", type=int, default=1)
    sw.add_argument("--engine", choices=("local", "dask"), default="local",
                    help="local: --workers processes on this machine; dask: the workers of a Dask cluster "
                         "(--scheduler), or a local one of --workers processes (docs/cluster_sweeps.md)")
    sw.add_argument("--scheduler", default=None, metavar="ADDRESS",
                    help="Dask scheduler, e.g. tcp://10.0.0.5:8786 (with --engine dask; --workers is then the "
                         "cluster's business)")
    sw.add_argument("--workers", type=int, default=2,
                    help="points at a time (each in a fresh process, one GNU Radio point each)")
    sw.add_argument("--point-timeout", type=float, default=3600.0, metavar="SECONDS",
                    help="a point running longer is killed and becomes a failed row with the reason (default 3600: "
                         "a hung point does not hold the sweep; 0 = no limit)")
    sw.add_argument("--capacity", action="store_true",
                    help="also the capacity-achieving-code accounting (Seb's eq. 11-12) on AWGN")
    sw.add_argument("--grid-snrs", default="", help="Es/N0 values for the image grid, e.g. 3,9,15")
    sw.add_argument("--grid-images", type=int, default=3)
    sw.add_argument("--models", default=None,
                    help="models directory (default: the package's models/; with Dask it must exist on every "
                         "worker)")
    sw.add_argument("--generator", default=None,
                    help="Multi-SC: bridge endpoint of `semcom serve --pipeline ip_adapter`, or 'tiny'")
    sw.add_argument("--gen-size", type=int, default=None, help="generated image side (512; 64 with 'tiny')")
    sw.add_argument("--steps", type=int, default=20, help="diffusion steps of the generator")
    sw.add_argument("--clip", default=None, help="CLIP directory / HF id for the CLIP metric (NaN if absent)")
    sw.add_argument("--out", required=True)
    from ..bridge.auth import add_curve_arguments

    add_curve_arguments(sw, "client")


def cmd_sweep(args) -> int:
    from ..eval.sweep import main_sweep

    if args.scheduler and args.engine != "dask":
        raise SystemExit("semcom sweep: --scheduler needs --engine dask")
    if args.workers < 1:
        raise SystemExit(f"semcom sweep: --workers must be >= 1, got {args.workers}")
    from ..bridge.auth import CurveConfigError, curve_options_from_args, export_client_env

    try:  # local workers inherit the environment; Dask workers need SEMCOM_CLIENT_KEY/SEMCOM_SERVER_KEY set there
        export_client_env(curve_options_from_args(args))
    except CurveConfigError as exc:
        raise SystemExit(f"semcom sweep: {exc}") from None
    return main_sweep(args)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="semcom")
    add_parser(ap.add_subparsers(dest="cmd", required=True))
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main(["sweep"] + sys.argv[1:] if sys.argv[1:2] != ["sweep"] else sys.argv[1:]))
