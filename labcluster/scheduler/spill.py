"""Move tasks off workers whose resources are held for good (actors, placement-group bundles).

Dask's scheduler sends a task with resource restrictions to a worker whose *total* resources fit it; the
worker then queues it until its *free* resources do. Holder tasks (an actor holding its GPU for its life,
a bundle holding its reservation) never give theirs back while they live, so a task sent behind one waits
forever even while another worker sits idle (seen: GPU tasks stuck behind a GPU actor with a second GPU
free). Ray's raylet would spill the task to the free node.

:func:`spill` does that with Dask's own work stealing (``dask_internals.move_task``): it looks at the workers
that run holders, finds tasks there that cannot run while the holders live (the worker's totals less what the
holders keep do not fit them), and asks for each one to move to a worker that has room. A task that only waits
for ordinary tasks to finish is left alone. The extension runs it every ``labcluster.spill-interval``; on a
plain ``dask scheduler`` (no extension) such tasks wait for the holder.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..dask_internals import move_task


def _room(ws: Any, held: Mapping[str, float], need: Mapping[str, float]) -> bool:
    return all(ws.resources.get(name, 0.0) - held.get(name, 0.0) >= amount - 1e-9 for name, amount in need.items())


def spill(scheduler: Any, held: Mapping[Any, dict[str, float]], holders: Any) -> int:
    """Move tasks queued behind holders to workers with room; ``held``: per worker, what its holders keep;
    ``holders``: the keys of every holder (never moved). Returns how many moves were asked for."""
    moved = 0
    for victim, victim_held in held.items():
        if not victim_held:
            continue
        for ts in list(victim.processing):
            need = ts.resource_restrictions
            if not need or ts.key in holders or _room(victim, victim_held, need):
                continue
            valid = scheduler.valid_workers(ts)
            thieves = [ws for ws in (scheduler.running if valid is None else valid)
                       if ws is not victim and _room(ws, held.get(ws, {}), need)]
            if not thieves:
                continue  # nowhere better: it waits for the holder, as it would on Ray
            thief = min(thieves, key=lambda ws: len(ws.processing))
            moved += move_task(scheduler, ts, victim, thief)
    return moved
