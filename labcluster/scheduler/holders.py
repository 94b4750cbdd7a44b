"""Holder tasks on the scheduler: which tasks are labcluster's plumbing, what they hold, and their releases.

A holder is an ordinary Dask task with a role annotation (``protocol.ROLE``): an actor's holder keeps the actor's
resources for its life, a bundle's holder keeps the bundle's. It frees its thread (``secede``) and keeps its
resources on the worker, where Dask's scheduler no longer counts them; :meth:`Holders.held` counts them again for
placement, spilling and feasibility. A holder asks :meth:`Holders.hold` whether to go on: it is released (``lc.kill``,
``lc.remove_placement_group``, the session that started the cluster closing) or abandoned (no client holds its
owner key any more: the driver that made it disconnected without releasing it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

from .protocol import ABANDONED, HELD, HOLDER_ROLES, RELEASED


class Holders:
    """The roles of labcluster's plumbing tasks, keyed by task key, and the holders' release events."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        #: key -> (role, owner key): every task with a role (the task records leave these out)
        self.roles: dict[str, tuple[str, str]] = {}
        self._released: dict[str, asyncio.Event] = {}
        #: set whenever a client leaves: waiting holders check their owner at once instead of at their timeout
        self._client_left = asyncio.Event()

    def add(self, key: str, role: str, owner: str | None) -> None:
        self.roles[key] = (role, owner or key)

    def forget(self, key: str) -> None:
        self.roles.pop(key, None)
        self._released.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self.roles

    def running(self, roles: frozenset[str] = HOLDER_ROLES) -> Iterable[tuple[Any, Any]]:
        """(TaskState, WorkerState) of every holder (of ``roles``) running now."""
        tasks = self.scheduler.tasks
        for key, (role, _) in list(self.roles.items()):
            if role in roles:
                ts = tasks.get(key)
                if ts is not None and ts.processing_on is not None:
                    yield ts, ts.processing_on

    def held(self, roles: frozenset[str] = HOLDER_ROLES) -> list[tuple[str, Mapping[str, float]]]:
        """(worker address, resources) of every running holder (of ``roles``)."""
        return [(ws.address, dict(ts.resource_restrictions or {})) for ts, ws in self.running(roles)]

    def held_by_worker(self) -> dict[Any, dict[str, float]]:
        """Per WorkerState: the resources its running holders keep."""
        out: dict[Any, dict[str, float]] = {}
        for ts, ws in self.running():
            held = out.setdefault(ws, {})
            for name, amount in (ts.resource_restrictions or {}).items():
                held[name] = held.get(name, 0.0) + amount
        return out

    # -- releases ------------------------------------------------------------------------------------------------

    def _event(self, key: str) -> asyncio.Event:
        event = self._released.get(key)
        if event is None:
            event = self._released[key] = asyncio.Event()
        return event

    def release(self, keys: Iterable[str]) -> None:
        """Let these holders go (remembered for one that has not started yet: it returns at once)."""
        for key in keys:
            self._event(key).set()

    def rearm(self, key: str) -> None:
        """A holder that restarts its actor in place holds again (``lc.kill(no_restart=False)``)."""
        self._event(key).clear()

    def release_all(self) -> int:
        """Let every holder go: the cluster is closing, so their waits end instead of being cut off."""
        keys = [k for k, (role, _) in self.roles.items() if role in HOLDER_ROLES]
        self.release(keys)
        return len(keys)

    def client_left(self) -> None:
        self._client_left.set()
        self._client_left = asyncio.Event()

    def owned(self, key: str) -> bool:
        """Does a client (or ``fire_and_forget``) still hold the holder's owner key?"""
        owner = self.roles.get(key, ("", key))[1]
        ts = self.scheduler.tasks.get(owner)
        return ts is not None and bool(ts.who_wants)

    async def hold(self, key: str, timeout: float) -> str:
        """Wait up to ``timeout`` seconds: RELEASED, ABANDONED (its owner key is held by no one), or HELD."""
        event = self._event(key)
        if not event.is_set():
            left = self._client_left
            waits = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(left.wait())]
            try:
                await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await wait
        if event.is_set():
            return RELEASED
        return HELD if self.owned(key) else ABANDONED
