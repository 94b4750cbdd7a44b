"""Which worker this process runs, when it is a worker process of its own (set by the worker plugin).

Code in any thread or event loop of such a process (an async actor's loop, a thread a task started) then runs in
that worker's labcluster session, even where Dask's ``get_worker()`` knows nothing (``api/session.py``). Thread
workers in the driver's process (``processes=False``) never set it: there the driver's session is the default.
"""

from __future__ import annotations

from typing import Any

_worker: Any = None


def process_worker() -> Any:
    """The worker this process runs, when it is a worker process of its own; else None."""
    return _worker


def set_process_worker(worker: Any) -> None:
    global _worker
    _worker = worker
