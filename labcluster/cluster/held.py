"""Move tasks off workers whose resources are held for good (actors, placement-group bundles).

Dask's scheduler sends a task with resource restrictions to a worker whose *total* resources fit it; the
worker then queues it until its *free* resources do. Holder tasks (an actor holding its GPU for its life,
a bundle holding its reservation) never give theirs back while they live, so a task sent behind one waits
forever even while another worker sits idle (seen: GPU tasks stuck behind a GPU actor with a second GPU
free). Ray's raylet would spill the task to the free node.

This plugin does that spill with Dask's own work stealing: every ``labcluster.spill-interval`` it looks at the
workers that run holders, finds tasks there that cannot run while the holders live (the worker's totals less
what the holders hold do not fit them), and asks the stealing extension to move each one to a worker that
has room (``move_task_request``: the victim confirms the task has not started before it moves). A task that
only waits for ordinary tasks to finish is left alone. Works only where this plugin runs (clusters labcluster
starts); on a plain ``dask scheduler`` such tasks wait for the holder.
"""

from __future__ import annotations

import logging
from typing import Any

from distributed import SchedulerPlugin
from tornado.ioloop import PeriodicCallback

logger = logging.getLogger(__name__)

#: key prefixes of holder tasks: each keeps its resources until released
ACTOR_HOLDER_PREFIX = "actor-"
BUNDLE_HOLDER_PREFIX = "placement_group_bundle-"
_HOLDERS = (ACTOR_HOLDER_PREFIX, BUNDLE_HOLDER_PREFIX)


def _held(ws: Any) -> dict[str, float]:
    held: dict[str, float] = {}
    for ts in ws.long_running:
        if str(ts.key).startswith(_HOLDERS) and ts.resource_restrictions:
            for name, amount in ts.resource_restrictions.items():
                held[name] = held.get(name, 0.0) + amount
    return held


def _room(ws: Any, held: dict[str, float], need: dict[str, float]) -> bool:
    return all(ws.resources.get(name, 0.0) - held.get(name, 0.0) >= amount - 1e-9 for name, amount in need.items())


class SpillPlugin(SchedulerPlugin):
    """Spill tasks queued behind holders to workers with room (see the module docstring)."""

    name = "labcluster-spill"

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.scheduler: Any = None
        self._callback: PeriodicCallback | None = None
        #: tasks moved, for tests and the record
        self.moved = 0

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self._callback = PeriodicCallback(self.spill, self.interval * 1000)
        self._callback.start()

    async def close(self) -> None:
        if self._callback is not None:
            self._callback.stop()

    def spill(self) -> None:
        s = self.scheduler
        stealing = s.extensions.get("stealing")
        if stealing is None:
            return
        held = {ws: _held(ws) for ws in s.workers.values() if ws.long_running}
        for victim, victim_held in held.items():
            if not victim_held:
                continue
            for ts in list(victim.processing):
                need = ts.resource_restrictions
                if (not need or ts in victim.long_running or ts in stealing.in_flight
                        or _room(victim, victim_held, need)):
                    continue
                valid = s.valid_workers(ts)
                thieves = [ws for ws in (s.running if valid is None else valid)
                           if ws is not victim and _room(ws, held.get(ws, {}), need)]
                if not thieves:
                    continue  # nowhere better: it waits for the holder, as it would on Ray
                thief = min(thieves, key=lambda ws: len(ws.processing) - len(ws.long_running))
                stealing.move_task_request(ts, victim, thief)
                self.moved += 1
