"""What holds the resources a waiting actor asks for: the running work on each worker that could host it.

An actor (or a dataset's actor pool) that waits to start waits because running work holds what it asks for: a task
from another notebook cell holding the one GPU, another actor, a placement group's bundle. :func:`holding` names
that work, so the wait can be explained in one line instead of failing, silent, at a timeout.

Dask's scheduler knows, per worker, the tasks running there and for how long (``executing``, from the heartbeats;
a task queued on the worker behind its resources -- the waiting actor itself -- is not in it) and the seceded
holders (``long_running``), with their resource restrictions. Only the resources the request names count; workers
that could never host it are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dask.utils import key_split

from ..text import resources
from .actors import Actors
from .placement import Groups, fits, is_bundle_resource
from .protocol import ROLE_ACTOR, ROLE_BUNDLE


def holding(scheduler: Any, request: Mapping[str, float], roles: Mapping[str, tuple[str, str]], actors: Actors,
            groups: Groups, names: Mapping[str, str]) -> list[dict[str, Any]]:
    """Running work that holds any resource of ``request`` on a worker whose own resources could host it: one row
    each (``worker`` name, ``what`` it is in words, ``key``, the ``resources`` of the request it holds,
    ``seconds`` it has run where known), the longest-running first."""
    asks = {k for k, v in request.items() if v > 0}
    rows = []
    for ws in scheduler.workers.values():
        own = {k: v for k, v in ws.resources.items() if not is_bundle_resource(str(k))}
        if not asks or not fits(own, request):
            continue
        for ts in set(ws.executing) | set(ws.long_running):
            held = {k: float(v) for k, v in (ts.resource_restrictions or {}).items() if k in asks}
            if not held:
                continue
            seconds = ws.executing.get(ts)
            rows.append({"worker": names.get(ws.address, str(ws.name)), "key": str(ts.key),
                         "what": _what(str(ts.key), roles, actors, groups), "resources": held,
                         "seconds": None if seconds is None else float(seconds)})
    return sorted(rows, key=lambda r: -(r["seconds"] or 0.0))


#: scheduler task states of work that waits to run (assigned to a worker but queued there, or not yet assigned)
_WAITING = frozenset({"processing", "no-worker", "queued"})


def waiting_on(scheduler: Any, keys: list[str], roles: Mapping[str, tuple[str, str]], actors: Actors,
               groups: Groups, names: Mapping[str, str], most: int = 3) -> list[dict[str, Any]]:
    """Of ``keys``, the tasks that wait to run for resources that other running work holds: per such task (at most
    ``most``) its ``key``, what it ``needs`` and the :func:`holding` rows (``held``). A task that runs is not
    waiting; work among ``keys`` is the wait's own (a batch queued behind itself is no news); and CPU slots count
    only where an actor or a bundle holds them (tasks behind tasks is a queue, not a hold-up)."""
    running = {ts for ws in scheduler.workers.values() for ts in (*ws.executing, *ws.long_running)}
    own = set(keys)
    out: list[dict[str, Any]] = []
    for key in keys:
        ts = scheduler.tasks.get(key)
        if ts is None or ts.state not in _WAITING or not ts.resource_restrictions or ts in running:
            continue
        needs = {str(k): float(v) for k, v in ts.resource_restrictions.items()}
        rows = [r for r in holding(scheduler, needs, roles, actors, groups, names) if r["key"] not in own]
        if set(needs) <= {"CPU"}:
            rows = [r for r in rows if roles.get(r["key"], ("", ""))[0] in (ROLE_ACTOR, ROLE_BUNDLE)]
        if rows:
            out.append({"key": key, "what": _what(key, roles, actors, groups), "needs": needs, "held": rows})
            if len(out) >= most:
                break
    return out


def _what(key: str, roles: Mapping[str, tuple[str, str]], actors: Actors, groups: Groups) -> str:
    """A task key in the words a user knows it by: their task, an actor, a placement group's bundle."""
    role, _ = roles.get(key, ("", ""))
    if role == ROLE_ACTOR:
        entry = actors.get(actors.holders.get(key, "")) or {}
        name = f" {entry['name']!r}" if entry.get("name") else ""
        return f"actor {entry.get('id') or key}{name}"
    if role == ROLE_BUNDLE:
        pg_id = key.split("-")[1] if key.count("-") >= 3 else key
        group = groups.table.get(pg_id) or {}
        return f"placement group {group['name']!r} ({pg_id})" if group.get("name") else f"placement group {pg_id}"
    return f"task {key_split(key)} ({key})"


def held_up(needs: Mapping[str, float], rows: list[dict[str, Any]]) -> str:
    """Why work waits, in one clause: ``it needs {GPU: 1}, and task hog (k) holds GPU 1 on gpu-0``."""
    return f"it needs {resources(needs)}, and {describe(rows)}"


def describe(rows: list[dict[str, Any]], most: int = 3) -> str:
    """The rows of :func:`holding` in one clause: ``task hog (hog-1a2b) holds GPU 1 on gpu-0 (running 12s)``.

    >>> describe([{"worker": "gpu-0", "key": "k", "what": "task hog (k)", "resources": {"GPU": 1.0},
    ...            "seconds": 12.3}])
    'task hog (k) holds GPU 1 on gpu-0 (running 12s)'
    >>> describe([])
    ''
    """
    parts = []
    for row in rows[:most]:
        held = ", ".join(f"{k} {v:g}" for k, v in sorted(row["resources"].items()))
        ran = f" (running {row['seconds']:.0f}s)" if row.get("seconds") is not None else ""
        parts.append(f"{row['what']} holds {held} on {row['worker']}{ran}")
    if len(rows) > most:
        parts.append(f"{len(rows) - most} more")
    return "; ".join(parts)
