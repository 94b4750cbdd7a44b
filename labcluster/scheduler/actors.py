"""Actors on the scheduler: what each one is, where it lives now, its names, and its restart budget.

Each entry is a plain dict (it travels in handler replies): ``id``, ``class``, ``name``, ``namespace``,
``methods``, ``resources``, ``max_restarts``, ``max_task_retries``, ``holder`` (the holder task's key), ``state``
(``PENDING``, ``ALIVE``, ``RESTARTING``, ``DEAD``), and once constructed ``address``, ``worker``, ``pid``,
``incarnation`` and ``restarts``; a dead one has an ``error``. Decisions that must not race (a name already
taken, one restart too many, kill versus restart) are made here, in one step on the scheduler's event loop.

>>> actors = Actors()
>>> actors.register({"id": "A-1", "class": "A", "name": "a", "namespace": "", "max_restarts": 0})["status"]
'created'
>>> actors.incarnate("A-1")["incarnation"], actors.incarnate("A-1")["state"]
(0, 'DEAD')
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

PENDING, ALIVE, RESTARTING, DEAD = "PENDING", "ALIVE", "RESTARTING", "DEAD"


class Actors:
    """Every actor this scheduler has seen, and waits for one to change."""

    def __init__(self) -> None:
        self.table: dict[str, dict[str, Any]] = {}
        self.names: dict[tuple[str, str], str] = {}
        #: holder task key -> actor id
        self.holders: dict[str, str] = {}
        self._changed: dict[str, asyncio.Event] = {}

    def _notify(self, actor_id: str) -> None:
        event = self._changed.pop(actor_id, None)
        if event is not None:
            event.set()

    def register(self, info: dict[str, Any]) -> dict[str, Any]:
        """Add a new actor; a live one already named so wins: ``{"status": "exists", "actor": it}``."""
        name, namespace = info.get("name"), str(info.get("namespace") or "")
        if name is not None:
            existing = self.lookup(name, namespace)
            if existing is not None:
                return {"status": "exists", "actor": existing}
            self.names[(namespace, name)] = info["id"]
        self.table[info["id"]] = {"state": PENDING, "incarnation": -1, "restarts": 0, **info}
        if info.get("holder"):
            self.holders[str(info["holder"])] = info["id"]
        return {"status": "created", "actor": self.table[info["id"]]}

    def get(self, actor_id: str) -> dict[str, Any] | None:
        return self.table.get(actor_id)

    def lookup(self, name: str, namespace: str = "") -> dict[str, Any] | None:
        """The live actor named ``name`` in ``namespace``, or None."""
        actor_id = self.names.get((namespace, name))
        entry = self.table.get(actor_id) if actor_id is not None else None
        return entry if entry is not None and entry["state"] != DEAD else None

    def update(self, actor_id: str, **fields: Any) -> dict[str, Any] | None:
        entry = self.table.get(actor_id)
        if entry is None:
            return None
        entry.update(fields)
        self._notify(actor_id)
        return entry

    def die(self, actor_id: str, error: str) -> None:
        """Mark the actor dead (a dead one keeps its first error)."""
        entry = self.table.get(actor_id)
        if entry is not None and entry["state"] != DEAD:
            self.update(actor_id, state=DEAD, error=error)

    def incarnate(self, actor_id: str) -> dict[str, Any]:
        """Its holder is about to construct the actor: the next incarnation's number, or the actor DEAD when that
        would be one restart more than ``max_restarts`` (restarts after worker deaths and on purpose, with
        ``lc.kill(no_restart=False)``, come out of one budget, as in Ray)."""
        entry = self.table[actor_id]
        if entry["state"] == DEAD:
            return entry
        incarnation = int(entry.get("incarnation", -1)) + 1
        limit = int(entry.get("max_restarts") or 0)
        if incarnation > 0 and limit != -1 and incarnation > limit:
            self.die(actor_id, f"its worker died and it has no restarts left: max_restarts={limit}, all used "
                               f"(restarts with lc.kill(no_restart=False) count too)")
            return entry
        # not ALIVE until the new instance says where it lives: callers must not route to the old address
        state = PENDING if incarnation == 0 else RESTARTING
        return self.update(actor_id, incarnation=incarnation, restarts=incarnation, state=state) or entry

    def kill(self, actor_id: str, restart: bool, reason: str | None = None) -> bool:
        """``lc.kill``: restart it in place when asked and it has restarts left (True), else mark it dead."""
        entry = self.table.get(actor_id)
        if entry is None:
            return False
        limit = int(entry.get("max_restarts") or 0)
        if restart and entry["state"] == ALIVE and (limit == -1 or int(entry.get("restarts", 0)) < limit):
            self.update(actor_id, state=RESTARTING)
            return True
        self.die(actor_id, reason or "it was killed (lc.kill)")
        return False

    async def wait(self, actor_id: str, newer_than: int, timeout: float) -> dict[str, Any] | None:
        """The entry once the actor is ALIVE in an incarnation above ``newer_than``, or DEAD; else, after
        ``timeout`` seconds, as it is then."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            entry = self.table.get(actor_id)
            if entry is None or entry["state"] == DEAD or (
                    entry["state"] == ALIVE and int(entry["incarnation"]) > newer_than):
                return entry
            left = deadline - loop.time()
            if left <= 0:
                return entry
            event = self._changed.setdefault(actor_id, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), left)

    def forget_dead(self) -> None:
        """Drop the change waits of dead actors (their entries stay, so late callers still learn why)."""
        for actor_id in [a for a, e in self.table.items() if e["state"] == DEAD]:
            self._notify(actor_id)
