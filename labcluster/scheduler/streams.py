"""The scheduler side of labcluster's stream tuning (see ``cluster/tuning.py``): the batching interval of the
scheduler's stream to every worker and client."""

from __future__ import annotations

from typing import Any

from distributed import SchedulerPlugin

from ..cluster.tuning import tune
from ..dask_internals import scheduler_streams


class StreamsSchedulerPlugin(SchedulerPlugin):
    """Set the batching interval of the scheduler's stream to every worker and client that connects."""

    name = "labcluster-streams"

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.scheduler: Any = None

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self._apply()

    def add_worker(self, scheduler: Any, worker: str) -> None:
        self._apply()

    def add_client(self, scheduler: Any, client: str) -> None:
        # the client's stream is created just after this hook runs
        scheduler.loop.add_callback(self._apply)

    def _apply(self) -> None:
        for comm in scheduler_streams(self.scheduler):
            tune(comm, self.interval)
