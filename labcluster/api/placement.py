"""Placement groups: reserve bundles of resources as a gang (all or none), with Ray's API.

- ``lc.placement_group(bundles, strategy)`` asks the scheduler, in one atomic step on its event loop
  (``_on_scheduler.place_group``), to place every bundle under the strategy, counting other groups'
  reservations and live actors. A group that can never fit fails at once; one that cannot fit *now* stays
  pending whole and is retried until it fits. No partial reservation is ever made. An actor created at the
  same moment can still land where a bundle went (Dask routes by worker totals); bundles that have not
  started after a second are checked, and the group is placed again if an actor took their room.
- Once placed, one **holder task** per bundle runs pinned to its worker with the bundle's resources
  (a seceded task keeps them, as actor holders do), so work outside the group cannot use them. It adds
  the resources ``pg_<id>_<i>_<name>`` to its worker; tasks and actors placed in bundle ``i`` ask for those.
- ``lc.remove_placement_group(pg)`` sets the Dask ``Event`` of the current placement attempt, which the
  holders wait on; they give everything back. They also end when the driver that made the group is gone
  (its ``ready()`` key is no longer held), unless the group was made with ``lifetime="detached"``.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from distributed import Event, fire_and_forget, get_client, get_worker
from distributed.utils import sync

from ..cluster.held import ACTOR_HOLDER_PREFIX, BUNDLE_HOLDER_PREFIX
from ..exceptions import InfeasibleResourceError, PlacementGroupInfeasibleError
from . import _on_scheduler
from .blocking import blocked, hold
from .objects import get, wait
from .refs import ObjectRef
from .session import current_client

STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
_READY_METADATA = "labcluster-pgs"


def bundle_resource(pg_id: str, index: int, name: str) -> str:
    return f"pg_{pg_id}_{index}_{name}"


class PlacementGroup:
    """A gang reservation. ``lc.get(pg.ready())`` or ``pg.wait(timeout)`` until it is placed."""

    def __init__(self, pg_id: str, bundles: list[dict[str, float]], strategy: str, name: str | None,
                 ready: ObjectRef) -> None:
        self.id = pg_id
        self.bundle_specs = bundles
        self.strategy = strategy
        self.name = name
        self._ready = ready
        self._any_bundle = itertools.count()
        #: set once the group is known to be placed: work submitted into it then costs no round trip
        self._placement: list[str] | None = None
        self._removed = False

    @property
    def bundle_count(self) -> int:
        return len(self.bundle_specs)

    def ready(self) -> ObjectRef:
        """An ObjectRef that becomes ``True`` once every bundle is reserved (``False`` if removed first)."""
        return self._ready

    def wait(self, timeout_seconds: float = 30) -> bool:
        """Wait until the group is reserved; False if it was not within ``timeout_seconds``."""
        ready, _ = wait([self._ready], timeout=timeout_seconds)
        return bool(ready) and self._ready.state == "finished"

    def wait_placed(self) -> list[str]:
        """Block until the group is placed (once; later calls return at once); the worker of each bundle."""
        if self._placement is None and not self._removed and get(self._ready):
            self._placement = list(placement_group_table()[self.id]["placement"])
        if self._removed or self._placement is None:
            raise ValueError(f"placement group {self.id} was removed; create a new one to place work in")
        return self._placement

    def bundle(self, index: int) -> int:
        """``index`` checked, with -1 (any bundle) resolved to the next bundle, round robin."""
        if index == -1:
            index = next(self._any_bundle) % self.bundle_count
        if not 0 <= index < self.bundle_count:
            raise ValueError(f"bundle_index={index} but placement group {self.id} has {self.bundle_count} bundles")
        return index

    def request_in_bundle(self, request: Mapping[str, float], index: int) -> dict[str, float]:
        """Turn a task's resource request into one for bundle ``index`` (a resolved index, see :meth:`bundle`)."""
        bundle = self.bundle_specs[index]
        over = {k: v for k, v in request.items() if v > bundle.get(k, 0.0)}
        if over:
            raise InfeasibleResourceError(f"a task in bundle {index} of placement group {self.id}", request,
                                          [(f"bundle {index}", bundle)])
        return {bundle_resource(self.id, index, k): v for k, v in request.items()}

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"PlacementGroup({self.id}{label}, {self.strategy}, bundles={self.bundle_specs})"


def placement_group(bundles: Sequence[Mapping[str, float]], strategy: str = "PACK", name: str | None = None,
                    lifetime: str | None = None) -> PlacementGroup:
    """Reserve ``bundles`` (e.g. ``[{"CPU": 1, "GPU": 1}] * 2``) all together, or not at all.

    ``strategy``: ``PACK`` (as few workers as possible), ``SPREAD`` (as many as possible), ``STRICT_PACK``
    (one worker) or ``STRICT_SPREAD`` (a different worker per bundle). The group is removed when this driver
    disconnects, unless ``lifetime="detached"``.
    """
    if lifetime not in (None, "detached"):
        raise ValueError(f"lifetime must be None or 'detached', got {lifetime!r}")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if not bundles:
        raise ValueError("a placement group needs at least one bundle, e.g. [{'CPU': 1}]")
    specs = []
    for i, b in enumerate(bundles):
        if not isinstance(b, Mapping) or not b or any(not isinstance(v, (int, float)) or v <= 0 for v in b.values()):
            raise ValueError(f"bundle {i} must be a non-empty dict of positive amounts like {{'CPU': 1}}, got {b!r}")
        specs.append({str(k): float(v) for k, v in b.items()})
    client = current_client()
    pg_id = uuid.uuid4().hex[:12]
    status = client.run_on_scheduler(_on_scheduler.place_group, pg_id, specs, strategy, name,
                                  ACTOR_HOLDER_PREFIX)
    if status["status"] == "infeasible":
        workers = sorted(status["workers"].items())
        raise PlacementGroupInfeasibleError(strategy, specs, [(str(w), r) for w, r in workers])
    ready = client.submit(_reserve, pg_id, specs, strategy, name, key=_ready_key(pg_id), pure=False)
    if lifetime == "detached":  # the group outlives this driver: the scheduler keeps its key
        fire_and_forget(ready)
    return PlacementGroup(pg_id, specs, strategy, name, ObjectRef(ready, "placement_group"))


def _ready_key(pg_id: str) -> str:
    """The key of the group's ``ready()`` task: its bundles stay reserved while a client holds it."""
    return f"placement_group-{pg_id}"


def _reserve(pg_id: str, bundles: list[dict[str, float]], strategy: str, name: str | None) -> bool:
    """Runs as a task: (re)try the placement until it fits, start one holder per bundle, wait for them all.

    An actor created at the same moment can land where a bundle was just placed (Dask routes it by the
    worker's totals). Bundles that have not started within ``_REPLAN_AFTER`` are checked: if an actor now
    holds what they need, the attempt is released and the group placed again."""
    client = get_client()
    with blocked():
        while True:
            status = client.run_on_scheduler(_on_scheduler.place_group, pg_id, bundles, strategy, name,
                                              ACTOR_HOLDER_PREFIX)
            if status["status"] == "removed":
                return False
            if status["status"] != "placed":
                time.sleep(0.1)
                continue
            attempt = status["attempt"]
            holders = [client.submit(_hold_bundle, pg_id, attempt, i, b, workers=[addr], allow_other_workers=False,
                                     key=f"{BUNDLE_HOLDER_PREFIX}{pg_id}-{i}-{attempt}", resources=b, pure=False)
                       for i, (addr, b) in enumerate(zip(status["placement"], bundles, strict=True))]
            fire_and_forget(holders)
            check = time.monotonic() + _REPLAN_AFTER
            while not all(client.get_metadata([_READY_METADATA, pg_id, str(i)], default=None) == attempt
                          for i in range(len(bundles))):
                time.sleep(0.02)
                if time.monotonic() > check:
                    check = time.monotonic() + _REPLAN_AFTER
                    if client.run_on_scheduler(_on_scheduler.unplace_if_blocked, pg_id, ACTOR_HOLDER_PREFIX):
                        client.cancel(holders)
                        Event(_release_event(pg_id, attempt), client=client).set()
                        break
            else:
                return True


_REPLAN_AFTER = 1.0


def _release_event(pg_id: str, attempt: int) -> str:
    return f"labcluster-pg-{pg_id}-{attempt}"


def _hold_bundle(pg_id: str, attempt: int, index: int, bundle: dict[str, float]) -> str:
    """Runs as a task on the bundle's worker: hold its resources and expose them as pg_<id>_<i>_* until removed."""
    worker = get_worker()
    names = {bundle_resource(pg_id, index, k): v for k, v in bundle.items()}
    sync(worker.loop, worker.set_resources, **names)
    get_client().set_metadata([_READY_METADATA, pg_id, str(index)], attempt)
    # the thread is free for the group's tasks; the bundle's resources stay held
    if not hold(_release_event(pg_id, attempt), _ready_key(pg_id)):  # its driver disconnected without removing it
        get_client().run_on_scheduler(_on_scheduler.remove_group, pg_id)
    sync(worker.loop, worker.set_resources, **dict.fromkeys(names, 0.0))
    return "released"


def remove_placement_group(pg: PlacementGroup) -> None:
    """Release the group's reservation; tasks still running in it finish, new ones cannot be placed."""
    if not isinstance(pg, PlacementGroup):
        raise TypeError(f"lc.remove_placement_group() takes a PlacementGroup, got {type(pg).__name__}")
    client = current_client()
    pg._removed = True
    attempt = client.run_on_scheduler(_on_scheduler.remove_group, pg.id)
    if attempt is not None:
        Event(_release_event(pg.id, attempt), client=client).set()


def placement_group_table() -> dict[str, dict[str, Any]]:
    """Every group: bundles, strategy, name, state (PENDING / CREATED / REMOVED) and the workers it is on."""
    return dict(current_client().run_on_scheduler(_on_scheduler.group_table))
