"""Fail fast on resource requests that no worker can ever satisfy, instead of a task pending forever.

The scheduler extension decides (``labcluster_fits``): a request is feasible when one worker has every resource in
it, a live one, one the local cluster keeps (its Nanny restarts a worker that died; until it is back the task
waits, as in Ray), or one that left within ``labcluster.infeasible-grace`` (the same restart gap on a cluster this
session connected to). Feasible answers are cached per session for ``labcluster.feasibility-cache`` (so
``.remote()`` stays cheap). The error names the shortfall and its fix (``exceptions.shortfall``).
``labcluster.infeasible: warn`` turns the error into a warning, for clusters that autoscale (Ray's behaviour).
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Mapping

from .. import config
from ..exceptions import InfeasibleResourceError
from .calls import call
from .session import Session


class Feasible:
    """A session's cache of requests the cluster was seen to fit, with when each answer expires."""

    def __init__(self, session: Session) -> None:
        self.until: dict[frozenset[tuple[str, float]], float] = {}
        self.lock = threading.Lock()


def check(session: Session, request: Mapping[str, float], what: str) -> None:
    """Raise :class:`InfeasibleResourceError` (or warn) if no worker can ever fit ``request``."""
    if not request or not session.extension:
        return
    cache = session.part(Feasible)
    key = frozenset(request.items())
    now = time.monotonic()
    if cache.until.get(key, 0.0) > now:
        return
    answer = call(session.client, "fits", request=dict(request))
    if not answer["fits"]:
        workers = [(w["name"] + (" (simulated GPU)" if w["simulated"] else ""), w["resources"])
                   for w in answer["workers"]]
        err = InfeasibleResourceError(what, request, workers)
        if config.get("infeasible") == "warn":
            warnings.warn(str(err), stacklevel=4)
            return
        raise err
    with cache.lock:
        cache.until[key] = now + config.seconds("feasibility-cache")
