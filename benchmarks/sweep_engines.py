"""The same sweep on the local engine (--workers 2) and on Dask (a local
cluster of 2 worker processes, started and closed inside the timing, as
``semcom sweep --engine dask --workers 2`` does), wall time side by side in
one run (issue 22; docs/cluster_sweeps.md).

Runs alternate (local, dask, local, dask, ...) so that a change in the
machine's load hits both; each run has a fresh output folder (no resumed
points). Besides wall time it checks that both engines wrote the same rows
(wall-clock columns aside) and prints a Markdown table.

    .venv/bin/python benchmarks/sweep_engines.py --schemes deepjscc,jpeg2000 --snr 0:12:6 \
        --n-images 4 --repeats 2 --out out/bench_engines
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import time
from pathlib import Path


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return sorted(({k: v for k, v in r.items() if not k.endswith("_s")} for r in rows),
                  key=lambda r: (r["scheme"], r["channel"], float(r["esn0_db"]), r["seed"], r["image"]))


def main(argv=None) -> int:
    from gr_semcom.eval import sweep

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--schemes", default="deepjscc,jpeg2000")
    ap.add_argument("--channels", default="awgn")
    ap.add_argument("--snr", default="0:12:6")
    ap.add_argument("--images", default="test256")
    ap.add_argument("--n-images", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2, help="runs per engine (alternating)")
    ap.add_argument("--out", default="out/bench_engines")
    ap.add_argument("--probe-points", type=int, default=0,
                    help="instead of the sweep: N probe points (each sleeps --probe-seconds in its own process), "
                         "the engines' own cost without the CPU load of GNU Radio points")
    ap.add_argument("--probe-seconds", type=float, default=2.0)
    a = ap.parse_args(argv)
    if a.probe_points:
        return probe(a)

    pts = sweep.points_for([s for s in a.schemes.split(",") if s], [c for c in a.channels.split(",") if c],
                           sweep.parse_snrs(a.snr), a.seeds)
    out = Path(a.out)
    times: dict[str, list[float]] = {"local": [], "dask": []}
    runs, rows = [], {}
    for k in range(a.repeats):
        for engine in ("local", "dask"):
            d = out / f"{engine}_{k}"
            shutil.rmtree(d, ignore_errors=True)
            cfg = sweep.SweepConfig(out=str(d), images=a.images, n_images=a.n_images)
            load = os.getloadavg()[0]
            t = time.monotonic()
            sweep.run_sweep(pts, cfg, workers=a.workers, engine=engine, progress=False)
            dt = time.monotonic() - t
            times[engine].append(dt)
            rows.setdefault(engine, _rows(d / "sweep_raw.csv"))
            runs.append({"engine": engine, "repeat": k, "wall_s": round(dt, 2), "load_1min_before": round(load, 2)})
            print(json.dumps(runs[-1]), flush=True)
    same = rows["local"] == rows["dask"]
    differ = sum(x != y for x, y in zip(rows["local"], rows["dask"])) + abs(len(rows["local"]) - len(rows["dask"]))
    med = {e: statistics.median(v) for e, v in times.items()}
    overhead = 100 * (med["dask"] - med["local"]) / med["local"]
    print(f"\n{len(pts)} points ({a.schemes}; {a.channels}; Es/N0 {a.snr}; {a.n_images or 'all'} images of "
          f"{a.images}; {a.seeds} seed(s)), {a.workers} workers, {os.cpu_count()} CPUs\n")
    print("| engine | " + " | ".join(f"run {k + 1} (s)" for k in range(a.repeats)) + " | median (s) |")
    print("|---|" + "---|" * (a.repeats + 1))
    for e in ("local", "dask"):
        print(f"| {e} | " + " | ".join(f"{t:.1f}" for t in times[e]) + f" | {med[e]:.1f} |")
    print(f"\nDask overhead on the median: {overhead:+.1f} %; same rows from both engines (first runs, wall-clock "
          f"columns aside): {same} ({differ} of {len(rows['local'])} rows differ)")
    (out / "sweep_engines.json").write_text(json.dumps({"points": len(pts), "runs": runs, "median_s": med,
                                                         "overhead_pct": overhead, "same_rows": same,
                                                         "rows_differing": differ}, indent=1))
    return 0


def probe(a) -> int:
    """Probe points on both engines, alternating: wall time against the ideal N x seconds / workers."""
    from gr_semcom.eval.engines import ProbeTask, run_points

    ideal = a.probe_points * a.probe_seconds / a.workers
    times: dict[str, list[float]] = {"local": [], "dask": []}
    starts: list[float] = []
    for k in range(a.repeats):
        for engine in ("local", "dask"):
            load = os.getloadavg()[0]
            st = run_points(range(a.probe_points), ProbeTask(a.probe_seconds), engine=engine, workers=a.workers,
                            progress=False)
            assert st.done == a.probe_points, st
            times[engine].append(st.wall_s)
            if engine == "dask":
                starts.append(st.startup_s)
            print(json.dumps({"engine": engine, "repeat": k, "wall_s": round(st.wall_s, 2),
                              "startup_s": round(st.startup_s, 2), "load_1min_before": round(load, 2)}), flush=True)
    print(f"\n{a.probe_points} probe points of {a.probe_seconds:g} s, {a.workers} workers: ideal {ideal:.1f} s\n")
    print("| engine | " + " | ".join(f"run {k + 1} (s)" for k in range(a.repeats)) + " | median (s) | over ideal |")
    print("|---|" + "---|" * (a.repeats + 2))
    for e in ("local", "dask"):
        m = statistics.median(times[e])
        print(f"| {e} | " + " | ".join(f"{t:.1f}" for t in times[e]) + f" | {m:.1f} | {100 * (m / ideal - 1):+.1f} % |")
    print(f"\nDask: starting the local cluster until a worker is there, median {statistics.median(starts):.1f} s "
          f"(runs: {', '.join(f'{t:.1f}' for t in starts)}); the rest, per point: "
          f"{(statistics.median(times['dask']) - statistics.median(starts) - ideal) * a.workers / a.probe_points:.3f} s "
          f"(local: {(statistics.median(times['local']) - ideal) * a.workers / a.probe_points:.3f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
