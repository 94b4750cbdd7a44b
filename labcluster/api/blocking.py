"""Blocking inside a task: give the task's thread *and resource slots* back while it waits (:func:`blocked`),
or -- for holder tasks -- give the thread back and keep the slots until released (:func:`hold`).

Ray releases a task's CPU while it is blocked in ``ray.get``, so a task on a one-slot worker can
wait for its own children. Dask's ``secede()`` frees the thread but keeps the task's resources
(worker_state_machine: a long-running task stays in the resource accounting), which would deadlock
exactly that case. So, while blocked, we return the task's resources to the worker's pool on the
worker's event loop -- before the secede event is handled, so its ``_ensure_computing`` can start
the children -- and take them back after ``rejoin()`` (``dask_internals.lend_resources``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from distributed import get_worker, rejoin, secede

from .. import config
from ..dask_internals import lend_resources
from ..scheduler.protocol import HELD, RELEASED
from .calls import call

_local = threading.local()


def current_task_key(worker: Any) -> Any:
    """The key of the Dask task running in this thread, or None (an actor's thread, the driver)."""
    try:
        return worker.get_current_task()
    except (AttributeError, KeyError):  # Dask knows it only in its own task threads
        return None


@contextmanager
def blocked() -> Iterator[None]:
    """Context for a blocking wait; a no-op outside tasks and when already blocked."""
    try:
        worker = get_worker()
    except ValueError:
        worker = None
    key = current_task_key(worker) if worker is not None else None
    if worker is None or key is None or getattr(_local, "blocked", False):
        yield
        return
    worker.loop.add_callback(lend_resources, worker, key, +1)
    secede()
    _local.blocked = True
    try:
        yield
    finally:
        _local.blocked = False
        rejoin()
        worker.loop.add_callback(lend_resources, worker, key, -1)


def hold(client: Any, key: str) -> bool:
    """Inside a *holder* task (an actor, a placement-group bundle): free the thread but keep the task's resources
    (a seceded task keeps them in Dask's worker state) until :func:`wait_released` returns."""
    secede()
    return wait_released(client, key)


def wait_released(client: Any, key: str) -> bool:
    """Wait until the holder ``key`` is released (True) or abandoned: no client holds its owner key any more, its
    creator disconnected without releasing it (False). Detached holders stay held by ``fire_and_forget``."""
    interval = config.seconds("owner-check-interval")
    while True:
        answer = call(client, "hold", key=key, timeout=interval)
        if answer == RELEASED:
            return True
        if answer != HELD:
            return False
