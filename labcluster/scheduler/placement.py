"""Placement groups on the scheduler: plan bundles onto workers, in one atomic step, all or none.

:class:`Groups` is the extension's table of every group. ``place`` counts against each worker's own resources:
other groups' bundles and running holder tasks (actors keep theirs for their life; the scheduler's own
accounting forgets them once they secede). Ordinary running tasks are not counted: they finish. A group that
cannot fit now stays PENDING whole and the caller waits (``Extension.changed``) until something that could make
room happens; one that can never fit is reported infeasible at once, with what the workers have.

>>> plan({"w1": {"CPU": 2}, "w2": {"CPU": 2}}, [{"CPU": 1}, {"CPU": 1}], "STRICT_SPREAD")
['w1', 'w2']
>>> plan({"w1": {"CPU": 2}}, [{"CPU": 1}, {"CPU": 1}], "STRICT_SPREAD") is None
True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
PENDING, CREATED, REMOVED = "PENDING", "CREATED", "REMOVED"


def bundle_resource(pg_id: str, index: int, name: str) -> str:
    """The resource a bundle's holder adds to its worker, which tasks placed in that bundle ask for."""
    return f"pg_{pg_id}_{index}_{name}"


def is_bundle_resource(name: str) -> bool:
    return name.startswith("pg_")


def fits(free: Mapping[str, float], need: Mapping[str, float]) -> bool:
    """Whether ``free`` covers every resource in ``need``."""
    return all(free.get(k, 0.0) >= v - 1e-9 for k, v in need.items())


def _take(free: dict[str, float], need: Mapping[str, float]) -> None:
    for k, v in need.items():
        free[k] = free.get(k, 0.0) - v


def plan(capacity: Mapping[str, Mapping[str, float]], bundles: list[dict[str, float]],
         strategy: str) -> list[str] | None:
    """Worker address per bundle, or None when the bundles do not fit ``capacity`` under ``strategy``."""
    free = {w: dict(r) for w, r in capacity.items()}
    order = sorted(free)
    if strategy == "STRICT_PACK":
        total: dict[str, float] = {}
        for b in bundles:
            for k, v in b.items():
                total[k] = total.get(k, 0.0) + v
        return next(([w] * len(bundles) for w in order if fits(free[w], total)), None)
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


class Groups:
    """Every placement group the scheduler knows: ``{pg_id: entry}`` with bundles, strategy, name, state, the
    worker of each bundle, the placement attempt, and which bundle holders of that attempt have started."""

    def __init__(self) -> None:
        self.table: dict[str, dict[str, Any]] = {}

    def place(self, pg_id: str, bundles: list[dict[str, float]], strategy: str, name: str | None,
              totals: Mapping[str, dict[str, float]], held: Iterable[tuple[str, Mapping[str, float]]]
              ) -> dict[str, Any]:
        """Reserve every bundle or none: ``{"status": "placed" | "pending" | "infeasible" | "removed", ...}``.

        ``totals``: each worker's own resources; ``held``: (worker, resources) of running holder tasks.
        """
        entry = self.table.get(pg_id)
        if entry is not None and entry["state"] in (CREATED, REMOVED):
            return {"status": "placed" if entry["state"] == CREATED else "removed", "placement": entry["placement"],
                    "attempt": entry.get("attempt", 0)}
        if plan(totals, bundles, strategy) is None:
            self.table.pop(pg_id, None)
            return {"status": "infeasible"}
        placement = plan(self.free(totals, held, skip=pg_id), bundles, strategy)
        if placement is None:
            self.table[pg_id] = {"bundles": bundles, "strategy": strategy, "name": name, "state": PENDING,
                                 "placement": [], "attempt": entry.get("attempt", -1) if entry else -1,
                                 "started": []}
            return {"status": "pending"}
        attempt = int(entry.get("attempt", -1)) + 1 if entry is not None else 0
        self.table[pg_id] = {"bundles": bundles, "strategy": strategy, "name": name, "state": CREATED,
                             "placement": placement, "attempt": attempt, "started": []}
        return {"status": "placed", "placement": placement, "attempt": attempt}

    def free(self, totals: Mapping[str, dict[str, float]], held: Iterable[tuple[str, Mapping[str, float]]],
             skip: str | None = None) -> dict[str, dict[str, float]]:
        """What each worker has left for a group: its totals less other placed groups and running holders."""
        free = {a: dict(r) for a, r in totals.items()}
        for pg_id, other in self.table.items():
            if other["state"] == CREATED and pg_id != skip:
                for addr, b in zip(other["placement"], other["bundles"], strict=True):
                    if addr in free:
                        _take(free[addr], b)
        for addr, resources in held:
            if addr in free:
                _take(free[addr], {k: v for k, v in resources.items() if k in free[addr]})
        return free

    def unplace_if_blocked(self, pg_id: str, totals: Mapping[str, dict[str, float]],
                           held: Iterable[tuple[str, Mapping[str, float]]]) -> bool:
        """A placed group whose bundles are still waiting to start: if a holder that arrived after the placement
        (an actor, decided at the same moment) now takes what a bundle needs, undo the placement (PENDING) and
        return True so the group is placed again; False while the placement still fits."""
        entry = self.table.get(pg_id)
        if entry is None or entry["state"] != CREATED:
            return False
        free = self.free(totals, held, skip=pg_id)
        for addr, b in zip(entry["placement"], entry["bundles"], strict=True):
            if addr not in free:
                continue
            _take(free[addr], b)
            if any(v < -1e-9 for v in free[addr].values()):
                entry["state"], entry["placement"] = PENDING, []
                return True
        return False

    def started(self, pg_id: str, index: int, attempt: int) -> bool:
        """A bundle holder of ``attempt`` runs; True once every bundle of that attempt does."""
        entry = self.table.get(pg_id)
        if entry is None or entry.get("attempt") != attempt:
            return False
        if index not in entry["started"]:
            entry["started"].append(index)
        return self.all_started(pg_id, attempt)

    def all_started(self, pg_id: str, attempt: int) -> bool:
        entry = self.table.get(pg_id)
        return (entry is not None and entry["state"] == CREATED and entry.get("attempt") == attempt
                and len(entry["started"]) == len(entry["bundles"]))

    def remove(self, pg_id: str) -> int | None:
        """Mark the group removed; returns the attempt whose bundle holders must let go (None if never placed)."""
        entry = self.table.get(pg_id)
        if entry is None:
            return None
        entry["state"] = REMOVED
        attempt = entry.get("attempt")
        return None if attempt is None or attempt < 0 else int(attempt)

    def describe(self, names: Mapping[str, str]) -> dict[str, Any]:
        """The table, with worker names (``names``: address -> name) beside the addresses."""
        return {pg_id: {**{k: v for k, v in e.items() if k != "started"},
                        "workers": [names.get(a, a) for a in e["placement"]]} for pg_id, e in self.table.items()}

    def by_name(self, name: str) -> str | None:
        """The id of the newest group named ``name`` that was not removed."""
        found = [pg_id for pg_id, e in self.table.items() if e.get("name") == name and e["state"] != REMOVED]
        return found[-1] if found else None
