"""Dask's ``SpecCluster``, minus one race: a Nanny whose worker died twice, 15 s apart, was closed for good.

When a worker leaves, ``SpecCluster`` looks again ``distributed.deploy.lost-worker-timeout`` (15 s) later and closes
the worker's Nanny unless a worker of that name is registered *at that instant*. A Nanny restarts a worker that
died (in ~0.2 s here), so the look is meant to find it back; but if that same worker died again just before the
look (a second crash, a test killing it again), the look falls between its death and its restart, and the Nanny
is closed: the worker never comes back and work that needs it waits forever (seen: a recovery test killing a
worker a few times in a row; the known flaw of dask/distributed#3088). Here the look closes the Nanny only if no
worker of that name arrived since the one that left: one that came back in between proves the Nanny works.
"""

from __future__ import annotations

import asyncio
from typing import Any

import dask
from dask.utils import parse_timedelta
from distributed import SpecCluster
from distributed.deploy.cluster import Cluster


class KeepingSpecCluster(SpecCluster):
    """``SpecCluster`` that keeps a Nanny which restarted its worker since it left (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        #: worker name -> how many times a worker of that name registered (the scheduler said "add")
        self._arrivals: dict[str, int] = {}
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]

    def _update_worker_status(self, op: str, msg: Any) -> None:
        if op == "add":
            for info in (msg.get("workers") or {}).values():
                name = str(info.get("name"))
                self._arrivals[name] = self._arrivals.get(name, 0) + 1
        elif op == "remove":
            info = self.scheduler_info["workers"].get(msg)
            if info is not None:
                self._look_later(info["name"])
        Cluster._update_worker_status(self, op, msg)  # not SpecCluster's: it schedules the racy look

    def _look_later(self, name: Any) -> None:
        arrived = self._arrivals.get(str(name), 0)

        def look() -> None:
            here = any(d["name"] == name for d in self.scheduler_info["workers"].values())
            if name in self.workers and not here and self._arrivals.get(str(name), 0) == arrived:
                self._futures.add(asyncio.ensure_future(self.workers[name].close()))
                del self.workers[name]

        delay = parse_timedelta(dask.config.get("distributed.deploy.lost-worker-timeout"))
        asyncio.get_running_loop().call_later(delay, look)
