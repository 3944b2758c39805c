"""Engines that run sweep points: processes of this machine, or a Dask
cluster (issue 22; docs/cluster_sweeps.md).

One call, whatever the engine::

    stats = run_points(points, task_fn, engine="local" | "dask", workers=2,
                       scheduler=None | "tcp://host:8786", on_result=write, progress=True)

* ``task_fn(point)`` returns the point's rows (``list[dict]``) or a
  :class:`PointOutput` (rows + files, e.g. reconstructions for the image
  grid). It must be picklable by reference: a top-level function, or an
  instance of a top-level class (``eval.sweep.SweepPointTask`` for the
  sweep, :class:`ProbeTask` to check a cluster).
* **One writer.** ``on_result(PointResult)`` is called on the caller's thread,
  once per point key, as points finish (in completion order): the caller
  appends the rows to its CSV. A second result for a key already delivered
  (a point that Dask reran after its first worker died between finishing and
  reporting) is counted in ``EngineStats.duplicates`` and dropped.
* **A fresh process per point.** GNU Radio 3.10 keeps the shared-memory
  buffers of every flowgraph built in a process until the process exits
  (upstream gnuradio#7706), so with ``isolate=True`` (the default) every
  point runs in a child Python process started for it alone
  (:func:`run_isolated`), on both engines: the local engine's threads and
  each Dask worker thread only start children and wait for them. The child
  is a plain ``subprocess`` (Dask's nanny starts its workers as daemonic
  processes, which ``multiprocessing`` does not let have children) that
  exits when its parent dies.
* **A failing point is a row.** An exception in ``task_fn``, a child that
  crashes (signal, exit code) or times out, a point Dask gives up on
  (``KilledWorker``) all become one row ``failure_row(point, reason)``
  (default: the point's fields, ``image=""``, ``failed=True``, ``reason``)
  and the sweep goes on.
* **Worker death.** Dask reschedules the tasks of a worker that leaves the
  cluster on the others (``distributed.scheduler.allowed-failures``: how
  many worker deaths one task may see before it is declared failed; set
  from ``allowed_failures`` for the cluster this module starts). Tasks are
  submitted with ``pure=False`` (keys never shared with another client),
  results reach ``on_result`` only through this client, deduplicated by
  point key: no row is lost or written twice.
* **Resumable.** The caller skips points already in its CSV
  (:func:`pending`) and passes the rest.

Nothing is pickled over a network by this module's own code; Dask's comm
serialises the task (the function by reference, the point, the images as
PNG bytes) and the rows with its own serialisers (msgpack + pickle), so a
Dask scheduler must only be reachable by the people who may run code on its
workers (a private network, an SSH tunnel, or Dask's TLS:
docs/cluster_sweeps.md). Between a worker and its own child (same machine,
a private temporary directory) the task and the result travel as pickle
files, as ``multiprocessing`` does for the local pool.
"""
from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

ENGINES = ("local", "dask")
_PKG_PARENT = str(Path(__file__).resolve().parents[2])  # the directory that holds gr_semcom/
_CHILD = "import sys; from gr_semcom.eval.engines import _child_main; sys.exit(_child_main())"
_LIVE: set = set()  # point processes this process has running (killed when the caller stops)
_LIVE_LOCK = threading.Lock()


class PointFailed(Exception):
    """A point that produced no rows: the reason."""


@dataclass
class PointOutput:
    """What a task function may return instead of bare rows: the rows and
    files made at the point (path relative to the sweep's output folder ->
    bytes), which the caller writes (workers share no file system)."""

    rows: list
    files: dict = field(default_factory=dict)


@dataclass
class PointResult:
    """One finished point as the caller receives it."""

    point: Any
    key: tuple
    rows: list  # the point's rows; a failed point: its one failure row
    files: dict  # relative path -> bytes
    failed: bool  # the point itself failed (no rows of its own)
    reason: str
    worker: str  # where it ran: "local" or the Dask worker's address
    seconds: float  # wall time of the point on the worker (child start included)


@dataclass
class EngineStats:
    engine: str
    workers: int  # worker threads of the engine (Dask: of the whole cluster)
    points: int
    done: int = 0  # points with rows of their own
    failed: int = 0  # points that became a failure row
    duplicates: int = 0  # results for a point already delivered, dropped
    wall_s: float = 0.0
    startup_s: float = 0.0  # Dask: connecting (or starting a local cluster) until a worker is there
    worker_names: list = field(default_factory=list)


def point_key(point) -> tuple:
    """The default key of a point: its dataclass fields (in order), else the point."""
    if is_dataclass(point):
        return tuple(asdict(point).values())
    return point if isinstance(point, tuple) else (point,)


def failure_row(point, reason: str) -> dict:
    """The default row of a point that failed: the point's fields, no image, the reason."""
    base = asdict(point) if is_dataclass(point) else {"point": repr(point)}
    return {**base, "image": "", "failed": True, "reason": reason}


def pending(points: Iterable, done_keys: set, key: Callable = point_key) -> list:
    """The points whose key is not in ``done_keys`` (resuming a sweep), in order, without repeats."""
    out, seen = [], set(done_keys)
    for p in points:
        k = key(p)
        if k not in seen:
            seen.add(k)
            out.append(p)
    return out


# ---------------------------------------------------------------- one point in a fresh process
def run_isolated(task_fn: Callable, point, timeout: float | None = None, drop_env: tuple = ()) -> PointOutput:
    """``task_fn(point)`` in a child Python process started for it alone
    (this process's environment without the variables in ``drop_env``);
    :class:`PointFailed` (with the reason) when it raises, crashes or times out."""
    with tempfile.TemporaryDirectory(prefix="semcom_point_") as d:
        d = Path(d)
        try:
            (d / "task.pkl").write_bytes(pickle.dumps((task_fn, point), protocol=pickle.HIGHEST_PROTOCOL))
        except Exception as exc:  # noqa: BLE001
            raise PointFailed(f"task not picklable: {type(exc).__name__}: {exc}") from None
        env = {k: v for k, v in os.environ.items() if k not in drop_env}
        # the child imports what this process can (as multiprocessing's spawn passes sys.path)
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([_PKG_PARENT] + [p for p in sys.path if p]))
        log = d / "child.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(d), str(os.getpid())], stdin=subprocess.DEVNULL,
                                    stdout=fh, stderr=subprocess.STDOUT, env=env)
            with _LIVE_LOCK:
                _LIVE.add(proc)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise PointFailed(f"point timed out after {timeout:g} s") from None
            except BaseException:  # the caller is stopping: take the child with it
                proc.kill()
                proc.wait()
                raise
            finally:
                with _LIVE_LOCK:
                    _LIVE.discard(proc)
        res = d / "result.pkl"
        if not res.exists():
            tail = log.read_bytes()[-600:].decode("utf-8", "replace").strip()
            how = f"signal {-rc}" if rc < 0 else f"exit code {rc}"
            raise PointFailed(f"point process died ({how}) before returning" + (f": ...{tail}" if tail else ""))
        status, *payload = pickle.loads(res.read_bytes())
        if status != "ok":
            raise PointFailed(payload[0])
        out = payload[0]
        return out if isinstance(out, PointOutput) else PointOutput(list(out))


def _child_main() -> int:
    """The child of :func:`run_isolated`: argv = (folder, parent pid)."""
    d, ppid = Path(sys.argv[1]), int(sys.argv[2])

    def watch():  # a child whose worker was killed must not run on for nobody
        while True:
            time.sleep(0.5)
            if os.getppid() != ppid:
                os._exit(3)

    threading.Thread(target=watch, daemon=True).start()
    task_fn, point = pickle.loads((d / "task.pkl").read_bytes())
    try:
        res = ("ok", task_fn(point))
    except BaseException as exc:  # noqa: BLE001 -- every failure becomes the point's reason
        res = ("error", f"{type(exc).__name__}: {exc}", traceback.format_exc())
    try:
        data = pickle.dumps(res, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001
        data = pickle.dumps(("error", f"result not picklable: {type(exc).__name__}: {exc}", ""))
    tmp = d / "result.tmp"
    tmp.write_bytes(data)
    tmp.replace(d / "result.pkl")
    sys.stdout.flush()
    sys.stderr.flush()
    return 0


def execute(task_fn: Callable, point, isolate: bool = True, timeout: float | None = None,
            drop_env: tuple = ()) -> tuple:
    """Run one point where this is called: ``("ok", PointOutput)`` or ``("failed", reason)``; never raises
    for the point's own failures."""
    try:
        if isolate:
            return "ok", run_isolated(task_fn, point, timeout, drop_env)
        out = task_fn(point)
        return "ok", out if isinstance(out, PointOutput) else PointOutput(list(out))
    except PointFailed as exc:
        return "failed", str(exc)
    except Exception as exc:  # noqa: BLE001
        return "failed", f"{type(exc).__name__}: {exc}"


def _nanny_environ() -> tuple:
    """The variables Dask's nanny sets for its worker process (``distributed.nanny.pre-spawn-environ``:
    MALLOC_TRIM_THRESHOLD_=65536, OMP/MKL/OPENBLAS_NUM_THREADS=1; the nanny writes them into its own
    process's environment too, so a local cluster leaves them in the client's) that still hold those values
    here: point processes go without them on both engines, so that a point runs the same everywhere (with
    them a DeepJSCC point took about 15 % longer here)."""
    try:
        import dask

        pre = dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {}
    except Exception:  # noqa: BLE001 -- no Dask config: nothing to undo
        return ()
    return tuple(k for k, v in pre.items() if os.environ.get(k) == str(v))


def _dask_point(task_fn: Callable, point, isolate: bool, timeout: float | None) -> dict:
    """The Dask task: one point on a worker (a fresh child process when ``isolate``)."""
    t = time.monotonic()
    try:
        from distributed import get_worker

        where = get_worker().address
    except Exception:  # noqa: BLE001
        where = "?"
    status, out = execute(task_fn, point, isolate, timeout, _nanny_environ())
    return {"status": status, "out": out, "worker": where, "seconds": time.monotonic() - t}


# ---------------------------------------------------------------- the engines
class _Progress:
    def __init__(self, total: int, engine: str, enabled: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=f"sweep [{engine}]", unit="pt", disable=not enabled, dynamic_ncols=True)
        self.done = self.failed = self.running = 0

    def update(self, running: int | None = None, finished: PointResult | None = None):
        if running is not None:
            self.running = running
        if finished is not None:
            self.failed += finished.failed
            self.done += not finished.failed
            self.bar.update(1)
        self.bar.set_postfix(done=self.done, running=self.running, failed=self.failed, refresh=False)
        self.bar.refresh()

    def close(self):
        self.bar.close()


class _Deliver:
    """Turns raw outcomes into PointResults, deduplicates by key, calls on_result."""

    def __init__(self, stats: EngineStats, on_result, fail_row, prog: _Progress):
        self.stats, self.on_result, self.fail_row, self.prog = stats, on_result, fail_row, prog
        self.seen: set = set()

    def __call__(self, point, key, status, out, worker: str, seconds: float):
        if key in self.seen:
            self.stats.duplicates += 1
            return
        self.seen.add(key)
        if status == "ok":
            r = PointResult(point, key, list(out.rows), dict(out.files), False, "", worker, seconds)
            self.stats.done += 1
        else:
            r = PointResult(point, key, [self.fail_row(point, out)], {}, True, out, worker, seconds)
            self.stats.failed += 1
        if self.on_result is not None:
            self.on_result(r)
        self.prog.update(finished=r)


def run_points(points: Iterable, task_fn: Callable, engine: str = "local", workers: int = 2,
               scheduler: str | None = None, on_result: Callable[[PointResult], None] | None = None,
               progress: bool = True, key: Callable = point_key, fail_row: Callable = failure_row,
               isolate: bool = True, timeout: float | None = None, allowed_failures: int = 3,
               client=None, scatter: bool = True) -> EngineStats:
    """Run every point once; ``on_result`` gets each as it finishes (see the module docstring).

    ``engine="local"``: ``workers`` threads on this machine, each point in a
    fresh child process. ``engine="dask"``: on the cluster at ``scheduler``
    (``tcp://host:8786``) or an existing ``client``; without either, a
    ``LocalCluster`` of ``workers`` worker processes (one thread each) on
    loopback, closed at the end. ``timeout``: seconds one point may run
    (None: no limit). ``scatter``: Dask gets the task once (a copy on every
    worker) instead of with every point."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; engines: {', '.join(ENGINES)}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    todo = pending(points, set(), key)  # a point listed twice runs once
    stats = EngineStats(engine, workers, len(todo))
    t0 = time.monotonic()
    prog = _Progress(len(todo), engine, progress)
    deliver = _Deliver(stats, on_result, fail_row, prog)
    try:
        if todo and engine == "local":
            _run_local(todo, task_fn, workers, key, deliver, prog, isolate, timeout)
        elif todo:
            _run_dask(todo, task_fn, workers, scheduler, client, key, deliver, prog, isolate, timeout,
                      allowed_failures, stats, scatter)
    finally:
        prog.close()
        stats.wall_s = time.monotonic() - t0
    return stats


def _run_local(todo, task_fn, workers, key, deliver, prog, isolate, timeout):
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    running = [0]
    lock = threading.Lock()
    # a Dask nanny started in this process (a local cluster earlier) left its settings in os.environ
    drop = _nanny_environ() if "distributed.nanny" in sys.modules else ()

    def one(p):
        with lock:
            running[0] += 1
        t = time.monotonic()
        try:
            return execute(task_fn, p, isolate, timeout, drop), time.monotonic() - t
        finally:
            with lock:
                running[0] -= 1

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="semcom-point")
    try:
        futs = {pool.submit(one, p): p for p in todo}
        left = set(futs)
        while left:
            fin, left = wait(left, timeout=0.5, return_when=FIRST_COMPLETED)
            for f in fin:
                p = futs[f]
                (status, out), secs = f.result()
                deliver(p, key(p), status, out, "local", secs)
            prog.update(running=running[0])
    except BaseException:  # Ctrl-C or a writer that failed: no new point starts, the running ones end now
        pool.shutdown(wait=False, cancel_futures=True)
        kill_children()
        raise
    pool.shutdown(wait=True)


def kill_children() -> int:
    """Kills the point processes this process has running; how many."""
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for p in procs:
        if p.poll() is None:
            p.kill()
    return len(procs)


def _run_dask(todo, task_fn, workers, scheduler, client, key, deliver, prog, isolate, timeout, allowed_failures,
              stats, scatter):
    import dask
    from distributed import Client, LocalCluster, as_completed

    cluster = own_client = None
    futs: dict = {}
    t0 = time.monotonic()
    try:
        if client is None:
            if scheduler:
                client = own_client = Client(scheduler, timeout="30s")
            else:
                with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures}):
                    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                           host="127.0.0.1", dashboard_address=None,
                                           silence_logs=logging.WARNING)
                client = own_client = Client(cluster)
        try:
            client.wait_for_workers(1, timeout=120)
        except Exception as exc:
            raise RuntimeError(f"no Dask worker joined the scheduler {client.scheduler.address} in 120 s "
                               f"(start some with: dask worker {client.scheduler.address})") from exc
        stats.startup_s = time.monotonic() - t0
        _cluster_size(client, stats)
        # the task (for the sweep: its config and every image) goes to the workers once, not with each point;
        # a copy on every worker, so one that dies does not take the only one with it
        task_ref = client.scatter(task_fn, broadcast=True, hash=False) if scatter else task_fn
        for p in todo:
            f = client.submit(_dask_point, task_ref, p, isolate, timeout, pure=False, retries=0)
            futs[f.key] = (p, f)
        ac = as_completed([f for _, f in futs.values()])
        last = 0.0
        while not ac.is_empty():
            batch = ac.next_batch(block=False) if ac.has_ready() else []
            for f in batch:
                p = futs.pop(f.key)[0]
                if f.status == "finished":
                    r = f.result()
                    deliver(p, key(p), r["status"], r["out"], r["worker"], r["seconds"])
                else:  # error (KilledWorker: the point saw allowed_failures workers die) or cancelled
                    try:
                        exc = f.exception(timeout=5)
                        reason = f"{type(exc).__name__}: {exc}"
                    except Exception as e:  # noqa: BLE001 -- cancelled
                        reason = f"dask task {f.status}: {type(e).__name__}: {e}"
                    deliver(p, key(p), "failed", reason, "", 0.0)
                f.release()
            now = time.monotonic()
            if now - last > 1.0 or batch:
                last = now
                try:  # tasks the scheduler has given workers (a worker may hold one queued): at most its threads
                    running = min(sum(len(v) for v in client.processing().values()), stats.workers)
                except Exception:  # noqa: BLE001
                    running = prog.running
                prog.update(running=running)
            if not batch:
                time.sleep(0.1)
        _cluster_size(client, stats)  # workers may have joined (or left) meanwhile: the larger count
    except BaseException:  # Ctrl-C or a writer that failed: the cluster drops what is left of this sweep
        if client is not None and futs:
            try:
                client.cancel([f for _, f in futs.values()])
            except Exception as exc:  # noqa: BLE001 -- the client may be gone already
                logging.getLogger(__name__).debug("cancelling the sweep's tasks: %s", exc)
        raise
    finally:
        if own_client is not None:
            own_client.close()
        if cluster is not None:
            cluster.close()


def _cluster_size(client, stats: EngineStats) -> None:
    """Worker threads and names of the cluster now; keeps the largest thread count seen."""
    ws = client.scheduler_info(n_workers=-1).get("workers", {})
    stats.workers = max(stats.workers if stats.worker_names else 0, sum(w.get("nthreads", 1) for w in ws.values()))
    stats.worker_names = sorted(set(stats.worker_names) | set(ws))


# ---------------------------------------------------------------- a probe task
@dataclass(frozen=True)
class ProbeTask:
    """A cheap task to check an engine or a cluster end to end
    (``python -m gr_semcom.eval.engines --probe``): sleeps, then returns one
    row that says where it ran (host, the point process's pid and its
    parent's, i.e. the worker's); raises for the points in ``fail``, kills
    its own process for those in ``crash``; with ``mark_dir`` (a folder the
    caller can see) it leaves ``<point>.<parent pid>.<pid>`` there on start."""

    seconds: float = 0.5
    fail: tuple = ()
    crash: tuple = ()
    mark_dir: str = ""
    slow: tuple = ()  # these points sleep 20 x seconds

    def __call__(self, point) -> list:
        import signal
        import socket

        if self.mark_dir:
            Path(self.mark_dir, f"{point}.{os.getppid()}.{os.getpid()}").touch()
        time.sleep(self.seconds * (20 if point in self.slow else 1))
        if point in self.crash:
            os.kill(os.getpid(), signal.SIGKILL)
        if point in self.fail:
            raise RuntimeError(f"probe point {point} fails on purpose")
        return [{"point": point, "image": f"probe{point}", "value": point * point, "pid": os.getpid(),
                 "ppid": os.getppid(), "host": socket.gethostname(),
                 "env": ",".join(f"{k}={os.environ.get(k, '')}" for k in ("OMP_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_"))}]


def main(argv=None) -> int:
    """``python -m gr_semcom.eval.engines --probe [--engine dask --scheduler ADDR] [--points N]``:
    runs cheap probe points and prints where each ran (checks a cluster before a sweep)."""
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m gr_semcom.eval.engines", description=main.__doc__)
    ap.add_argument("--probe", action="store_true", required=True, help="run the probe task")
    ap.add_argument("--engine", choices=ENGINES, default="dask")
    ap.add_argument("--scheduler", default=None, help="Dask scheduler address (default: a local cluster)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--points", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=0.5)
    a = ap.parse_args(argv)
    # the module by its name (not __main__), so that workers import ProbeTask instead of receiving a copy
    import importlib

    engines = importlib.import_module("gr_semcom.eval.engines")
    rows = []
    st = engines.run_points(range(a.points), engines.ProbeTask(a.seconds), engine=a.engine, workers=a.workers,
                            scheduler=a.scheduler, on_result=lambda r: rows.extend(r.rows))
    print(json.dumps({"engine": st.engine, "workers": st.workers, "done": st.done, "failed": st.failed,
                      "wall_s": round(st.wall_s, 2),
                      "hosts": sorted({r.get("host", "?") for r in rows})}))
    return 0 if st.failed == 0 and st.done == a.points else 1


if __name__ == "__main__":
    sys.exit(main())
