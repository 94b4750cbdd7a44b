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
from collections.abc import Mapping, Sequence
from typing import Any

from .. import config
from ..exceptions import InfeasibleResourceError
from ..warn import warn_user
from .calls import call
from .session import Session


class Feasible:
    """A session's cache of requests the cluster was seen to fit, with when each answer expires."""

    def __init__(self, session: Session) -> None:
        self.until: dict[frozenset[tuple[str, float]], float] = {}
        self.lock = threading.Lock()
        #: whether the workers seen at the last check_all had simulated GPUs (pictures and tables say so)
        self.simulated_gpus = False
        #: requests warned about (``infeasible: warn``), until when: one warning for one problem, not one per check
        self.warned: dict[frozenset[tuple[str, float]], float] = {}


def check(session: Session, request: Mapping[str, float], what: str) -> None:
    """Raise :class:`InfeasibleResourceError` (or warn) if no worker can ever fit ``request``."""
    if not request or not session.extension:
        return
    cache = session.part(Feasible)
    if cache.until.get(frozenset(request.items()), 0.0) > time.monotonic():
        return
    answer = call(session.client, "fits", request=dict(request))
    _judge(session, request, what, bool(answer["fits"]), answer["workers"])


def check_all(session: Session, requests: Sequence[tuple[Mapping[str, float], str]]
              ) -> list[tuple[str, dict[str, float]]] | None:
    """:func:`check` for each ``(request, what)``, in one round trip that also says what each of the cluster's
    workers has (its name and its own resources: ``CPU``, ``GPU``, custom ones), counting those a local cluster
    keeps or that may be restarting, as the check does; None where the scheduler runs no extension (nothing
    checked: Dask then keeps an impossible task pending, as without labcluster)."""
    if not session.extension:
        return None
    cache = session.part(Feasible)
    now = time.monotonic()
    todo = [(r, what) for r, what in requests if r and cache.until.get(frozenset(r.items()), 0.0) <= now]
    answer = call(session.client, "fits", requests=[dict(r) for r, _ in todo])
    for (request, what), ok in zip(todo, answer["fits"], strict=True):
        _judge(session, request, what, bool(ok), answer["workers"])
    cache.simulated_gpus = any(w.get("simulated") for w in answer["workers"])
    judged = answer.get("capacity") or [(w["name"], w["resources"]) for w in answer["workers"]]
    return [(str(name), {str(k): float(v) for k, v in res.items()}) for name, res in judged]


def _judge(session: Session, request: Mapping[str, float], what: str, ok: bool,
           workers: Sequence[Mapping[str, Any]]) -> None:
    """Raise (or warn) for an answer that says no worker fits; remember one that fits."""
    cache = session.part(Feasible)
    if not ok:
        shown = [(w["name"] + (" (simulated GPU)" if w["simulated"] else ""), w["resources"]) for w in workers]
        err = InfeasibleResourceError(what, request, shown)
        if config.get("infeasible") == "warn":
            key, now = frozenset(request.items()), time.monotonic()
            if cache.warned.get(key, 0.0) <= now:
                cache.warned[key] = now + config.seconds("feasibility-cache")
                warn_user(str(err))
            return
        raise err
    with cache.lock:
        cache.until[frozenset(request.items())] = time.monotonic() + config.seconds("feasibility-cache")
