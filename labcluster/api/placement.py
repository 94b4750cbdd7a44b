"""Placement groups: reserve bundles of resources as a gang (all or none), with Ray's API.

- ``lc.placement_group(bundles, strategy)`` asks the scheduler extension to place every bundle under the strategy,
  in one atomic step (``labcluster_pg_place``), counting other groups' reservations and live actors. A group that
  can never fit fails at once; one that cannot fit *now* stays pending whole, and its ``ready()`` task waits for
  room. No partial reservation is ever made. An actor created at the same moment can still land where a bundle
  went (Dask routes by worker totals); bundles that have not started after ``labcluster.placement.replan-after``
  are checked, and the group is placed again if an actor took their room.
- Once placed, one **holder task** per bundle (role ``bundle``) runs pinned to its worker with the bundle's
  resources (a seceded task keeps them, as actor holders do), so work outside the group cannot use them. It adds
  the resources ``pg_<id>_<i>_<name>`` to its worker; tasks and actors placed in bundle ``i`` ask for those.
- ``lc.remove_placement_group(pg)`` releases the holders; they give everything back. They also end when the driver
  that made the group is gone (its ``ready()`` key is no longer held), unless it was made with ``lifetime="detached"``.
"""

from __future__ import annotations

import html
import itertools
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from dask.base import annotate
from distributed import fire_and_forget, get_worker

from .. import config
from ..exceptions import BundleTooSmallError, PlacementGroupInfeasibleError
from ..scheduler.placement import STRATEGIES, bundle_resource
from ..scheduler.protocol import ROLE_BUNDLE, ROLE_GROUP, annotations_for
from .blocking import blocked, current_task_key, hold
from .boundary import entry
from .calls import call
from .objects import get, wait
from .options import without_cpu_for_gpus
from .refs import ObjectRef
from .start import current_session


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

    @entry(interrupted="the group is still being placed: pg.wait() again, or lc.remove_placement_group(pg)")
    def wait(self, timeout_seconds: float = 30) -> bool:
        """Wait until the group is reserved; False if it was not within ``timeout_seconds``."""
        ready, _ = wait([self._ready], timeout=timeout_seconds)
        return bool(ready) and self._ready.state == "finished"

    def table(self) -> dict[str, Any]:
        """This group's row of :func:`placement_group_table` (bundles, strategy, state, workers)."""
        return dict(placement_group_table().get(self.id) or {"state": "REMOVED" if self._removed else "UNKNOWN"})

    def wait_placed(self) -> list[str]:
        """Block until the group is placed (once; later calls return at once); the worker of each bundle."""
        if self._placement is None and not self._removed and get(self._ready):
            self._placement = list(self.table()["placement"])
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
        """Turn a task's resource request into one for bundle ``index`` (a resolved index, see :meth:`bundle`).

        Work in a bundle with GPUs asks for no CPU slots (the bundle reserves none: see :func:`placement_group`),
        as a GPU task asks for none outside a group (``options.without_cpu_for_gpus``)."""
        bundle = self.bundle_specs[index]
        if bundle.get("GPU"):  # it sits on a GPU worker, whose threads run what is placed there: no CPU slots
            request = {k: v for k, v in request.items() if k != "CPU"}
        if any(v > bundle.get(k, 0.0) + 1e-9 for k, v in request.items()):
            raise BundleTooSmallError("work placed in the bundle", request, bundle, index, self.id)
        return {bundle_resource(self.id, index, k): v for k, v in request.items()}

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"PlacementGroup({self.id}{label}, {self.strategy}, bundles={self.bundle_specs})"

    def _repr_html_(self) -> str:
        try:
            row = self.table()
        except Exception:  # no session any more: the repr still renders
            row = {}
        state = str(row.get("state", "unknown"))
        color = {"CREATED": "#2a7f2a", "REMOVED": "#555", "PENDING": "#8a6d00"}.get(state, "#555")
        workers = list(row.get("workers") or [])
        cells = "".join(
            f"<tr><td>{i}</td><td>{html.escape(', '.join(f'{k}: {v:g}' for k, v in sorted(b.items())))}</td>"
            f"<td>{html.escape(str(workers[i])) if i < len(workers) else '-'}</td></tr>"
            for i, b in enumerate(self.bundle_specs))
        name = f" <code>{html.escape(self.name)}</code>" if self.name else ""
        return (f"<div><strong>PlacementGroup</strong>{name} {html.escape(self.strategy)} "
                f"<span style='color:{color}'>{html.escape(state)}</span> &middot; id <code>{html.escape(self.id)}"
                f"</code><table><tr><th>bundle</th><th>resources</th><th>worker</th></tr>{cells}</table></div>")


@entry
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
        # a bundle with GPUs reserves no CPU slots: GPU work runs on a GPU worker's own thread (options.py)
        specs.append(without_cpu_for_gpus({str(k): float(v) for k, v in b.items()}))
    session = current_session()
    session.require_extension("placement groups")
    pg_id = uuid.uuid4().hex[:12]
    status = call(session.client, "pg_place", pg_id=pg_id, bundles=specs, strategy=strategy, name=name,
                  owner=_ready_key(pg_id))
    if status["status"] == "infeasible":
        workers = sorted(status["workers"].items())
        raise PlacementGroupInfeasibleError(strategy, specs, [(str(w), r) for w, r in workers])
    key = _ready_key(pg_id)
    with annotate(**annotations_for(role=ROLE_GROUP)):
        ready = session.client.submit(_reserve, pg_id, specs, strategy, name, key=key, pure=False)
    if lifetime == "detached":  # the group outlives this driver: the scheduler keeps its key
        fire_and_forget(ready)
    return PlacementGroup(pg_id, specs, strategy, name, ObjectRef(ready, "placement_group"))


def _ready_key(pg_id: str) -> str:
    """The key of the group's ``ready()`` task: its bundles stay reserved while a client holds it."""
    return f"placement_group-{pg_id}"


def _reserve(pg_id: str, bundles: list[dict[str, float]], strategy: str, name: str | None) -> bool:
    """Runs as a task: place the group (waiting for room), start one holder per bundle, wait for them all.

    An actor created at the same moment can land where a bundle was just placed (Dask routes it by the
    worker's totals). Bundles that have not started within ``labcluster.placement.replan-after`` are checked: if an
    actor now holds what they need, the placement is undone and the group placed again."""
    client = current_session().client
    replan = config.seconds("placement.replan-after")
    with blocked():
        while True:
            status = call(client, "pg_place", pg_id=pg_id, bundles=bundles, strategy=strategy, name=name, wait=5.0,
                          owner=_ready_key(pg_id))
            if status["status"] == "removed":
                return False
            if status["status"] != "placed":
                continue  # pending (waited for room already), or the cluster shrank below it for now
            attempt = status["attempt"]
            with annotate(**annotations_for(role=ROLE_BUNDLE, owner=_ready_key(pg_id))):
                holders = [client.submit(_hold_bundle, pg_id, attempt, i, b, workers=[addr], allow_other_workers=False,
                                         key=f"placement_group_bundle-{pg_id}-{i}-{attempt}", resources=b, pure=False)
                           for i, (addr, b) in enumerate(zip(status["placement"], bundles, strict=True))]
            fire_and_forget(holders)
            while not call(client, "pg_wait_started", pg_id=pg_id, attempt=attempt, timeout=replan):
                if call(client, "pg_unplace", pg_id=pg_id):
                    client.cancel(holders)
                    break
            else:
                return True


def _hold_bundle(pg_id: str, attempt: int, index: int, bundle: dict[str, float]) -> str:
    """Runs as a task on the bundle's worker: hold its resources and expose them as pg_<id>_<i>_* until removed."""
    worker = get_worker()
    client = worker.client
    key = str(current_task_key(worker))
    names = {bundle_resource(pg_id, index, k): v for k, v in bundle.items()}
    client.sync(worker.set_resources, **names)
    call(client, "pg_started", pg_id=pg_id, index=index, attempt=attempt)
    # the thread is free for the group's tasks; the bundle's resources stay held
    if not hold(client, key):  # its driver disconnected without removing it
        call(client, "pg_remove", pg_id=pg_id)
    client.sync(worker.set_resources, **dict.fromkeys(names, 0.0))
    return "released"


@entry
def remove_placement_group(pg: PlacementGroup) -> None:
    """Release the group's reservation; tasks still running in it finish, new ones cannot be placed."""
    if not isinstance(pg, PlacementGroup):
        raise TypeError(f"lc.remove_placement_group() takes a PlacementGroup, got {type(pg).__name__}")
    pg._removed = True
    call(current_session(auto_init=False).client, "pg_remove", pg_id=pg.id)


@entry
def placement_group_table(pg: PlacementGroup | None = None) -> dict[str, Any]:
    """Every group (or just ``pg``): bundles, strategy, name, state (PENDING / CREATED / REMOVED), its workers."""
    session = current_session(auto_init=False)
    session.require_extension("placement groups")
    table = dict(call(session.client, "pg_table"))
    if pg is not None:
        return dict(table.get(pg.id) or {})
    return table


def get_placement_group(name: str) -> PlacementGroup:
    """The placement group named ``name`` (``lc.placement_group(..., name=...)``), as Ray's
    ``ray.util.get_placement_group``; ValueError if there is none."""
    session = current_session(auto_init=False)
    session.require_extension("placement groups")
    pg_id = call(session.client, "pg_lookup", name=name)
    if pg_id is None:
        raise ValueError(f"no placement group named {name!r} exists; create one with "
                         f"lc.placement_group(bundles, name={name!r})")
    entry = placement_group_table()[pg_id]
    ready = ObjectRef.from_key(_ready_key(pg_id), "placement_group")
    return PlacementGroup(pg_id, [dict(b) for b in entry["bundles"]], entry["strategy"], name, ready)
