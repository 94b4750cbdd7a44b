"""Blocking inside a task: give the task's thread *and resource slots* back while it waits (:func:`blocked`),
or -- for holder tasks -- give the thread back and keep the slots until released (:func:`hold`).

Ray releases a task's CPU while it is blocked in ``ray.get``, so a task on a one-slot worker can
wait for its own children. Dask's ``secede()`` frees the thread but keeps the task's resources
(worker_state_machine: a long-running task stays in the resource accounting), which would deadlock
exactly that case. So, while blocked, we return the task's resources to the worker's pool on the
worker's event loop -- before the secede event is handled, so its ``_ensure_computing`` can start
the children -- and take them back after ``rejoin()``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from distributed import Event, get_worker, rejoin, secede
from distributed.utils import thread_state  # type: ignore[attr-defined]  # not re-exported; the one the worker sets

_local = threading.local()


def _restrictions(worker: Any, key: Any) -> dict[str, float]:
    ts = worker.state.tasks.get(key)
    return dict(ts.resource_restrictions) if ts is not None and ts.resource_restrictions else {}


def _adjust(worker: Any, resources: dict[str, float], sign: int) -> None:
    available = worker.state.available_resources
    for name, amount in resources.items():
        if name in available:
            available[name] += sign * amount


@contextmanager
def blocked() -> Iterator[None]:
    """Context for a blocking wait; a no-op outside tasks and when already blocked."""
    key = getattr(thread_state, "key", None)
    if key is None or getattr(_local, "blocked", False):
        yield
        return
    worker = get_worker()
    resources = _restrictions(worker, key)
    worker.loop.add_callback(_adjust, worker, resources, +1)
    secede()
    _local.blocked = True
    try:
        yield
    finally:
        _local.blocked = False
        rejoin()
        worker.loop.add_callback(_adjust, worker, resources, -1)


def hold(event_name: str, owner_key: str) -> bool:
    """Inside a *holder* task (an actor, a placement-group bundle): free the thread but keep the task's resources
    (a seceded task keeps them in Dask's worker state) until :func:`wait_released` returns."""
    secede()
    return wait_released(Event(event_name), owner_key)


def wait_released(released: Event, owner_key: str) -> bool:
    """Wait until the Dask ``Event`` is set (returns True) or until no client holds ``owner_key`` any more: its
    creator disconnected without releasing it (returns False). Detached holders stay held by ``fire_and_forget``."""
    from distributed import get_client

    from .. import config
    from . import _on_scheduler

    interval = config.seconds("owner-check-interval")
    while not released.wait(timeout=interval):
        if not get_client().run_on_scheduler(_on_scheduler.is_wanted, owner_key):
            return False
    return True
