"""Fail fast on resource requests that no worker can ever satisfy, instead of a task pending forever.

A request is feasible when one worker has every resource in it: a live one, one the session's own cluster
keeps (a local cluster's Nanny restarts a worker that died; until it is back the task waits, as in Ray), or one
this client saw within ``labcluster.infeasible-grace`` (the same restart gap on a cluster it connected to,
whose spec it does not know). Feasible answers are cached for a few seconds per client (so ``.remote()`` stays
cheap); an infeasible answer is confirmed against a fresh read of the scheduler before it raises.
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
#: per client: each worker it has seen (by name, which a restarted worker keeps), its resources and when
_seen: dict[str, dict[str, tuple[dict[str, float], float]]] = {}


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
        if not any(fits(w.resources, request) for w in workers) and not _may_come_back(client, request):
            err = InfeasibleResourceError(what, request, [(w.name + _sim(w), w.resources) for w in workers])
            if config.get("infeasible") == "warn":
                warnings.warn(str(err), stacklevel=4)
                return
            raise err
    with _cache_lock:
        _cache[cache_key] = now + _CACHE_SECONDS


def forget_client(client: Client) -> None:
    """Drop what this process remembers for ``client`` (its session ended)."""
    cid = str(client.id)
    with _cache_lock:
        _seen.pop(cid, None)
        for key in [k for k in _cache if k[0] == cid]:
            del _cache[key]


def _may_come_back(client: Client, request: Mapping[str, float]) -> bool:
    """Whether a worker that fits ``request`` is only away for a moment: kept by the session's own cluster, or
    seen by this client within ``labcluster.infeasible-grace``."""
    from .session import session_of

    session = session_of(client)
    kept = session.kept_worker_resources() if session is not None else []
    if any(fits(resources, request) for resources in kept):
        return True
    since = time.monotonic() - config.seconds("infeasible-grace")
    seen = _seen.get(str(client.id), {})
    return any(fits(resources, request) for resources, when in list(seen.values()) if when >= since)


def _sim(w: WorkerInfo) -> str:
    return " (simulated GPU)" if w.simulated else ""


def _workers(client: Client, fresh: bool) -> list[WorkerInfo]:
    info: Any = client.scheduler_info(n_workers=-1) if fresh else client._scheduler_identity
    if not info:
        info = client.scheduler_info(n_workers=-1)
    workers = workers_from_info(info)
    now = time.monotonic()
    with _cache_lock:
        seen = _seen.setdefault(str(client.id), {})
        seen.update((w.name, (dict(w.resources), now)) for w in workers)
    return workers
