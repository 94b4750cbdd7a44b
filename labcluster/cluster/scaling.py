"""Grow or shrink one worker group of a cluster labcluster started (``Session.scale``, ``%cluster scale``).

A group's workers are the spec entries ``<group>-0 .. <group>-(n-1)`` of Dask's ``SpecCluster``: scaling a group
to ``n`` adds the missing entries (with the group's options; real GPUs as far as the group has devices, simulated
ones beyond) or removes the highest-numbered ones, then lets ``SpecCluster`` start and stop Nannies to match.
Dask retires a removed worker gracefully: its results move to the workers left.

:meth:`Scaler.install` registers two scheduler handlers: ``labcluster_scale`` (the head process's clusters are
scaled through it; an in-process cluster's :meth:`Scaler.scale_group` is also called on its loop) and
``labcluster_groups`` (every group's name, those scaled to 0 included: the sidebar's scale dialog lists them).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..text import plural
from .groups import WorkerGroup, memory_limits
from .spec import worker_options


class Scaler:
    """A cluster's groups, kept current across scale calls."""

    def __init__(self, cluster: Any, groups: Sequence[WorkerGroup], *, host: str | None, processes: bool,
                 stream_interval: float | None) -> None:
        self.cluster = cluster
        self.groups = {g.name: g for g in groups}
        self.host, self.processes, self.stream_interval = host, processes, stream_interval

    async def scale_group(self, group: str, n: int, timeout: float = 60.0) -> dict[str, Any]:
        """Scale ``group`` to ``n`` workers; returns ``{"group", "added", "removed", "workers"}`` once the
        scheduler lists the new workers and no longer lists the removed ones (``timeout`` bounds the wait)."""
        if group not in self.groups:
            raise ValueError(f"the cluster has no worker group {group!r}; its groups are "
                             f"{', '.join(sorted(self.groups))}")
        if n < 0:
            raise ValueError(f"a group cannot have {n} workers; give 0 or more")
        old = self.groups[group]
        new = dataclasses.replace(old, n=n)
        self.groups[group] = new
        limits = memory_limits(list(self.groups.values()))
        spec = self.cluster.worker_spec
        names = {f"{group}-{i}" for i in range(n)}
        current = {name for name in spec if name.rpartition("-")[0] == group}
        removed = sorted(current - names)
        added = sorted(names - current, key=lambda s: int(s.rpartition("-")[2]))
        if removed:
            self._refuse_holders(removed, group, n, old)
            # graceful: their results move to the workers left first, and the user hears no "worker died"
            scheduler = self.cluster.scheduler
            scheduler.extensions["labcluster"].retiring(removed)
            await scheduler.retire_workers(names=removed, close_workers=False, remove=False)
        for name in removed:
            del spec[name]
        self.cluster.scheduler.extensions["labcluster"].retiring(added, on=False)  # back: a death is news again
        for name in added:
            opts = worker_options(new, int(name.rpartition("-")[2]), self.host or "127.0.0.1", self.processes,
                                  stream_interval=self.stream_interval, memory_limit=limits[group])
            if not self.processes:
                opts.pop("host", None)
            spec[name] = {"cls": _worker_class(self.processes), "options": opts}
        self.cluster.scale(len(spec))  # Dask's own reconciliation: starts and retires Nannies to match the spec
        await self._settled(set(added), set(removed), timeout)
        return {"group": group, "added": added, "removed": removed, "workers": n}

    def _refuse_holders(self, removed: list[str], group: str, n: int, old: WorkerGroup) -> None:
        """Scaling down never takes an actor or a placement-group bundle along silently: it says which, and how to
        let them go first."""
        extension = self.cluster.scheduler.extensions["labcluster"]
        busy = sorted(str(ws.name) for ws in extension.holders.held_by_worker() if str(ws.name) in removed)
        if busy:
            self.groups[group] = old  # nothing changed
            raise ValueError(f"cannot retire {', '.join(busy)}: it holds actors or placement-group bundles; "
                             f"lc.kill those actors (lc.list_actors() shows where each runs) or remove the groups "
                             f"first, or scale {group!r} to more than {n}")

    async def _settled(self, added: set[str], removed: set[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        scheduler = self.cluster.scheduler
        while time.monotonic() < deadline:
            names = {str(ws.name) for ws in scheduler.workers.values()}
            if added <= names and not (removed & names):
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"scaling did not settle within {timeout:g}s (waiting for {sorted(added)} to start and "
                           f"{sorted(removed)} to stop); see the cluster's log")

    def install(self, scheduler: Any) -> None:
        """Register ``labcluster_scale`` and ``labcluster_groups`` on ``scheduler`` (see the module docstring)."""
        scheduler.handlers["labcluster_scale"] = self.handler()  # Session.scale, %cluster scale, the sidebar
        scheduler.handlers["labcluster_groups"] = self.groups_handler()

    def groups_handler(self) -> Callable[..., Any]:
        def labcluster_groups() -> list[dict[str, Any]]:
            return [{"name": name} for name in self.groups]

        return labcluster_groups

    def handler(self) -> Callable[..., Any]:
        async def labcluster_scale(group: str = "cpu", n: int = 0) -> dict[str, Any]:
            try:
                return await self.scale_group(group, int(n))
            except (ValueError, TimeoutError) as e:
                return {"error": str(e), "type": type(e).__name__}

        return labcluster_scale


def _worker_class(processes: bool) -> type:
    from distributed import Nanny, Worker

    return Nanny if processes else Worker


def describe(result: dict[str, Any]) -> str:
    """What a scale call did, in words."""
    parts = []
    if result["added"]:
        parts.append(f"started {', '.join(result['added'])}")
    if result["removed"]:
        parts.append(f"retired {', '.join(result['removed'])}")
    did = "; ".join(parts) or "nothing to change"
    return f"labcluster: worker group {result['group']!r} has {plural(int(result['workers']), 'worker')} ({did})"
