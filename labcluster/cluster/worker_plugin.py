"""The worker plugin every labcluster-started worker runs.

It applies labcluster's stream settings to the worker's stream (see ``tuning.py``), and it
drops two of distributed's log records that only repeat what the user already has, and that would
land in whatever notebook cell happens to be running (ipykernel forwards worker output):

- "Compute Failed": labcluster hands the same error, with the user's type and traceback, to whoever
  calls ``lc.get``;
- "Async instruction ... ended with CancelledError": a task still running when ``lc.shutdown()``
  closes the workers it started.
"""

from __future__ import annotations

import logging
from typing import Any

from distributed import WorkerPlugin

from .tuning import StreamTuning


class _DropRepeats(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        if msg.startswith("Compute Failed"):
            return False
        return not (msg.startswith("Async instruction") and "CancelledError" in record.getMessage())


class LabclusterWorkerPlugin(WorkerPlugin):
    """Set up a worker for labcluster (see the module docstring)."""

    name = "labcluster"

    def __init__(self, streams: StreamTuning | None = None) -> None:
        self.streams = streams

    def setup(self, worker: Any) -> None:
        if self.streams is not None:
            self.streams.apply(worker.batched_stream)
        for name in ("distributed.worker", "distributed.worker.state_machine"):
            logger = logging.getLogger(name)
            if not any(isinstance(f, _DropRepeats) for f in logger.filters):
                logger.addFilter(_DropRepeats())
