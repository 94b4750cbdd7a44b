"""The head of a local cluster: Dask's scheduler and every worker's Nanny, in one process of its own.

``lc.init()`` starts this process (``launcher.py``) and connects to it as a client. The head runs a Dask
``SpecCluster`` built from the worker groups: the ``Scheduler`` with labcluster's extension, and a ``Nanny`` per
worker, which starts the worker process and restarts it if it dies. So, as with Ray's head node:

- **A Jupyter interrupt cannot reach the cluster.** The head runs in a session of its own, and every worker process
  is the head's child: the SIGINT Jupyter sends to the kernel's process group reaches none of them.
- **Workers never import the driver's script.** multiprocessing re-imports the parent's ``__main__`` in each
  child; here that is this process's ``-c`` entry, not the user's file, so a script needs no ``__main__`` guard.
- **Workers start from a warm process.** Once this process has imported distributed and what a worker needs, and
  before it starts a thread, it forks multiprocessing's forkserver from itself (``forkserver.py``), and the Nannies
  fork their workers from that (``labcluster.local.worker-start-method``): no process imports distributed a third
  time while the driver and the head import it on a 2-core machine.
- **Nothing is left running.** The head stops by itself within a second once its parent is gone (a kernel that
  was killed), closing its Nannies; a head that is killed takes its workers along (Dask's parent-alive pipe).
- **The driver is not slowed by the cluster:** scheduling does not share the notebook's GIL (bench/).

The head tells its launcher what happens on a pipe of its own, one JSON object a line: ``{"scheduler": address}``
once the scheduler listens (the workers start next), then ``{"workers": [names]}``, or ``{"error": ..., "type": ...}``
when it cannot start. Dask's log records go to the cluster's log file (``labcluster.local.log-dir``), not into a
notebook cell; what the workers print reaches the driver's terminal, and its notebook, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import traceback
import warnings
from collections.abc import Callable
from typing import Any

from distributed import Scheduler, SchedulerPlugin, SpecCluster

from ..scheduler.extension import LabclusterSchedulerPlugin
from .forkserver import start_for_workers
from .groups import WorkerGroup
from .scaling import Scaler
from .spec import build_spec
from .spec_cluster import KeepingSpecCluster
from .tuning import local_interval

_RUNNING = ("running", "starting", "init")


class _Announce(SchedulerPlugin):
    """Tell the launcher the scheduler's address as soon as it listens, before any worker starts."""

    name = "labcluster-announce"

    def __init__(self, say: Callable[[dict[str, Any]], None]) -> None:
        self.say = say

    async def start(self, scheduler: Any) -> None:
        self.say({"scheduler": scheduler.address})


async def _parent_gone(parent_pid: int, interval: float = 0.5) -> None:
    while os.getppid() == parent_pid:
        await asyncio.sleep(interval)


async def _keep_kept(cluster: SpecCluster, extension: Any, interval: float = 0.5) -> None:
    """Tell the extension which workers this cluster keeps: those whose Nanny still runs (it restarts a worker
    that died; one that gave up will not come back)."""
    while True:
        kept = {name: dict(spec["options"].get("resources") or {}) for name, spec in cluster.worker_spec.items()
                if name in cluster.workers and str(cluster.workers[name].status.name) in _RUNNING}
        extension.keep_workers(kept)
        await asyncio.sleep(interval)


async def run(spec: dict[str, Any], say: Callable[[dict[str, Any]], None]) -> None:
    """Run the cluster ``spec`` describes until the parent process is gone, SIGTERM, or a client closes it."""
    groups = [WorkerGroup.from_dict(g) for g in spec["groups"]]  # real GPUs pinned already, by the launcher
    interval = local_interval()
    host = spec["host"]
    workers = build_spec(groups, host=host, processes=True, stream_interval=interval)
    plugin = LabclusterSchedulerPlugin.configured(retries=True, stream_interval=interval)
    dashboard = spec["dashboard_address"]
    # without a dashboard the scheduler still serves /health and /metrics: on a free port, never 8787
    scheduler = {"cls": Scheduler, "options": {"host": host, "port": 0, "dashboard_address": dashboard or f"{host}:0",
                                               "dashboard": dashboard is not None, "plugins": [plugin, _Announce(say)]}}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    cluster = await KeepingSpecCluster(workers=workers, scheduler=scheduler, asynchronous=True, name="labcluster",
                                silence_logs=False)
    scheduler_object: Any = cluster.scheduler
    extension = scheduler_object.extensions["labcluster"]
    scaler = Scaler(cluster, groups, host=host, processes=True, stream_interval=interval)
    scaler.install(scheduler_object)
    keeping = asyncio.ensure_future(_keep_kept(cluster, extension))
    say({"workers": sorted(cluster.workers)})
    signalled, finished, orphaned = waits = [asyncio.ensure_future(w) for w in (
        stop.wait(), scheduler_object.finished(), _parent_gone(int(spec["parent_pid"])))]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        # why, for the driver's session: its next call says so instead of waiting on a scheduler that is gone
        if finished.done() and not (signalled.done() or orphaned.done()):  # (a signal: the driver's own close)
            with contextlib.suppress(OSError):
                say({"stopping": "its scheduler closed (a client asked it to, such as the JupyterLab sidebar's stop "
                                 "button, or it failed: see the cluster's log)"})
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):  # stopping already: a second signal must not land in a
            loop.remove_signal_handler(sig)          # closing loop (its wakeup pipe may be gone)
            signal.signal(sig, signal.SIG_IGN)
        for task in (*waits, keeping):
            task.cancel()
        # let actor and placement-group holders end cleanly: the cluster goes away with them
        extension.release_all()
        closing: Any = cluster.close(timeout=float(spec.get("close_timeout", 20)))
        await closing


def main(argv: list[str]) -> int:
    """The head process's entry point: ``argv[0]`` is the JSON spec, ``argv[1]`` the fd to announce on."""
    spec: dict[str, Any] = json.loads(argv[0])
    out = os.fdopen(int(argv[1]), "w", buffering=1)

    def say(message: dict[str, Any]) -> None:
        out.write(json.dumps(message) + "\n")

    if spec.get("forkserver"):  # before any thread or event loop starts: workers fork from a warm copy of this process
        start_for_workers(spec["forkserver"], close_fds=[out.fileno()])
    # a busy dashboard port falls back to a free one, which the driver reads from the scheduler: no warning
    warnings.filterwarnings("ignore", message=".*already in use", category=UserWarning)
    try:
        asyncio.run(run(spec, say))
    except BaseException as e:  # tell the launcher why, then exit non-zero
        cause = e.__cause__ if isinstance(e.__cause__, Exception) else e  # SpecCluster wraps what failed
        say({"error": f"{type(cause).__name__}: {cause}", "type": type(cause).__name__,
             "detail": "".join(traceback.format_exception(e))[-4000:]})
        return 1
    return 0

