"""Fail fast on resource requests that no worker can ever satisfy, instead of a task pending forever.

A request is feasible when one worker has every resource in it: a live one, or one the session's own
cluster keeps (a local cluster's Nanny restarts a worker that died; until it is back the task waits, as in
Ray). Feasible answers are cached for a few seconds per client (so ``.remote()`` stays cheap); an
infeasible answer is confirmed against a fresh read of the scheduler before it raises.
``labcluster.infeasible: warn`` turns the error into a warning for clusters that autoscale.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Mapping
from typing import Any

from distributed import Client

from .. import config
from ..cluster.info import WorkerInfo, workers_from_info
from ..exceptions import InfeasibleResourceError
from ._on_scheduler import fits

_CACHE_SECONDS = 5.0
_cache: dict[tuple[str, frozenset[tuple[str, float]]], float] = {}
_cache_lock = threading.Lock()


def check(client: Client, request: Mapping[str, float], what: str) -> None:
    """Raise :class:`InfeasibleResourceError` (or warn) if no worker fits ``request``."""
    if not request:
        return
    cache_key = (str(client.id), frozenset(request.items()))
    now = time.monotonic()
    if _cache.get(cache_key, 0.0) > now:
        return
    workers = _workers(client, fresh=False)
    if not any(fits(w.resources, request) for w in workers):
        workers = _workers(client, fresh=True)
        if not any(fits(w.resources, request) for w in workers) and not _kept_worker_fits(client, request):
            err = InfeasibleResourceError(what, request, [(w.name + _sim(w), w.resources) for w in workers])
            if config.get("infeasible") == "warn":
                warnings.warn(str(err), stacklevel=4)
                return
            raise err
    with _cache_lock:
        _cache[cache_key] = now + _CACHE_SECONDS


def _kept_worker_fits(client: Client, request: Mapping[str, float]) -> bool:
    from .session import session_of

    session = session_of(client)
    kept = session.kept_worker_resources() if session is not None else []
    return any(fits(resources, request) for resources in kept)


def _sim(w: WorkerInfo) -> str:
    return " (simulated GPU)" if w.simulated else ""


def _workers(client: Client, fresh: bool) -> list[WorkerInfo]:
    info: Any = client.scheduler_info(n_workers=-1) if fresh else client._scheduler_identity
    if not info:
        info = client.scheduler_info(n_workers=-1)
    return workers_from_info(info)
