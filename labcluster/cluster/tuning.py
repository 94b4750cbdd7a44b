"""Settings for Dask's batched streams, on clusters labcluster starts.

Every client, scheduler and worker talks over ``BatchedSend`` streams. Two of their defaults hurt here:

- **Interval.** Dask holds messages back to batch them (client->scheduler 10 ms, scheduler->worker
  5 ms, worker->scheduler and scheduler->client 2 ms). A message sent within that interval of the
  previous one waits for it, so a sync round trip (submit, then get) waits out the client's 10 ms almost
  every time: ~12 ms per task on a 2-core machine (bench/, raw Dask). ``labcluster.local.batched-send-interval``
  sets all four on clusters labcluster starts. Throughput is not hurt: messages that queue while a write
  is in flight still leave together (bench/ measures both, side by side). Dask has no setting for it, so
  :func:`tune` goes through ``dask_internals.set_stream_interval``.
- **Message log.** Each stream keeps the last ``distributed.admin.low-level-log-length`` (1,000) payloads it
  sent, for debugging. Under load a payload carries ~100 task messages, so a driver that submits tasks
  holds on to ~100,000 of them: about a million objects that every full garbage collection walks. On a
  2-core machine that made garbage collection grow to a third of the driver's CPU and throughput fall
  with every batch (bench/records.py). :func:`dask_settings` sets that config key to
  ``labcluster.stream-message-log`` for every process labcluster sets up: its own client (also against a remote
  scheduler), and the scheduler and workers it starts.

The scheduler side of the interval is applied by ``scheduler/streams.py``, the worker side by
``LabclusterWorkerPlugin``, the client side by :func:`tune`.
"""

from __future__ import annotations

from typing import Any

from dask.utils import parse_timedelta

from .. import config
from ..dask_internals import set_stream_interval


def dask_settings() -> dict[str, Any]:
    """Dask config every process labcluster sets up runs with: the streams' message log length."""
    log = int(config.get("stream-message-log"))
    if log < 0:
        raise ValueError(f"labcluster.stream-message-log must be >= 0, got {log}")
    return {"distributed.admin.low-level-log-length": log}


def local_interval() -> float:
    """The batching interval of streams on clusters labcluster starts (``labcluster.local.batched-send-interval``)."""
    return float(parse_timedelta(config.get("local.batched-send-interval"), default="ms") or 0.0)


def tune(comm: Any, interval: float | None) -> None:
    """Set the batching interval of one stream (``None`` keeps Dask's)."""
    if interval is not None and comm is not None:
        set_stream_interval(comm, interval)


def local_settings() -> dict[str, Any]:
    """The Dask settings of every process of a local cluster (see ``labcluster.yaml`` for why each one)."""
    return {**dask_settings(), **dict(config.get("local.dask-config") or {}),
            # the scheduler-wide ceiling; each task's own max_retries is applied by the extension's retry plugin
            "distributed.scheduler.allowed-failures": int(config.get("max-retries-ceiling"))}
