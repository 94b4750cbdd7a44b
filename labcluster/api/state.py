"""What the cluster has and where the caller runs: Ray's ``cluster_resources``, ``nodes``, ... on Dask.

One Dask worker plays the part of one Ray node, so ``nodes()`` lists workers and a node id is a
worker address.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

from ..cluster.info import WorkerInfo, total_resources, workers_from_info
from ..dask_internals import free_resources, task_cancelled, task_resources
from ..scheduler.protocol import WORKER_INFO
from .actor_host import call_cancelled, current_actor, running_call
from .blocking import current_task_key
from .session import current_worker
from .start import current_session


def _workers() -> list[WorkerInfo]:
    return workers_from_info(current_session(auto_init=False).client.scheduler_info(n_workers=-1))


def cluster_resources() -> dict[str, float]:
    """Total resources: ``CPU`` slots, ``GPU``, custom resources, ``memory`` (bytes).

    >>> lc.cluster_resources()          # doctest: +SKIP
    {'CPU': 3.0, 'GPU': 1.0, 'memory': 25769803776.0}
    """
    return total_resources(_workers())


def available_resources() -> dict[str, float]:
    """Resources not held by running tasks right now (resources with nothing free are left out, as Ray does)."""
    client = current_session(auto_init=False).client
    workers = workers_from_info(client.scheduler_info(n_workers=-1))
    free = client.run(_free_on_worker)
    out: dict[str, float] = {"memory": float(sum(w.memory_limit for w in workers))}
    for per_worker in free.values():
        for k, v in per_worker.items():
            out[k] = out.get(k, 0.0) + max(float(v), 0.0)
    return {k: v for k, v in out.items() if v > 1e-9}


def _free_on_worker(dask_worker: Any) -> dict[str, float]:
    """Run on each worker (``Client.run``): what its state machine has free, which is what gates tasks."""
    return free_resources(dask_worker)


def nodes() -> list[dict[str, Any]]:
    """One dict per worker with Ray's keys (``NodeID``, ``Alive``, ``Resources``, ...) plus labcluster's
    (``Group``, ``GPUMode``: ``"nvml"``, ``"simulated"`` or ``"none"``, ``GPUIds``, ``PID``)."""
    return [
        {
            "NodeID": w.address,
            "Alive": True,
            "NodeName": w.name,
            "NodeManagerAddress": w.host,
            "Resources": dict(w.resources, memory=float(w.memory_limit)),
            "Group": w.group,
            "GPUMode": w.gpu_mode,
            "GPUIds": list(w.gpu_ids),
            "PID": w.pid,
        }
        for w in _workers()
    ]


def _worker_description(worker: Any) -> dict[str, Any]:
    describe = worker.metrics.get(WORKER_INFO)
    return dict(describe(worker)) if describe else {}


def get_gpu_ids() -> list[int]:
    """GPU ids given to the calling task's worker (simulated ids on simulated GPUs); ``[]`` on the driver."""
    worker = current_worker()
    if worker is None:
        return []
    return list(_worker_description(worker).get("gpu_ids", []))


@dataclass(frozen=True)
class RuntimeContext:
    """Where the caller runs: Ray's ``RuntimeContext`` (``lc.get_runtime_context()``)."""

    job_id: str | None
    node_id: str
    worker_id: str
    task_id: str | None
    assigned_resources: dict[str, float] = field(default_factory=dict)
    gpu_mode: str = "none"
    actor_id: str | None = None
    #: the task (its worker and Dask key) or the actor call it was made in: ``is_canceled`` asks about that one,
    #: from whichever thread asks
    _dask_key: Any = field(default=None, repr=False)
    _worker: Any = field(default=None, repr=False, compare=False)
    _call: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        """Sent elsewhere (returned by a task), it keeps its ids and leaves the worker and the call behind."""
        return {**self.__dict__, "_worker": None, "_call": None}

    def get_job_id(self) -> str | None:
        return self.job_id

    def get_node_id(self) -> str:
        return self.node_id

    def get_worker_id(self) -> str:
        return self.worker_id

    def get_task_id(self) -> str | None:
        return self.task_id

    def is_canceled(self) -> bool:
        """Whether the task or actor call this context was made in was cancelled (``lc.cancel``, every ref to it
        dropped, its actor killed): Python does not stop a running thread, so a long task can check this, from any
        of its threads, and return early, as with Ray. False on the driver."""
        return _cancelled(self._call, self._worker, self._dask_key)

    def get_actor_id(self) -> str | None:
        """The actor whose method is running, or None (in a task or on the driver)."""
        return self.actor_id

    def get_assigned_resources(self) -> dict[str, float]:
        return dict(self.assigned_resources)

    def _repr_html_(self) -> str:
        import html

        return f"<code>{html.escape(repr(self))}</code>"


def _cancelled(call: Any, worker: Any, key: Any) -> bool:
    """Whether the actor call ``call`` or, outside one, the task ``key`` on ``worker`` was cancelled."""
    if call is not None:
        return call_cancelled(call)
    return worker is not None and key is not None and task_cancelled(worker, key)


def canceled_here() -> bool:
    """Whether the task or actor call running in this thread (or coroutine) was cancelled; False elsewhere. Cheap
    (no message): labcluster's own loops over rows read it (``data.operators``)."""
    worker = current_worker()
    return _cancelled(running_call(), worker, current_task_key(worker) if worker is not None else None)


def get_runtime_context() -> RuntimeContext:
    """The calling task's ids (task key, worker, node = worker address), or the driver's."""
    worker = current_worker()
    if worker is not None:
        key = current_task_key(worker)
        assigned = task_resources(worker, key)
        desc = _worker_description(worker)
        return RuntimeContext(job_id=None, node_id=str(worker.address), worker_id=str(worker.id),
                              task_id=None if key is None else str(key), assigned_resources=assigned,
                              gpu_mode=str(desc.get("gpu_mode", "none")), actor_id=current_actor.get(),
                              _dask_key=key, _worker=worker, _call=running_call())
    session = current_session(auto_init=False)
    return RuntimeContext(job_id=str(session.client.id), node_id=f"driver@{socket.gethostname()}",
                          worker_id=str(session.client.id), task_id=None)
