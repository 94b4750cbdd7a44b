"""The worker plugin every labcluster-started worker runs.

- It sets the batching interval of the worker's stream (see ``tuning.py``).
- In a worker process of its own (not thread workers in the driver), it marks the process, so code in any of its
  threads or event loops (an async actor's, say) runs in that worker's session (``api/session.py``).
- It drops two of distributed's log records that only repeat what the user already has, and that would land in
  whatever notebook cell happens to be running:
  "Compute Failed" (labcluster hands the same error, with the user's type and traceback, to whoever calls
  ``lc.get``) and "Async instruction ... ended with CancelledError" (a task still running when ``lc.shutdown()``
  closes the workers it started).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from distributed import WorkerPlugin

from ..dask_internals import worker_stream
from .tuning import tune
from .worker_process import set_process_worker


class _DropRepeats(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        if msg.startswith("Compute Failed"):
            return False
        return not (msg.startswith("Async instruction") and "CancelledError" in record.getMessage())


class LabclusterWorkerPlugin(WorkerPlugin):
    """Set up a worker for labcluster (see the module docstring)."""

    name = "labcluster"

    def __init__(self, stream_interval: float | None = None) -> None:
        self.stream_interval = stream_interval
        #: the process that made this plugin: a worker in that same process is a thread worker
        self.made_in = os.getpid()

    def setup(self, worker: Any) -> None:
        tune(worker_stream(worker), self.stream_interval)
        if os.getpid() != self.made_in:
            set_process_worker(worker)
        for name in ("distributed.worker", "distributed.worker.state_machine"):
            logger = logging.getLogger(name)
            if not any(isinstance(f, _DropRepeats) for f in logger.filters):
                logger.addFilter(_DropRepeats())
