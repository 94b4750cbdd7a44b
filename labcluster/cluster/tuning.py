"""Settings for Dask's batched streams that Dask does not expose as configuration.

Every client, scheduler and worker talks over ``BatchedSend`` streams. Two of their defaults hurt here:

- **Interval.** Dask holds messages back to batch them (client->scheduler 10 ms, scheduler->worker
  5 ms, worker->scheduler and scheduler->client 2 ms). A message sent within that interval of the
  previous one waits for it, so a sync round trip (submit, then get) waits out the client's 10 ms almost
  every time: ~12 ms per task on a 2-core machine (bench/, raw Dask). ``labcluster.local.batched-send-interval``
  sets all four on clusters labcluster starts. Throughput is not hurt: messages that queue while a write
  is in flight still leave together (bench/ measures both, side by side).
- **Message log.** Each stream keeps the last ``distributed.admin.low-level-log-length`` (1,000) payloads it
  sent, for debugging. Under load a payload carries ~100 task messages, so a driver that submits tasks
  holds on to ~100,000 of them: about a million objects that every full garbage collection walks. On a
  2-core machine that made garbage collection grow to a third of the driver's CPU and throughput fall
  with every batch (bench/records.py). ``labcluster.stream-message-log`` keeps a few payloads instead,
  on every stream labcluster sets up: its own client (also against a remote scheduler), and the
  scheduler and workers it starts.

:class:`StreamTuning` carries both; the scheduler side is applied by :class:`StreamsSchedulerPlugin`, the
worker side by ``LabclusterWorkerPlugin``, the client side by :func:`tune_client`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from dask.utils import parse_timedelta
from distributed import Client, SchedulerPlugin

from .. import config


@dataclass(frozen=True)
class StreamTuning:
    """What to set on a batched stream: ``interval`` in seconds (``None`` keeps Dask's) and how many sent
    payloads it keeps for debugging (``message_log``)."""

    interval: float | None
    message_log: int

    @classmethod
    def configured(cls, local: bool) -> StreamTuning:
        """From ``labcluster.*``; the interval applies only to clusters labcluster starts (``local``)."""
        log = int(config.get("stream-message-log"))
        if log < 0:
            raise ValueError(f"labcluster.stream-message-log must be >= 0, got {log}")
        if not local:
            return cls(None, log)
        value = parse_timedelta(config.get("local.batched-send-interval"), default="ms")
        return cls(float(value or 0.0), log)

    def apply(self, comm: Any) -> None:
        """Set this on one ``BatchedSend`` (anything else is left alone)."""
        if self.interval is not None and hasattr(comm, "interval"):
            comm.interval = self.interval
        log = getattr(comm, "recent_message_log", None)
        if isinstance(log, deque) and log.maxlen != self.message_log:
            comm.recent_message_log = deque(log, maxlen=self.message_log)


class StreamsSchedulerPlugin(SchedulerPlugin):
    """Apply a :class:`StreamTuning` to the scheduler's stream to every worker and client that connects."""

    name = "labcluster-streams"

    def __init__(self, tuning: StreamTuning) -> None:
        self.tuning = tuning

    async def start(self, scheduler: Any) -> None:
        self._apply(scheduler)

    def add_worker(self, scheduler: Any, worker: str) -> None:
        comm = scheduler.stream_comms.get(worker)
        if comm is not None:
            self.tuning.apply(comm)

    def add_client(self, scheduler: Any, client: str) -> None:
        # the client's stream is created just after this hook runs
        scheduler.loop.add_callback(self._apply, scheduler)

    def _apply(self, scheduler: Any) -> None:
        for comm in (*scheduler.stream_comms.values(), *scheduler.client_comms.values()):
            self.tuning.apply(comm)


def tune_client(client: Client, tuning: StreamTuning) -> None:
    """Apply ``tuning`` to the client's own stream (created on connect, so after ``Client(...)``)."""
    comm = getattr(client, "scheduler_comm", None)
    if comm is not None:
        tuning.apply(comm)
