"""Fail fast on resource requests that no worker can ever satisfy, instead of a task pending forever.

The scheduler extension decides (``labcluster_fits``): a request is feasible when one worker has every resource in
it, a live one, one the local cluster keeps (its Nanny restarts a worker that died; until it is back the task
waits, as in Ray), or one that left within ``labcluster.infeasible-grace`` (the same restart gap on a cluster this
session connected to). Feasible answers are cached per session for ``labcluster.feasibility-cache`` (so
``.remote()`` stays cheap). The error names the shortfall and its fix (``exceptions.shortfall``). The answer also
says whether work that asks for no GPU should keep off GPU workers: it should while a worker without one fits it.
``labcluster.infeasible: warn`` turns the error into a warning, for clusters that autoscale (Ray's behaviour).
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Mapping

from .. import config
from ..exceptions import InfeasibleResourceError
from ..scheduler.protocol import NO_GPU, NO_GPU_ASKS
from .calls import call
from .session import Session


class Feasible:
    """A session's cache of requests the cluster was seen to fit: when each answer expires, and whether work asking
    for it should keep off GPU workers (work that asks for no GPU, on a cluster with workers without one)."""

    def __init__(self, session: Session) -> None:
        self.until: dict[frozenset[tuple[str, float]], tuple[float, bool]] = {}
        self.lock = threading.Lock()


def check(session: Session, request: Mapping[str, float], what: str) -> dict[str, float]:
    """Raise :class:`InfeasibleResourceError` (or warn) if no worker can ever fit ``request``; returns the request
    to submit: ``request``, plus a sliver of ``protocol.NO_GPU`` when the work should keep off GPU workers."""
    if not session.extension:
        return dict(request)
    cache = session.part(Feasible)
    key = frozenset(request.items())
    now = time.monotonic()
    until, avoid = cache.until.get(key, (0.0, False))
    if until > now:
        return _asked(request, avoid)
    answer = call(session.client, "fits", request=dict(request))
    if not answer["fits"]:
        workers = [(w["name"] + (" (simulated GPU)" if w["simulated"] else ""), w["resources"])
                   for w in answer["workers"]]
        err = InfeasibleResourceError(what, request, workers)
        if config.get("infeasible") == "warn":
            warnings.warn(str(err), stacklevel=4)
            return dict(request)
        raise err
    avoid = bool(answer.get("avoid_gpu"))
    with cache.lock:
        cache.until[key] = (now + config.seconds("feasibility-cache"), avoid)
    return _asked(request, avoid)


def _asked(request: Mapping[str, float], avoid_gpu: bool) -> dict[str, float]:
    return {**request, NO_GPU: NO_GPU_ASKS} if avoid_gpu else dict(request)
