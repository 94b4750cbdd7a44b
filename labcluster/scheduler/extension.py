"""labcluster's scheduler extension: the scheduler-side state, and the handlers that read and change it.

:class:`LabclusterSchedulerPlugin` installs one :class:`LabclusterExtension` as ``scheduler.extensions["labcluster"]``
(and, as its settings say, the task recorder, per-task retries and stream tuning). Every scheduler labcluster
starts has it; ``lc.init(address=...)`` adds it to a scheduler that lacks it (labcluster must be installed there).
The client API (``labcluster/api/calls.py``), the dashboards and the Jupyter server extension reach the state only
through these handlers, with plain (msgpack-able) arguments and replies:

==============================  =====================================================================
handler (``labcluster_*``)      what it does
==============================  =====================================================================
info                            version and which parts run here (records, retries)
key_states                      each key's state: Dask's, ``forgotten``, or ``lost`` (no task, no copy)
removals                        how many workers left so far, and how long ago the last did
memory, memory_watch            bytes of results the workers hold; the peak since a watch began (a Dataset run)
records, lineage                pages of task records; every attempt an object depends on
worker_names                    address -> name of every worker seen, for pictures of the records
fits                            whether a worker fits a request: live, kept by a local cluster, or away
holding, waiting_on             the running work that holds what a request asks for (a waiting actor); of some
                                keys, the tasks that wait for resources running work holds, and that work
keep_workers, workers_gone      a local cluster says which workers it keeps (its Nannies restart them); are
                                they all gone for good
hold, release, release_all      holder tasks wait to be released; lc.kill / remove_placement_group
actor_register, actor_get,      the actor table: create (names are unique per namespace), look up,
actor_lookup, actor_list,       wait for a state, restart budget (incarnate), kill or restart
actor_update, actor_incarnate,
actor_kill
pg_place, pg_started,           placement groups: place all bundles or none (waiting for room), the
pg_wait_started, pg_unplace,    bundle holders report in, undo a placement an actor raced, remove,
pg_remove, pg_table, pg_lookup  the table, find by name
stream_push, stream_next,       streaming generator tasks: the worker pushes each yielded object (its
stream_close                    caller holds it at once), the caller reads them in order, then closes
==============================  =====================================================================

``memory_watch``'s beginning also comes as a message on a client's batched stream (``Session.send``): no reply,
no round trip, and in order with the client's task submissions, so the watch is open before the tasks sent after
it run. (An op whose effect a later RPC from the same client must see cannot go that way: the RPC may overtake it.)

Roles are read from task annotations (``protocol.ROLE``) when graphs arrive (``update_graph``), never from keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from distributed import SchedulerPlugin
from tornado.ioloop import PeriodicCallback

from ..diagnostics.recorder import RecordsPlugin
from . import actors as actor_states
from .actors import Actors
from .generators import Streams
from .holders import Holders
from .placement import Groups, fits, is_bundle_resource
from .protocol import NOTICES, OWNER, ROLE, ROLE_ACTOR, ROLE_BUNDLE, WORKER_INFO
from .retries import RetryLimitPlugin
from .spill import spill
from .streams import StreamsSchedulerPlugin
from .usage import holding, waiting_on

logger = logging.getLogger(__name__)

#: open ``memory_watch``es kept at most (the oldest goes first: a driver that died never ends its own)
MAX_MEMORY_WATCHES = 64


class LabclusterExtension:
    """The state labcluster keeps on the scheduler, and its ``labcluster_*`` handlers (see the module docstring)."""

    def __init__(self, scheduler: Any, records: RecordsPlugin | None, retries: bool, grace: float) -> None:
        self.scheduler = scheduler
        self.records = records
        self.retries = retries
        #: seconds a worker that left still counts as coming back (its Nanny restarting it): infeasible-grace
        self.grace = grace
        self.holders = Holders(scheduler)
        #: the per-task retry limits (set by the plugin where it runs them)
        self.retry_limit: RetryLimitPlugin | None = None
        self.actors = Actors()
        self.groups = Groups()
        self.streams = Streams()
        if records is not None:
            records.plumbing = self.holders.roles  # type: ignore[assignment]  # a dict: membership is what counts
        #: name -> resources of each worker a local cluster keeps (its Nanny restarts it if it dies): they count as
        #: here; None on a cluster this scheduler does not manage (nothing known of what may come back)
        self.kept: dict[str, dict[str, float]] | None = None
        #: workers retired on purpose (a group scaled down): no "worker died" notice when they leave
        self.retired: set[str] = set()
        #: workers by address while they are here: (name, own resources); those that left: name -> (resources, when)
        self._here: dict[str, tuple[str, dict[str, float]]] = {}
        self.left: dict[str, tuple[dict[str, float], float]] = {}
        #: the name of every worker address seen (bounded), for pictures of records that name dead workers too
        self.names: dict[str, str] = {}
        if records is not None:
            records.worker_names = self.names
        self._changed = asyncio.Event()
        #: workers removed so far, and when the last was (monotonic)
        self._removals: tuple[int, float | None] = (0, None)
        #: per watch (a Dataset execution): (the bytes held when it began, the most held at once since)
        self.memory_watches: dict[str, tuple[int, int]] = {}
        #: watches that ended before they began (bounded): their beginning, sent on a stream, comes late
        self.memory_ended: dict[str, None] = {}
        scheduler.handlers.update({f"labcluster_{name}": handler for name, handler in self._handlers().items()})
        scheduler.stream_handlers.update({f"labcluster_{name}": handler
                                          for name, handler in self._stream_handlers().items()})

    def _handlers(self) -> dict[str, Callable[..., Any]]:
        return {
            "info": self.info, "key_states": self.key_states, "removals": self.removals, "memory": self.memory,
            "memory_watch": self.memory_watch,
            "records": self.records_page,
            "lineage": self.lineage,
            "fits": self.fits, "holding": self.holding, "waiting_on": self.waiting_on,
            "keep_workers": self.keep_workers,
            "workers_gone": self.workers_gone,
            "worker_names": self.worker_names,
            "hold": self.hold, "release": self.release, "release_all": self.release_all,
            "actor_register": self.actor_register, "actor_get": self.actor_get, "actor_lookup": self.actor_lookup,
            "actor_list": self.actor_list, "actor_update": self.actor_update,
            "actor_incarnate": self.actor_incarnate, "actor_kill": self.actor_kill,
            "pg_place": self.pg_place, "pg_started": self.pg_started, "pg_wait_started": self.pg_wait_started,
            "pg_unplace": self.pg_unplace, "pg_remove": self.pg_remove, "pg_table": self.pg_table,
            "pg_lookup": self.pg_lookup,
            "stream_push": self.stream_push, "stream_next": self.stream_next, "stream_close": self.stream_close,
        }

    def _stream_handlers(self) -> dict[str, Callable[..., Any]]:
        """The ops a client may send on its batched stream (no reply). Dask passes the sender as ``client=``."""

        def memory_watch(id: str, client: str | None = None) -> None:
            if id not in self.memory_ended:  # its end (an RPC) overtook it: a run with nothing to watch
                self.memory_watch(id)

        return {"memory_watch": memory_watch}

    # -- what changed: wakes waits for room (placement groups) --------------------------------------------------

    def changed(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _until_changed(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    # -- plugin hooks (forwarded by LabclusterSchedulerPlugin) ---------------------------------------------------

    def graph_arrived(self, annotations: Mapping[str, Mapping[Any, Any]]) -> None:
        roles = annotations.get(ROLE)
        if roles:
            owners = annotations.get(OWNER) or {}
            for key, role in roles.items():
                self.holders.add(str(key), str(role), owners.get(key))

    def holder_ended(self, key: str, finish: str, kwargs: Mapping[str, Any]) -> None:
        role, _ = self.holders.roles.get(key, ("", ""))
        if role == ROLE_ACTOR and finish == "erred":
            text = kwargs.get("exception_text") or "its holder task failed"
            self.actors.die(self.actors.holders.get(key, ""), f"its holder task failed: {text}")
        if finish == "forgotten":
            self.holders.forget(key)
        self.changed()

    def out_of_retries(self, key: str, deaths: int, limit: int) -> None:
        """The retry plugin failed ``key`` after ``deaths`` worker deaths: for an actor's holder, the actor is dead."""
        actor_id = self.actors.holders.get(key)
        if actor_id is not None:
            self.actors.die(actor_id, f"its worker died and it has no restarts left: max_restarts={limit}, and "
                                      f"{deaths} worker(s) died while it ran")

    def worker_added(self, address: str) -> None:
        ws = self.scheduler.workers.get(address)
        if ws is not None:
            self._here[address] = (str(ws.name), _own(ws.resources))
            self.names[address] = str(ws.name)
            while len(self.names) > 10_000:
                self.names.pop(next(iter(self.names)))
        self.changed()

    def worker_removed(self, address: str) -> None:
        name, resources = self._here.pop(address, (address, {}))
        self.left[name] = (resources, time.monotonic())
        self._removals = (self._removals[0] + 1, time.monotonic())
        self.changed()

    def worker_event(self, msg: Mapping[str, Any]) -> None:
        """Dask's remove-worker event: tell the user, in one line, what it means for their work."""
        worker = self.scheduler.workers.get(msg.get("worker"))
        name = str(worker.name) if worker is not None else self._here.get(str(msg.get("worker")), (None,))[0]
        name = name or str(msg.get("worker"))
        if msg.get("expected") or name in self.retired:
            return  # retired on purpose (scale down, shutdown): nothing to act on
        kept = self.kept is not None and name in self.kept
        fate = self._fates(msg.get("processing-tasks") or ())
        lost = len(msg.get("lost-computed-tasks") or ())
        put_lost = len(msg.get("lost-scattered-tasks") or ())
        parts = [f"worker {name} died"]
        if kept:
            parts.append("restarting it")
        if fate["retried"]:
            parts.append(f"{fate['retried']} task(s) it was running will be retried")
        if fate["failed"]:
            parts.append(f"{fate['failed']} task(s) it was running fail: no retries left (max_retries)")
        for what, how in (("restarted", "will restart"), ("dead", "die: no restarts left (max_restarts)")):
            if fate[what]:
                parts.append(f"actor(s) {', '.join(sorted(set(fate[what])))} {how}")
        if lost:
            parts.append(f"{lost} result(s) will be recomputed")
        if put_lost:
            parts.append(f"{put_lost} lc.put object(s) are lost")
        self.scheduler.log_event(NOTICES, {"kind": "worker-died", "worker": name, "text": "; ".join(parts)})

    def _fates(self, keys: Iterable[Any]) -> dict[str, Any]:
        """What a worker's death means for the tasks it was running: retried, failed (out of retries), and the
        actors among them (their holders) that restart or die. Asked after Dask counted the death."""
        fate: dict[str, Any] = {"retried": 0, "failed": 0, "restarted": [], "dead": []}
        for key in keys:
            ts = self.scheduler.tasks.get(key)
            if ts is None:
                continue
            # each task's own max_retries where the retry plugin runs; else Dask's cluster-wide limit
            out = (self.retry_limit.out_of_retries(ts) if self.retry_limit is not None
                   else ts.suspicious > self.scheduler.allowed_failures)
            actor_id = self.actors.holders.get(str(key))
            if actor_id is not None:
                entry = self.actors.get(actor_id) or {}
                fate["dead" if out else "restarted"].append(str(entry.get("class") or actor_id))
            elif str(key) not in self.holders.roles:  # plumbing (placement-group bundles) is not the user's work
                fate["failed" if out else "retried"] += 1
        return fate

    # -- handlers ------------------------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        from .. import __version__

        return {"version": __version__, "records": self.records is not None, "retries": self.retries,
                "stream_ops": sorted(self._stream_handlers())}

    def memory(self) -> dict[str, Any]:
        """Bytes of results the workers hold now (Dask's per-worker ``nbytes``), in all and per worker name."""
        per = {str(ws.name): int(ws.nbytes) for ws in self.scheduler.workers.values()}
        return {"managed": sum(per.values()), "workers": per}

    def _held_bytes(self) -> int:
        return int(sum(ws.nbytes for ws in self.scheduler.workers.values()))

    def memory_watch(self, id: str, stop: bool = False) -> dict[str, int]:
        """The bytes of results the workers hold now, when watch ``id`` began, and the most they held at once since
        (its first call begins it; ``stop`` ends it). The peak is taken at every result a task stores
        (:meth:`held_bytes_grew`), with no polling: a copy a worker fetched counts from the next stored result on
        (one freed before that is missed). Each stored result sums the workers' bytes while a watch is open: O(workers).
        Watches a driver never ended (it died) stay until :data:`MAX_MEMORY_WATCHES` newer ones push them out."""
        now, watches = self._held_bytes(), self.memory_watches
        if id not in watches:
            if stop:  # evicted, never begun (its first call failed), or its beginning is still on its way
                self.memory_ended[id] = None
                while len(self.memory_ended) > MAX_MEMORY_WATCHES:
                    del self.memory_ended[next(iter(self.memory_ended))]
                return {"now": now, "start": now, "peak": now}
            while len(watches) >= MAX_MEMORY_WATCHES:  # watches whose driver never ended them
                del watches[next(iter(watches))]
            watches[id] = (now, now)
        start, peak = watches.pop(id) if stop else watches[id]
        peak = max(peak, now)
        if not stop:
            watches[id] = (start, peak)
        return {"now": now, "start": start, "peak": peak}

    def held_bytes_grew(self) -> None:
        now, watches = self._held_bytes(), self.memory_watches
        for id, (start, peak) in watches.items():
            if now > peak:
                watches[id] = (start, now)

    def key_states(self, keys: list[str]) -> dict[str, str]:
        tasks = self.scheduler.tasks
        out = {}
        for key in keys:
            ts = tasks.get(key)
            lost = ts is not None and ts.run_spec is None and not ts.who_has
            out[key] = "forgotten" if ts is None else "lost" if lost else str(ts.state)
        return out

    def removals(self) -> dict[str, Any]:
        """How many workers have left so far, and how many seconds ago the last one did (None: none yet)."""
        count, when = self._removals
        return {"count": count, "seconds_ago": None if when is None else time.monotonic() - when}

    def records_page(self, since: int = 0, limit: int | None = None) -> dict[str, Any]:
        if self.records is None:
            return {"enabled": False, "rows": [], "next": 0, "dropped": 0, "end": 0}
        return self.records.page(since, limit)

    def lineage(self, keys: list[str], limit: int = 100_000) -> dict[str, Any]:
        if self.records is None:
            return {"enabled": False, "rows": [], "missing": [], "truncated": False, "current": {}}
        return self.records.lineage(keys, limit)

    def _workers(self) -> list[dict[str, Any]]:
        out = []
        for ws in self.scheduler.workers.values():
            desc = (ws.metrics or {}).get(WORKER_INFO) or {}
            out.append({"name": str(ws.name), "address": ws.address, "resources": _own(ws.resources),
                        "simulated": desc.get("gpu_mode") == "simulated"})
        return sorted(out, key=lambda w: str(w["name"]))

    def fits(self, request: dict[str, float] | None = None, requests: Iterable[dict[str, float]] = ()
             ) -> dict[str, Any]:
        """Whether a worker fits ``request``: one here now, one a local cluster keeps, or one that left less than
        ``grace`` seconds ago (its Nanny may be restarting it). With what the cluster has, for the error, and the
        workers so judged (``capacity``: name, resources).
        ``requests``: many at once, answered as a list in ``fits`` (none: just what the cluster has)."""
        workers = self._workers()
        since = time.monotonic() - self.grace
        could = [w["resources"] for w in workers] + list((self.kept or {}).values()) + [
            r for r, when in self.left.values() if when >= since]

        def one(need: dict[str, float]) -> bool:
            return any(fits(r, need) for r in could)

        answer = one(request) if request is not None else [one(r) for r in requests]
        # what was judged, by worker: those here, those the local cluster keeps, those that may be restarting
        live = {w["name"] for w in workers}
        kept = self.kept or {}
        capacity = [(w["name"], w["resources"]) for w in workers]
        capacity += [(name, dict(r)) for name, r in kept.items() if name not in live]
        capacity += [(name, dict(r)) for name, (r, when) in self.left.items()
                     if when >= since and name not in live and name not in kept]
        return {"fits": answer, "workers": workers, "capacity": capacity}

    def holding(self, request: dict[str, float]) -> list[dict[str, Any]]:
        """What running work holds of ``request`` on the workers that could host it (``usage.holding``)."""
        return holding(self.scheduler, request, self.holders.roles, self.actors, self.groups,
                       self.worker_names(labelled=True))

    def waiting_on(self, keys: list[str]) -> list[dict[str, Any]]:
        """Of ``keys``, the tasks waiting for resources that running work holds (``usage.waiting_on``)."""
        return waiting_on(self.scheduler, keys, self.holders.roles, self.actors, self.groups,
                          self.worker_names(labelled=True))

    def worker_names(self, labelled: bool = False) -> dict[str, str]:
        """Address -> name of every worker this scheduler has seen (those that left too). ``labelled``: as pictures
        show them, a simulated GPU's worker saying so (``gpu-0 (simulated GPU)``)."""
        names = dict(self.names)
        if labelled:
            for w in self._workers():
                if w["simulated"]:
                    names[w["address"]] = f"{w['name']} (simulated GPU)"
        return names

    def retiring(self, names: Iterable[str], on: bool = True) -> None:
        """These workers are being retired on purpose (a group scaled down): their leaving is no news; ``on=False``:
        they are back (scaled up again), and their death would be news."""
        if on:
            self.retired.update(map(str, names))
        else:
            self.retired.difference_update(map(str, names))

    def keep_workers(self, workers: dict[str, dict[str, float]]) -> None:
        self.kept = {str(name): dict(resources) for name, resources in workers.items()}

    def workers_gone(self) -> dict[str, Any] | None:
        """On a local cluster whose workers are all gone and none will come back (their Nannies stopped): which
        left and how long ago. None otherwise (a cluster this scheduler does not manage may yet grow workers)."""
        if self.kept is None or self.kept or self.scheduler.workers:
            return None
        now = time.monotonic()
        return {"left": [{"name": name, "seconds_ago": now - when}
                         for name, (_, when) in sorted(self.left.items(), key=lambda kv: kv[1][1])]}

    async def hold(self, key: str, timeout: float) -> str:
        return await self.holders.hold(key, timeout)

    def release(self, keys: list[str]) -> None:
        self.holders.release(keys)

    def release_all(self) -> int:
        return self.holders.release_all()

    def actor_register(self, info: dict[str, Any]) -> dict[str, Any]:
        return self.actors.register(info)

    async def actor_get(self, actor_id: str, newer_than: int | None = None, timeout: float = 0.0
                        ) -> dict[str, Any] | None:
        if newer_than is None:
            return self.actors.get(actor_id)
        return await self.actors.wait(actor_id, newer_than, timeout)

    def actor_lookup(self, name: str, namespace: str = "") -> dict[str, Any] | None:
        return self.actors.lookup(name, namespace)

    def actor_list(self) -> list[dict[str, Any]]:
        return list(self.actors.table.values())

    def actor_update(self, actor_id: str, fields: dict[str, Any]) -> dict[str, Any] | None:
        return self.actors.update(actor_id, **fields)

    def actor_incarnate(self, actor_id: str) -> dict[str, Any]:
        """The holder is about to construct the actor (first start, restart after a death, or in place)."""
        entry = self.actors.get(actor_id)
        if entry is None:
            return {"state": actor_states.DEAD, "error": "this scheduler does not know the actor"}
        self.holders.rearm(entry["holder"])  # after lc.kill(no_restart=False), its holder holds again
        return self.actors.incarnate(actor_id)

    def actor_kill(self, actor_id: str, restart: bool = False, reason: str | None = None) -> bool:
        """Kill the actor, or restart it in place (True); either way its holder is released (and re-armed by the
        holder itself when it restarts). ``reason``: what ``ActorDiedError`` and ``list_actors`` say."""
        entry = self.actors.get(actor_id)
        restarting = self.actors.kill(actor_id, restart, reason)
        if entry is not None:
            self.holders.release([entry["holder"]])
        return restarting

    def _actors_held(self) -> list[tuple[str, Mapping[str, float]]]:
        """What running actors hold, per worker (other groups' bundles are counted from the group table)."""
        return self.holders.held(frozenset({ROLE_ACTOR}))

    def _totals(self) -> dict[str, dict[str, float]]:
        return {addr: _own(ws.resources) for addr, ws in self.scheduler.workers.items()}

    async def pg_place(self, pg_id: str, bundles: list[dict[str, float]], strategy: str, name: str | None = None,
                       wait: float = 0.0, owner: str | None = None) -> dict[str, Any]:
        """Place the group, waiting up to ``wait`` seconds for room while it does not fit now. ``owner``: the key
        its bundle holders name as their owner (released with the group)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            status = self.groups.place(pg_id, bundles, strategy, name, self._totals(), self._actors_held())
            entry = self.groups.table.get(pg_id)
            if entry is not None and owner is not None:
                entry["owner"] = owner
            if status["status"] == "infeasible":
                status["workers"] = {w["name"]: w["resources"] for w in self._workers()}
            left = deadline - loop.time()
            if status["status"] != "pending" or left <= 0:
                return status
            await self._until_changed(min(left, 1.0))

    def pg_started(self, pg_id: str, index: int, attempt: int) -> None:
        if self.groups.started(pg_id, index, attempt):
            self.changed()

    async def pg_wait_started(self, pg_id: str, attempt: int, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.groups.all_started(pg_id, attempt):
            left = deadline - loop.time()
            if left <= 0:
                return False
            await self._until_changed(left)
        return True

    def pg_unplace(self, pg_id: str) -> bool:
        """Undo a placement an actor raced (see ``Groups.unplace_if_blocked``); its bundle holders are released."""
        undone = self.groups.unplace_if_blocked(pg_id, self._totals(), self._actors_held())
        if undone:
            self._release_bundles(pg_id)
        return undone

    def pg_remove(self, pg_id: str) -> int | None:
        attempt = self.groups.remove(pg_id)
        self._release_bundles(pg_id)
        self.changed()
        return attempt

    def _release_bundles(self, pg_id: str) -> None:
        owner = (self.groups.table.get(pg_id) or {}).get("owner")
        if owner is not None:
            self.holders.release([key for key, (role, of) in self.holders.roles.items()
                                  if role == ROLE_BUNDLE and of == owner])

    def pg_table(self) -> dict[str, Any]:
        return self.groups.describe({a: str(ws.name) for a, ws in self.scheduler.workers.items()})

    def pg_lookup(self, name: str) -> str | None:
        return self.groups.by_name(name)

    def stream_push(self, stream: str, key: str | None = None, owner: str | None = None, done: bool = False) -> None:
        """A streaming task yielded the object ``key``: its caller (``owner``, a client id) holds it from now on."""
        if key is not None and owner is not None and key in self.scheduler.tasks:
            self.scheduler.client_desires_keys(keys=[key], client=owner)
        self.streams.push(stream, key, done)

    async def stream_next(self, stream: str, index: int, timeout: float) -> dict[str, Any]:
        return await self.streams.next(stream, index, timeout)

    def stream_close(self, stream: str, read: int = 0, owner: str | None = None) -> None:
        """The caller is done with the stream, after reading ``read`` objects: it lets go of the others."""
        unread = self.streams.close(stream, read)
        if unread and owner is not None:
            self.scheduler.client_releases_keys(keys=unread, client=owner, stimulus_id=f"stream-close-{time.time()}")

    def spill(self) -> None:
        held = self.holders.held_by_worker()
        if held:
            spill(self.scheduler, held, self.holders.roles)


def _own(resources: Mapping[str, float]) -> dict[str, float]:
    """A worker's own resources, without the ``pg_*`` ones its bundle holders add."""
    return {str(k): float(v) for k, v in resources.items() if not is_bundle_resource(str(k))}


class LabclusterSchedulerPlugin(SchedulerPlugin):
    """Installs :class:`LabclusterExtension` and, as configured, the task recorder and per-task retries.

    ``records``: the recorder's ring size (None: no records); ``retries``: per-task ``max_retries`` for worker
    deaths (only on schedulers labcluster starts, whose cluster-wide limit it raised to the ceiling);
    ``stream_interval``: the batching interval of the scheduler's streams (None keeps Dask's).
    """

    name = "labcluster"

    def __init__(self, *, records: int | None, max_retries: int, retries: bool, stream_interval: float | None,
                 spill_interval: float, grace: float) -> None:
        self.records, self.max_retries, self.retries = records, max_retries, retries
        self.stream_interval, self.spill_interval, self.grace = stream_interval, spill_interval, grace
        self.extension: LabclusterExtension | None = None
        self._spill: PeriodicCallback | None = None

    @classmethod
    def configured(cls, *, retries: bool, stream_interval: float | None) -> LabclusterSchedulerPlugin:
        """From ``labcluster.*`` (records, max-retries, spill-interval, infeasible-grace)."""
        from .. import config

        return cls(records=int(config.get("records.max")) if config.get("records.enabled") else None,
                   max_retries=int(config.get("max-retries")), retries=retries, stream_interval=stream_interval,
                   spill_interval=config.seconds("spill-interval"), grace=config.seconds("infeasible-grace"))

    async def start(self, scheduler: Any) -> None:
        recorder = RecordsPlugin(self.records, self.max_retries) if self.records is not None else None
        self.extension = LabclusterExtension(scheduler, recorder, self.retries, self.grace)
        scheduler.extensions["labcluster"] = self.extension
        if self.retries:
            self.extension.retry_limit = RetryLimitPlugin(self.max_retries, self.extension.out_of_retries)
        parts: list[SchedulerPlugin] = [p for p in (
            recorder, self.extension.retry_limit,
            StreamsSchedulerPlugin(self.stream_interval) if self.stream_interval is not None else None) if p]
        for plugin in parts:
            scheduler.add_plugin(plugin)
            await plugin.start(scheduler)
        for address in scheduler.workers:
            self.extension.worker_added(address)
        from ..dashboards import add_pages

        add_pages(scheduler)  # labcluster's bokeh pages, on this scheduler's own dashboard server where it has one
        self._spill = PeriodicCallback(self.extension.spill, self.spill_interval * 1000)
        self._spill.start()

    async def close(self) -> None:
        if self._spill is not None:
            self._spill.stop()

    def update_graph(self, scheduler: Any, *, annotations: Mapping[str, Mapping[Any, Any]] | None = None,
                     **kwargs: Any) -> None:
        if annotations and self.extension is not None:
            self.extension.graph_arrived(annotations)

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        # every transition of every task passes here: one comparison for the common ones
        if finish == "memory" or finish == "erred" or finish == "forgotten":
            ext = self.extension
            if ext is not None:
                if key in ext.holders.roles:
                    ext.holder_ended(str(key), finish, kwargs)
                if ext.memory_watches and finish == "memory":
                    ext.held_bytes_grew()

    def add_worker(self, scheduler: Any, worker: str) -> None:
        if self.extension is not None:
            self.extension.worker_added(worker)

    def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
        if self.extension is not None:
            self.extension.worker_removed(worker)

    def remove_client(self, scheduler: Any, client: str) -> None:
        if self.extension is not None:
            self.extension.holders.client_left()

    def log_event(self, topic: str, msg: Any) -> None:
        if (topic == "all" and isinstance(msg, dict) and msg.get("action") == "remove-worker"
                and self.extension is not None):
            self.extension.worker_event(msg)
