"""Functions that run on the scheduler through ``Client.run_on_scheduler``.

This module is registered with cloudpickle *by value*, so it works against any Dask scheduler,
including one where labcluster is not installed. Keep it free of labcluster imports.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import cloudpickle

# sent by value to the scheduler or workers, so they need not have labcluster installed to run these
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def plugin_names(dask_scheduler: Any = None) -> list[str]:
    """The names of the scheduler's plugins (is labcluster's retry plugin there?)."""
    return list(dask_scheduler.plugins)


def is_wanted(key: str, dask_scheduler: Any = None) -> bool:
    """Does a client (or ``fire_and_forget``) still hold ``key``? Holders end once their owner's key is dropped."""
    ts = dask_scheduler.tasks.get(key)
    return ts is not None and bool(ts.who_wants)


def release_holders(prefix: str, dask_scheduler: Any = None) -> int:
    """Set every Dask Event named ``prefix...``: actor and placement-group holders return. Used before a session
    closes the cluster it started, so their waits end instead of being cancelled mid-wait (which Dask logs as
    errors in the notebook)."""
    events = dask_scheduler.extensions["events"]._events
    names = [name for name in events if str(name).startswith(prefix)]
    for name in names:
        events[name].set()
    return len(names)


def key_states(keys: list[str], dask_scheduler: Any = None) -> dict[str, str]:
    """Each key's state on the scheduler: Dask's, or ``forgotten``, or ``lost`` for data with no task and no copy."""
    out = {}
    for key in keys:
        ts = dask_scheduler.tasks.get(key)
        out[key] = "forgotten" if ts is None else "lost" if ts.run_spec is None and not ts.who_has else str(ts.state)
    return out


def worker_available_resources(dask_worker: Any = None) -> dict[str, float]:
    """Run on each worker (``Client.run``): what its state machine has free, which is what gates tasks.

    The scheduler's own ``used_resources`` forgets seceded tasks (actor and placement-group holders), which
    still hold theirs on the worker."""
    return {k: float(v) for k, v in dask_worker.state.available_resources.items()}


# -- placement groups: one atomic decision on the scheduler's event loop --------------------------------------

def fits(free: Mapping[str, float], need: Mapping[str, float]) -> bool:
    """Whether ``free`` covers every resource in ``need`` (also used on the driver: feasibility)."""
    return all(free.get(k, 0.0) >= v - 1e-9 for k, v in need.items())


def _take(free: dict[str, float], need: dict[str, float]) -> None:
    for k, v in need.items():
        free[k] = free.get(k, 0.0) - v


def plan(capacity: dict[str, dict[str, float]], bundles: list[dict[str, float]], strategy: str) -> list[str] | None:
    """Worker address per bundle, or None when the bundles do not fit ``capacity`` under ``strategy``."""
    free = {w: dict(r) for w, r in capacity.items()}
    order = sorted(free)
    if strategy == "STRICT_PACK":
        total: dict[str, float] = {}
        for b in bundles:
            for k, v in b.items():
                total[k] = total.get(k, 0.0) + v
        for w in order:
            if fits(free[w], total):
                return [w] * len(bundles)
        return None
    if strategy == "STRICT_SPREAD":
        if len(bundles) > len(order):
            return None
        chosen: list[str] = []

        def assign(i: int) -> bool:  # backtracking: few bundles, few workers
            if i == len(bundles):
                return True
            for w in order:
                if w not in chosen and fits(free[w], bundles[i]):
                    chosen.append(w)
                    if assign(i + 1):
                        return True
                    chosen.pop()
            return False

        return list(chosen) if assign(0) else None
    placement: list[str] = []
    for b in bundles:
        used = [w for w in order if w in placement]
        unused = [w for w in order if w not in placement]
        # PACK prefers workers already used; SPREAD prefers the least used
        candidates = used + unused if strategy == "PACK" else sorted(order, key=placement.count)
        target = next((w for w in candidates if fits(free[w], b)), None)
        if target is None:
            return None
        _take(free[target], b)
        placement.append(target)
    return placement


def place_group(pg_id: str, bundles: list[dict[str, float]], strategy: str, name: str | None, held_prefix: str,
                dask_scheduler: Any = None) -> dict[str, Any]:
    """Reserve all bundles or none. Returns ``{"status": "placed"|"pending"|"infeasible", ...}``.

    Counts against each worker's totals: other groups' bundles, and tasks whose key starts with ``held_prefix``
    (actor holders: they keep their resources for the actor's life, and the scheduler's own ``used_resources``
    stops counting them once they secede). Ordinary running tasks are not counted: they finish."""
    table = dask_scheduler.__dict__.setdefault("_labcluster_pgs", {})
    entry = table.get(pg_id)
    if entry is not None and entry["state"] in ("CREATED", "REMOVED"):
        return {"status": "placed" if entry["state"] == "CREATED" else "removed", "placement": entry["placement"],
                "attempt": entry.get("attempt", 0)}
    totals = _totals(dask_scheduler)
    if plan(totals, bundles, strategy) is None:
        table.pop(pg_id, None)
        return {"status": "infeasible", "workers": {dask_scheduler.workers[a].name: r for a, r in totals.items()}}
    free = _free(dask_scheduler, totals, table, held_prefix, skip=pg_id)
    placement = plan(free, bundles, strategy)
    if placement is None:
        table[pg_id] = {"bundles": bundles, "strategy": strategy, "name": name, "state": "PENDING",
                        "placement": []}
        return {"status": "pending"}
    attempt = int(entry.get("attempt", -1)) + 1 if entry is not None else 0
    table[pg_id] = {"bundles": bundles, "strategy": strategy, "name": name, "state": "CREATED",
                    "placement": placement, "attempt": attempt}
    return {"status": "placed", "placement": placement, "attempt": attempt}


def _totals(dask_scheduler: Any) -> dict[str, dict[str, float]]:
    """Each worker's own resources (not the pg_* ones bundles add)."""
    return {addr: {k: float(v) for k, v in ws.resources.items() if not k.startswith("pg_")}
            for addr, ws in dask_scheduler.workers.items()}


def _free(dask_scheduler: Any, totals: dict[str, dict[str, float]], table: dict[str, Any], held_prefix: str,
          skip: str) -> dict[str, dict[str, float]]:
    """What each worker has left for a group: its totals less other placed groups and actor holders."""
    free = {a: dict(r) for a, r in totals.items()}
    for pg_id, other in table.items():
        if other["state"] == "CREATED" and pg_id != skip:
            for addr, b in zip(other["placement"], other["bundles"], strict=True):
                if addr in free:
                    _take(free[addr], b)
    for addr, ws in dask_scheduler.workers.items():
        for ts in ws.processing:
            if str(ts.key).startswith(held_prefix) and ts.resource_restrictions:
                _take(free[addr], {k: v for k, v in ts.resource_restrictions.items() if k in free[addr]})
    return free


def unplace_if_blocked(pg_id: str, held_prefix: str, dask_scheduler: Any = None) -> bool:
    """A placed group whose bundles are still waiting to start: if an actor that arrived after the placement now
    holds what a bundle needs (both were decided at once), undo the placement (state PENDING) and return True so
    the group is placed again; False while the placement still fits (the bundles wait for ordinary tasks)."""
    table = dask_scheduler.__dict__.setdefault("_labcluster_pgs", {})
    entry = table.get(pg_id)
    if entry is None or entry["state"] != "CREATED":
        return False
    totals = _totals(dask_scheduler)
    free = _free(dask_scheduler, totals, table, held_prefix, skip=pg_id)
    for addr, b in zip(entry["placement"], entry["bundles"], strict=True):
        if addr not in free:
            continue
        _take(free[addr], b)
        if any(v < -1e-9 for v in free[addr].values()):
            entry["state"], entry["placement"] = "PENDING", []
            return True
    return False


def remove_group(pg_id: str, dask_scheduler: Any = None) -> int | None:
    """Mark the group removed; returns the attempt whose bundle holders must let go (None if never placed)."""
    table = dask_scheduler.__dict__.setdefault("_labcluster_pgs", {})
    entry = table.get(pg_id)
    if entry is None:
        return None
    entry["state"] = "REMOVED"
    attempt = entry.get("attempt")
    return None if attempt is None else int(attempt)


def group_table(dask_scheduler: Any = None) -> dict[str, Any]:
    table = dask_scheduler.__dict__.setdefault("_labcluster_pgs", {})
    names = {a: ws.name for a, ws in dask_scheduler.workers.items()}
    return {pg_id: {**e, "workers": [names.get(a, a) for a in e["placement"]]} for pg_id, e in table.items()}
