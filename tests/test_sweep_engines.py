"""The sweep's engines (gr_semcom/eval/engines.py, issue 22): the local engine
and a real Dask cluster on loopback (scheduler + 2 worker processes)."""
from __future__ import annotations

import csv
import math
import os
import signal
import time
from pathlib import Path

import pytest

from gr_semcom.common import MODELS
from gr_semcom.eval import engines as E

# the environment before any Dask nanny of this session wrote its settings into it
_ENV0 = ",".join(f"{k}={os.environ.get(k, '')}" for k in ("OMP_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_"))


def _timing(col: str) -> bool:
    """Wall-clock columns (encode_s, run_s, ...): the only ones two runs may differ in."""
    return col.endswith("_s")


def _cluster(n=2, allowed_failures=3):
    distributed = pytest.importorskip("distributed")
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures}):
        cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                                           dashboard_address=None, silence_logs=40)
    return cluster, distributed.Client(cluster)


def _alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def test_pending_dedup_and_failure_row():
    from gr_semcom.eval import sweep

    pts = [sweep.Point("seb", "awgn", 3.0, 0), sweep.Point("seb", "awgn", 6.0, 0), sweep.Point("seb", "awgn", 3.0, 0)]
    assert E.pending(pts, set()) == pts[:2]  # a repeat runs once
    assert E.pending(pts, {E.point_key(pts[0])}) == [pts[1]]  # resuming skips what the CSV has
    assert sweep.point_key(pts[1]) == sweep._key({"scheme": "seb", "channel": "awgn", "esn0_db": "6", "seed": "0",
                                              "accounting": ""})
    # the failure row is the one the local pool writes for a point that raises
    row = E.failure_row(pts[0], "ValueError: x")
    assert row == {"scheme": "seb", "channel": "awgn", "esn0_db": 3.0, "seed": 0, "accounting": "phy", "image": "",
                   "failed": True, "reason": "ValueError: x"}
    # a second result for a delivered key is counted and dropped
    st, got = E.EngineStats("local", 1, 2), []
    prog = E._Progress(2, "local", False)
    d = E._Deliver(st, got.append, E.failure_row, prog)
    out = E.PointOutput([{"image": "a"}])
    d(pts[0], E.point_key(pts[0]), "ok", out, "w1", 1.0)
    d(pts[0], E.point_key(pts[0]), "ok", out, "w2", 1.0)
    d(pts[1], E.point_key(pts[1]), "failed", "boom", "w2", 1.0)
    assert [(r.key, r.failed, r.worker) for r in got] == [(E.point_key(pts[0]), False, "w1"),
                                                          (E.point_key(pts[1]), True, "w2")]
    assert (st.done, st.failed, st.duplicates) == (1, 1, 1)
    assert got[1].rows == [E.failure_row(pts[1], "boom")]
    with pytest.raises(ValueError, match="unknown engine"):
        E.run_points([1], E.ProbeTask(0), engine="ray")


def test_local_engine_fresh_process_per_point_and_failures():
    got = []
    st = E.run_points(range(6), E.ProbeTask(0.05, fail=(2,), crash=(4,)), engine="local", workers=2,
                      on_result=got.append, progress=False)
    assert (st.points, st.done, st.failed, st.duplicates) == (6, 4, 2, 0)
    by = {r.key[0]: r for r in got}
    assert sorted(by) == list(range(6))
    ok = [by[k].rows[0] for k in (0, 1, 3, 5)]
    assert [r["value"] for r in ok] == [0, 1, 9, 25]
    pids = {r["pid"] for r in ok}
    assert len(pids) == 4 and os.getpid() not in pids  # every point in its own child process
    assert all(r["ppid"] == os.getpid() for r in ok)
    assert by[2].failed and by[2].reason == "RuntimeError: probe point 2 fails on purpose"
    assert by[4].failed and by[4].reason.startswith(f"point process died (signal {int(signal.SIGKILL)})")
    assert by[2].rows == [{"point": "2", "image": "", "failed": True, "reason": by[2].reason}]
    # a point past its time limit is a failure row, and its process is gone
    got = []
    st = E.run_points([7], E.ProbeTask(30), engine="local", workers=1, on_result=got.append, progress=False,
                      timeout=1.5)
    assert st.failed == 1 and got[0].reason == "point timed out after 1.5 s" and st.wall_s < 10


def test_local_engine_stops_at_once_when_the_writer_fails(tmp_path):
    """A writer that raises (or Ctrl-C) stops the sweep: no new point starts, the running one is killed."""
    marks = tmp_path / "marks"
    marks.mkdir()

    def on_result(r):
        raise OSError("disk full")

    t = time.monotonic()
    with pytest.raises(OSError, match="disk full"):
        E.run_points(range(6), E.ProbeTask(0.3, slow=(1,), mark_dir=str(marks)), engine="local", workers=2,
                     on_result=on_result, progress=False)
    assert time.monotonic() - t < 5.5  # point 1 alone would take 6 s
    started = {int(m.name.split(".")[0]): int(m.name.split(".")[2]) for m in marks.iterdir()}
    assert 1 in started and len(started) <= 3  # 2, 3, ... never started (at most one raced in)
    time.sleep(1.0)  # a point that raced in past the stop ends by itself within 0.3 s
    assert not any(_alive(pid) for pid in started.values())


def _write_tiny_images(d: Path) -> None:
    import skimage.data as skd
    from PIL import Image

    d.mkdir()
    for n in ("chelsea", "coffee"):
        Image.fromarray(getattr(skd, n)()).resize((96, 64), Image.BICUBIC).save(d / f"{n}.png")


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return sorted(({k: v for k, v in r.items() if not _timing(k)} for r in rows),
                  key=lambda r: (r["scheme"], r["channel"], float(r["esn0_db"]), r["seed"], r["image"]))


@pytest.mark.skipif(not (MODELS / "image_deepjscc" / "model.safetensors").exists(),
                    reason="image DeepJSCC weights not shipped")
def test_dask_cluster_gives_the_local_engines_rows(tmp_path):
    """The real sweep (DeepJSCC through GNU Radio's analog chain, 2 images, 2 Es/N0, fixed seeds) on the
    local engine and on a Dask cluster of 2 worker processes: the images travel in the task (PNG bytes),
    the rows and the grid's reconstructions come back to the one writer; the same CSV either way."""
    pytest.importorskip("gnuradio.gr")
    from gr_semcom.eval import sweep

    _write_tiny_images(tmp_path / "imgs")
    pts = sweep.points_for(["deepjscc"], ["awgn"], [3.0, 9.0], 1)
    cfg = {"images": str(tmp_path / "imgs"), "grid_snrs": (9.0,)}
    sweep.run_sweep(pts, sweep.SweepConfig(out=str(tmp_path / "local"), **cfg), workers=2, progress=False)
    cluster, client = _cluster()
    try:
        where = client.run(os.getcwd)
        sweep.run_sweep(pts, sweep.SweepConfig(out=str(tmp_path / "dask"), **cfg), engine="dask", client=client,
                        progress=False)
    finally:
        client.close()
        cluster.close()
    assert len(where) == 2
    local, dask_rows = _csv(tmp_path / "local" / "sweep_raw.csv"), _csv(tmp_path / "dask" / "sweep_raw.csv")
    assert [(r["esn0_db"], r["image"]) for r in local] == [(e, n) for e in ("3.0", "9.0") for n in ("chelsea", "coffee")]
    assert all(r["failed"] == "False" and float(r["cbr"]) <= 1 / 30 for r in local)
    psnr = {(r["esn0_db"], r["image"]): float(r["psnr"]) for r in local}
    assert all(psnr["9.0", n] > psnr["3.0", n] > 12 for n in ("chelsea", "coffee"))  # two channel realisations
    assert dask_rows == local  # every column but wall-clock times, as the CSV spells them
    for name in ("chelsea", "coffee"):  # the grid's reconstructions, byte for byte
        rel = f"recon/awgn_9dB_deepjscc_{name}.png"
        assert (tmp_path / "dask" / rel).read_bytes() == (tmp_path / "local" / rel).read_bytes()


def test_dask_worker_killed_mid_sweep_every_point_once(tmp_path):
    """SIGKILL one of the 2 worker processes while it runs a point: the point reruns on a worker that
    lives, every point is delivered exactly once, the killed worker's point process exits too."""
    marks = tmp_path / "marks"
    marks.mkdir()
    n = 10
    cluster, client = _cluster()
    pid_of = client.run(os.getpid)  # worker address -> pid
    got, killed = [], {}

    def on_result(r: E.PointResult):
        got.append(r)
        if killed:
            return
        done = {x.key[0] for x in got}
        for _ in range(100):  # a point started on a worker and not finished: kill that worker now
            for m in marks.iterdir():
                point, ppid, pid = (int(v) for v in m.name.split("."))
                if point not in done and ppid in pid_of.values():
                    os.kill(ppid, signal.SIGKILL)
                    killed.update(point=point, ppid=ppid, pid=pid, t=time.monotonic())
                    return
            time.sleep(0.05)

    try:
        st = E.run_points(range(n), E.ProbeTask(1.5, mark_dir=str(marks)), engine="dask", client=client,
                          on_result=on_result, progress=False)
    finally:
        client.close()
        cluster.close()
    assert killed, "no worker was caught mid-point"
    keys = [r.key[0] for r in got]
    assert sorted(keys) == list(range(n))  # every point exactly once
    assert (st.done, st.failed, st.duplicates) == (n, 0, 0)
    rows = [x for r in got for x in r.rows]
    # a point process on a Dask worker has this process's environment, not the nanny's thread/malloc settings
    assert {x["env"] for x in rows} == {_ENV0}
    got_local = []  # and the local engine's, after a cluster in this process: the same
    E.run_points([0], E.ProbeTask(0), on_result=got_local.append, progress=False)
    assert got_local[0].rows[0]["env"] == _ENV0
    assert len(rows) == n and sorted(x["value"] for x in rows) == [k * k for k in range(n)]
    (rerun,) = [r for r in got if r.key[0] == killed["point"]]
    assert rerun.rows[0]["ppid"] != killed["ppid"]  # finished by a worker that lived
    starts = [m.name for m in marks.iterdir() if m.name.startswith(f"{killed['point']}.")]
    assert len(starts) >= 2  # it really started twice
    assert not _alive(killed["pid"])  # the orphaned point process went with its worker
    assert all(math.isfinite(r.seconds) and r.seconds > 1.4 for r in got)


@pytest.mark.skipif(not (MODELS / "image_deepjscc" / "model.safetensors").exists(),
                    reason="image DeepJSCC weights not shipped")
def test_sweep_cli_on_dask_launchers_resumes(tmp_path):
    """The worked example of docs/cluster_sweeps.md on loopback: ``dask scheduler`` + ``dask worker
    --nworkers 2`` started from their own folder, ``semcom sweep --engine dask --scheduler ADDR``; the
    CSV, summary and plot as with the local engine, and a second run adds nothing (resumable)."""
    pytest.importorskip("gnuradio.gr")
    pytest.importorskip("distributed")
    import json
    import subprocess
    import sys

    dask_exe = Path(sys.executable).with_name("dask")
    if not dask_exe.exists():
        pytest.skip("the dask launcher is not installed next to this interpreter")
    _write_tiny_images(tmp_path / "imgs")
    wd = tmp_path / "cluster"  # the launchers' folder: nothing of the sweep's is there
    wd.mkdir()
    sched_file = wd / "scheduler.json"
    procs = [subprocess.Popen([str(dask_exe), "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--dashboard-address", ":0", "--scheduler-file", str(sched_file)], cwd=wd,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(300):
            if sched_file.exists() and sched_file.stat().st_size:
                break
            time.sleep(0.1)
        addr = json.loads(sched_file.read_text())["address"]
        procs.append(subprocess.Popen([str(dask_exe), "worker", addr, "--nworkers", "2", "--nthreads", "1",
                                       "--local-directory", str(wd)], cwd=wd, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        from distributed import Client

        with Client(addr, timeout="60s") as c:  # both worker processes joined
            c.wait_for_workers(2, timeout=120)
        cmd = [sys.executable, "-m", "gr_semcom.cli.sweep", "--schemes", "deepjscc", "--snr", "3,9", "--images",
               str(tmp_path / "imgs"), "--engine", "dask", "--scheduler", addr, "--out", str(tmp_path / "out")]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "2 points done, 0 failed, on 2 worker(s)" in r.stdout + r.stderr
        raw = _csv(tmp_path / "out" / "sweep_raw.csv")
        assert [(x["esn0_db"], x["image"]) for x in raw] == [(e, n) for e in ("3.0", "9.0")
                                                             for n in ("chelsea", "coffee")]
        with open(tmp_path / "out" / "sweep_summary.csv", newline="") as fh:
            summary = list(csv.DictReader(fh))
        for s in summary:  # the summary is the mean of the raw rows it covers
            ps = [float(x["psnr"]) for x in raw if x["esn0_db"] == str(float(s["esn0_db"]))]
            assert float(s["psnr"]) == pytest.approx(sum(ps) / len(ps), abs=1e-4) and s["n"] == "2"
        assert (tmp_path / "out" / "sweep.png").stat().st_size > 10000
        assert not list(wd.glob("**/*.csv"))
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)  # resumable: nothing to run
        assert r.returncode == 0, r.stderr[-3000:]
        assert "points done" not in r.stdout + r.stderr
        assert _csv(tmp_path / "out" / "sweep_raw.csv") == raw
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
