"""Per-task ``max_retries`` for worker deaths, on Dask's scheduler.

Dask counts, per task, how many workers died while running it (``TaskState.suspicious``) and fails
the task once that passes one cluster-wide number (``distributed.scheduler.allowed-failures``).
Ray lets each task choose. So clusters labcluster starts set the cluster-wide number to a ceiling
(``labcluster.max-retries-ceiling``) and this plugin applies each task's own limit: a task carries it as
the annotation ``labcluster_max_retries`` (tasks without one get ``labcluster.max-retries``, Ray's 3).
When a death takes a task past its limit, the plugin swaps the task's run spec for one that raises
:class:`~labcluster.exceptions.WorkerCrashedError`, so the task fails through Dask's normal paths,
on a live worker, with a message that names the count.

The transition hook runs after the scheduler has counted the death (``Scheduler.remove_worker``
increments ``suspicious`` before it applies the recommendations).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from distributed import SchedulerPlugin

from ..dask_internals import fail_task_with
from ..exceptions import WorkerCrashedError
from .protocol import MAX_RETRIES


def worker_died_too_often(key: str, deaths: int, limit: int) -> None:
    """The run spec of a task that used up its retries: fail with the reason."""
    raise WorkerCrashedError(key, f"{deaths} worker(s) died while running it and max_retries={limit}")


class RetryLimitPlugin(SchedulerPlugin):
    """Fail a task once more workers died running it than its ``max_retries`` allows."""

    name = "labcluster-retries"

    def __init__(self, default: int, on_exhausted: Callable[[str, int, int], None] | None = None) -> None:
        self.default = default
        #: told ``(key, deaths, limit)`` when a task runs out (the extension: an actor's holder means a dead actor)
        self.on_exhausted = on_exhausted
        self.scheduler: Any = None

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def limit(self, ts: Any) -> int | None:
        """How many worker deaths the task ``ts`` survives (None or negative: any number)."""
        value = (ts.annotations or {}).get(MAX_RETRIES, self.default)
        return None if value is None else int(value)

    def out_of_retries(self, ts: Any) -> bool:
        """Whether the deaths counted for ``ts`` so far take it past its limit (so it fails instead of a retry)."""
        limit = self.limit(ts)
        return bool(ts.suspicious) and limit is not None and limit >= 0 and ts.suspicious > limit

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if start != "processing" or finish != "released" or self.scheduler is None:
            return
        ts = self.scheduler.tasks.get(key)
        if ts is None or ts.run_spec is None or not self.out_of_retries(ts):
            return
        limit = int(self.limit(ts) or 0)
        fail_task_with(ts, worker_died_too_often, str(key), int(ts.suspicious), limit)
        if self.on_exhausted is not None:
            self.on_exhausted(str(key), int(ts.suspicious), limit)
