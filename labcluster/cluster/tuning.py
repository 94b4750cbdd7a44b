"""Latency settings Dask does not expose as configuration, applied to clusters labcluster starts.

Dask batches every stream message (client->scheduler 10 ms, scheduler->worker 5 ms, worker->scheduler
and scheduler->client 2 ms). A message sent within that interval of the previous one waits for it,
so a sync round trip (submit, then get) waits out the client's 10 ms almost every time: ~12 ms per
task on a 2-core machine (bench/, raw Dask). ``labcluster.local.batched-send-interval`` sets all four;
the scheduler side through this plugin, the worker side through the worker plugin, the client side
in :func:`tune_client`. Throughput is not hurt: messages that queue while a write is in flight still
leave together (bench/ measures both, side by side).
"""

from __future__ import annotations

from typing import Any

from dask.utils import parse_timedelta
from distributed import Client, SchedulerPlugin

from .. import config


def batched_send_interval() -> float:
    """The configured interval in seconds."""
    value = parse_timedelta(config.get("local.batched-send-interval"), default="ms")
    return float(value or 0.0)


class LatencySchedulerPlugin(SchedulerPlugin):
    """Set the scheduler's batched-stream interval for every worker and client that connects."""

    name = "labcluster-latency"

    def __init__(self, interval: float) -> None:
        self.interval = interval

    async def start(self, scheduler: Any) -> None:
        self._apply(scheduler)

    def add_worker(self, scheduler: Any, worker: str) -> None:
        comm = scheduler.stream_comms.get(worker)
        if comm is not None:
            comm.interval = self.interval

    def add_client(self, scheduler: Any, client: str) -> None:
        # the client's stream is created just after this hook runs
        scheduler.loop.add_callback(self._apply, scheduler)

    def _apply(self, scheduler: Any) -> None:
        for comm in (*scheduler.stream_comms.values(), *scheduler.client_comms.values()):
            comm.interval = self.interval


def tune_client(client: Client, interval: float) -> None:
    """Set the client's own batched-stream interval (created on connect, so after ``Client(...)``)."""
    comm = getattr(client, "scheduler_comm", None)
    if comm is not None and hasattr(comm, "interval"):
        comm.interval = interval
