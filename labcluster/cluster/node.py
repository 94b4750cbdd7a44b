"""Run a scheduler, or one machine's worker groups, as a long-lived process (the CLI's engine).

Built on Dask's own ``Scheduler`` and ``Nanny``; we only choose the groups and bind addresses.
Both run until SIGINT or SIGTERM, then close cleanly (each Nanny stops its worker process).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import dask.config
from distributed import Nanny, Scheduler

from .. import config
from ..diagnostics import nvml
from ..scheduler.extension import LabclusterSchedulerPlugin
from .groups import WorkerGroup, default_groups, pin_gpus
from .spec import build_spec
from .tuning import dask_settings

#: the line `labcluster scheduler` prints first, followed by its address
ADDRESS_LINE = "labcluster scheduler at "


def parse_gpus(spec: str, probe: nvml.ProbeResult) -> tuple[int | None, int | None]:
    """``auto`` | ``N`` | ``sim:N`` -> ``(num_gpus, simulate_gpus)`` for :func:`default_groups`.

    ``N`` means N *real* GPUs: on a worker machine a silently simulated GPU would be a bug.
    """
    if spec == "auto":
        return None, None
    if spec.startswith("sim:") and spec[4:].isdigit():
        return None, int(spec[4:])
    if spec.isdigit():
        n = int(spec)
        if n > probe.count:
            raise ValueError(f"--gpus {n}: this machine has {probe.count} GPU(s) ({probe.state.value}); "
                             f"use --gpus auto, a smaller number, or --gpus sim:{n} to simulate them")
        return n, None
    raise ValueError(f"--gpus takes auto, a number, or sim:N (simulated GPUs), got {spec!r}")


def node_groups(nthreads: int | None, gpus: str, resources: Mapping[str, float],
                probe: nvml.ProbeResult) -> list[WorkerGroup]:
    num_gpus, simulate = parse_gpus(gpus, probe)
    return default_groups(nthreads, num_gpus, resources, simulate, probe=probe)


async def _until_stopped(parent_pid: int | None = None, scheduler: Any = None) -> None:
    """Return on SIGINT or SIGTERM; also once ``parent_pid`` is no longer this process's parent (it died), or
    ``scheduler`` closed (a client asked it to)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(stop.wait())]
    if scheduler is not None:
        waits.append(asyncio.ensure_future(scheduler.finished()))
    if parent_pid is not None:
        waits.append(asyncio.ensure_future(_parent_gone(parent_pid)))
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):  # stopping already: a second signal must not land in a
            loop.remove_signal_handler(sig)          # closing loop (its wakeup pipe may be gone)
            signal.signal(sig, signal.SIG_IGN)


async def _parent_gone(parent_pid: int, interval: float = 1.0) -> None:
    while os.getppid() == parent_pid:
        await asyncio.sleep(interval)


async def run_scheduler(host: str, port: int, dashboard_address: str | None, stream_interval: float | None = None,
                        parent_pid: int | None = None) -> None:
    """Run a scheduler with labcluster's extension until stopped (see :func:`_until_stopped`).

    ``stream_interval``: the batching interval of its streams (None keeps Dask's, right for a remote cluster).
    """
    dask.config.set(dask_settings())  # this process is the scheduler's: its streams keep a short message log
    plugin = LabclusterSchedulerPlugin.configured(retries=True, stream_interval=stream_interval)
    async with Scheduler(host=host, port=port, dashboard_address=dashboard_address,
                         dashboard=dashboard_address is not None,
                         allowed_failures=int(config.get("max-retries-ceiling")),
                         plugins=[plugin]) as scheduler:
        print(f"{ADDRESS_LINE}{scheduler.address}", flush=True)
        if dashboard_address:  # the port it got: a busy one falls back to a random port
            print(f"dashboard at http://{host}:{scheduler.http_server.port}/status", flush=True)
        await _until_stopped(parent_pid, scheduler)


async def run_workers(address: str, groups: Sequence[WorkerGroup], host: str, prefix: str,
                      probe: nvml.ProbeResult) -> None:
    dask.config.set(dask_settings())  # this process's Nannies hand the config to their workers
    groups = pin_gpus(groups, probe)
    spec = build_spec(groups, host=host, processes=True, prefix=prefix)
    nannies: list[Any] = [Nanny(address, **entry["options"]) for entry in spec.values()]
    try:
        await asyncio.gather(*(n.start() for n in nannies))
        for name, n in zip(spec, nannies, strict=True):
            print(f"labcluster worker {name} at {n.worker_address} -> {address}", flush=True)
        await _until_stopped()
    finally:
        await asyncio.gather(*(n.close(timeout=10) for n in nannies), return_exceptions=True)
        sys.stdout.flush()
