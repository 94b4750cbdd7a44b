"""Task records: one row per attempt of every task and actor call, kept on the scheduler.

A scheduler plugin (after distributed's ``TaskStreamPlugin``) watches every transition and keeps, per
attempt: key, function, user-given name, stage, dependencies, worker and thread, resources asked for,
times (submitted, queued, started, finished), final state, bytes of the result, attempt number, whether it
was a reconstruction (and why), and the error. Actor calls, which Dask never sees, arrive from the
actor's worker on its batched stream (``labcluster-actor-call``).

Memory is bounded: a ring of ``labcluster.records.max`` rows stored column-wise (numbers in ``array``\\ s,
names interned), oldest dropped first and counted in ``dropped``. Readers page with the monotonic
``index`` every row gets (``collect(since=...)``). ``RecordStore.nbytes()`` measures what it holds.

>>> store = RecordStore(maxlen=2)
>>> i = store.open("inc-1", "inc", deps=(), submitted=1.0)
>>> store.update(i, state="memory", started=1.5, finished=2.0, nbytes=28)
>>> store.row(i)["state"], store.row(i)["attempt"]
('memory', 1)
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dask._task_spec import Task
from dask.utils import key_split
from distributed import SchedulerPlugin
from distributed.metrics import time

from ..exceptions import ObjectReconstructionFailedError
from .held import ACTOR_HOLDER_PREFIX, BUNDLE_HOLDER_PREFIX
from .retries import ANNOTATION as RETRY_ANNOTATION

STATES = ("waiting", "queued", "no-worker", "processing", "memory", "erred", "released", "lost", "cancelled")
#: a row in one of these is the attempt in progress (they come first in STATES)
_OPEN = ("waiting", "queued", "no-worker", "processing")
_CLOSED = len(_OPEN)
_PROCESSING, _MEMORY = STATES.index("processing"), STATES.index("memory")
#: the stream op a worker reports a finished actor call with, and the plugin's name
RECORD_OP, RECORDS_PLUGIN = "labcluster-actor-call", "labcluster-records"
_PLUMBING = (ACTOR_HOLDER_PREFIX, BUNDLE_HOLDER_PREFIX, "placement_group-")
_STATE_CODE = {s: i for i, s in enumerate(STATES)}
_RECONSTRUCTION, _ACTOR_CALL = 1, 2
#: annotations tasks may carry (``dask.annotate``); labcluster sets them from options
NAME_ANNOTATION, STAGE_ANNOTATION = "labcluster_name", "labcluster_stage"
_NAN = float("nan")
_FIELDS = ("index", "key", "function", "name", "stage", "kind", "deps", "worker", "thread", "resources",
           "submitted", "queued", "started", "finished", "state", "nbytes", "attempt", "reconstruction",
           "reason", "error")


class _Interned:
    """Small ints for repeated values (function names, workers, resource requests); 0 is None."""

    def __init__(self) -> None:
        self.values: list[Any] = [None]
        self.codes: dict[Any, int] = {None: 0}

    def code(self, value: Any) -> int:
        c = self.codes.get(value)
        if c is None:
            c = self.codes[value] = len(self.values)
            self.values.append(value)
        return c


class RecordStore:
    """A bounded ring of task-attempt rows, column-wise (see the module docstring)."""

    def __init__(self, maxlen: int = 100_000) -> None:
        if maxlen < 1:
            raise ValueError(f"labcluster.records.max must be >= 1, got {maxlen}")
        self.maxlen = maxlen
        #: rows ever opened; the next row's index
        self.next_index = 0
        self.names = _Interned()
        self._keys: list[str | None] = [None] * maxlen
        self._deps: list[tuple[str, ...]] = [()] * maxlen
        self._extra: dict[int, dict[str, str]] = {}  # sparse: reason, error
        self._function = array("I", bytes(4 * maxlen))
        self._name = array("I", bytes(4 * maxlen))
        self._stage = array("I", bytes(4 * maxlen))
        self._worker = array("I", bytes(4 * maxlen))
        self._resources = array("I", bytes(4 * maxlen))
        self._thread = array("q", bytes(8 * maxlen))
        self._nbytes = array("q", bytes(8 * maxlen))
        self._times = {t: array("d", [_NAN]) * maxlen for t in ("submitted", "queued", "started", "finished")}
        self._state = array("B", bytes(maxlen))
        self._attempt = array("H", bytes(2 * maxlen))
        self._flags = array("B", bytes(maxlen))
        #: key -> index of its newest row (only rows still held)
        self.latest: dict[str, int] = {}
        self._last_resources: tuple[dict[str, float], int] = ({}, 0)

    @property
    def dropped(self) -> int:
        """Rows dropped to stay within ``maxlen``."""
        return max(0, self.next_index - self.maxlen)

    @property
    def first_index(self) -> int:
        return self.dropped

    def __len__(self) -> int:
        return self.next_index - self.first_index

    def holds(self, index: int) -> bool:
        return self.first_index <= index < self.next_index

    def open(self, key: str, function: str, *, deps: Sequence[str] = (), name: str | None = None,
             stage: str | None = None, resources: Mapping[str, float] | None = None, submitted: float = _NAN,
             attempt: int = 1, reconstruction: bool = False, reason: str | None = None,
             actor_call: bool = False) -> int:
        """Start the row of one attempt; returns its index."""
        index = self.next_index
        slot = index % self.maxlen
        old = self._keys[slot]
        if old is not None:
            if self.latest.get(old) == index - self.maxlen:
                del self.latest[old]
            if self._extra:
                self._extra.pop(index - self.maxlen, None)
        self.next_index += 1
        code = self.names.code
        self._keys[slot] = key
        self._deps[slot] = deps if isinstance(deps, tuple) else tuple(deps)
        self._function[slot] = code(function)
        self._name[slot] = code(name) if name is not None else 0
        self._stage[slot] = code(stage) if stage is not None else 0
        self._worker[slot] = 0
        if not resources:
            self._resources[slot] = 0
        elif resources == self._last_resources[0]:  # tasks mostly ask alike: skip hashing the request
            self._resources[slot] = self._last_resources[1]
        else:
            c = code(tuple(resources.items()))
            self._last_resources = (dict(resources), c)
            self._resources[slot] = c
        self._thread[slot] = 0
        self._nbytes[slot] = -1
        times = self._times
        times["submitted"][slot] = submitted
        times["queued"][slot] = times["started"][slot] = times["finished"][slot] = _NAN
        self._state[slot] = 0  # waiting
        self._attempt[slot] = attempt if attempt < 65535 else 65535
        self._flags[slot] = (_RECONSTRUCTION if reconstruction else 0) | (_ACTOR_CALL if actor_call else 0)
        if reason:
            self._extra[index] = {"reason": reason}
        self.latest[key] = index
        return index

    def update(self, index: int, *, state: str | None = None, worker: str | None = None,
               thread: int | None = None, nbytes: int | None = None, error: str | None = None,
               queued: float | None = None, started: float | None = None, finished: float | None = None) -> None:
        """Fill in what became known about a row (ignored once the row was dropped)."""
        if not self.holds(index):
            return
        slot = index % self.maxlen
        if state is not None:
            self._state[slot] = _STATE_CODE[state]
        if worker is not None:
            self._worker[slot] = self.names.code(worker)
        if thread is not None:
            self._thread[slot] = thread
        if nbytes is not None:
            self._nbytes[slot] = nbytes
        if error is not None:
            self._extra.setdefault(index, {})["error"] = error
        for name, value in (("queued", queued), ("started", started), ("finished", finished)):
            if value is not None:
                self._times[name][slot] = value

    def row(self, index: int) -> dict[str, Any]:
        """One row as a dict (``None`` for what is not known)."""
        if not self.holds(index):
            raise IndexError(f"record {index} was dropped or does not exist yet")
        slot = index % self.maxlen
        values = self.names.values
        extra = self._extra.get(index, {})
        flags = self._flags[slot]
        resources = values[self._resources[slot]]
        times = {t: (None if math.isnan(c[slot]) else c[slot]) for t, c in self._times.items()}
        return {
            "index": index, "key": self._keys[slot], "function": values[self._function[slot]],
            "name": values[self._name[slot]], "stage": values[self._stage[slot]],
            "kind": "actor call" if flags & _ACTOR_CALL else "task", "deps": list(self._deps[slot]),
            "worker": values[self._worker[slot]], "thread": self._thread[slot] or None,
            "resources": dict(resources) if resources else {}, **times,
            "state": STATES[self._state[slot]], "nbytes": None if self._nbytes[slot] < 0 else self._nbytes[slot],
            "attempt": self._attempt[slot], "reconstruction": bool(flags & _RECONSTRUCTION),
            "reason": extra.get("reason"), "error": extra.get("error"),
        }

    def mark(self, index: int, state: str) -> None:
        """Set a row's state (the hot path: no other field)."""
        if index >= self.next_index - self.maxlen:
            self._state[index % self.maxlen] = _STATE_CODE[state]

    def finished(self, index: int, worker: str | None, thread: int | None, nbytes: int | None,
                 started: float | None, finished: float) -> None:
        """The row's task finished (the hot path of ``update``)."""
        if index < self.next_index - self.maxlen:
            return
        slot = index % self.maxlen
        self._state[slot] = _MEMORY
        if worker is not None:
            self._worker[slot] = self.names.code(worker)
        if thread:
            self._thread[slot] = thread
        if nbytes is not None:
            self._nbytes[slot] = nbytes
        if started is not None:
            self._times["started"][slot] = started
        self._times["finished"][slot] = finished

    def running_on(self, index: int, worker: str | None) -> None:
        """The row's task went to ``worker`` (the hot path of ``update``)."""
        if index >= self.next_index - self.maxlen:
            slot = index % self.maxlen
            self._state[slot] = _PROCESSING
            self._worker[slot] = self.names.code(worker) if worker is not None else 0

    def is_open(self, index: int) -> bool:
        return index >= self.next_index - self.maxlen and self._state[index % self.maxlen] < _CLOSED

    def state_of(self, index: int) -> str:
        return STATES[self._state[index % self.maxlen]] if self.holds(index) else "dropped"

    def worker_of(self, index: int) -> str | None:
        return self.names.values[self._worker[index % self.maxlen]] if self.holds(index) else None

    def attempt_of(self, index: int) -> int:
        return self._attempt[index % self.maxlen] if self.holds(index) else 0

    def collect(self, since: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Rows with ``index >= since`` still held, oldest first (at most ``limit``)."""
        start = max(since, self.first_index)
        stop = self.next_index if limit is None else min(self.next_index, start + limit)
        return [self.row(i) for i in range(start, stop)]

    def rows_of(self, key: str) -> list[dict[str, Any]]:
        """Every attempt of ``key`` still held, oldest first."""
        out = []
        index = self.latest.get(key)
        while index is not None and self.holds(index):
            out.append(self.row(index))
            index = self._previous(key, index)
        return out[::-1]

    def _previous(self, key: str, index: int) -> int | None:
        for i in range(index - 1, self.first_index - 1, -1):  # attempts are rare: a short backward scan
            if self._keys[i % self.maxlen] == key:
                return i
            if index - i > 10_000:
                break
        return None

    def nbytes(self) -> int:
        """Bytes this store holds: its columns, plus the keys, dependency tuples and interned values it keeps."""
        size = sum(sys.getsizeof(c) for c in (self._function, self._name, self._stage, self._worker,
                                              self._resources, self._thread, self._nbytes, self._state,
                                              self._attempt, self._flags, *self._times.values()))
        size += sys.getsizeof(self._keys) + sys.getsizeof(self._deps) + sys.getsizeof(self.latest)
        seen: set[int] = set()
        for key, deps in zip(self._keys, self._deps, strict=True):
            if key is not None and id(key) not in seen:
                seen.add(id(key))
                size += sys.getsizeof(key)
            if deps:
                size += sys.getsizeof(deps)
        size += sum(sys.getsizeof(v) for v in self.names.values) + sys.getsizeof(self._extra)
        return size


def reconstruction_failed(key: str, count: int, limit: int) -> None:
    """The run spec of a task whose result was lost more often than its max_retries allows."""
    raise ObjectReconstructionFailedError(key, count, limit)


def _holder(ts: Any) -> str | None:
    who = getattr(ts, "who_has", None)
    return next(iter(who)).address if who else None


def _compute_times(kwargs: Mapping[str, Any]) -> tuple[float | None, float]:
    """(started, finished) of the compute phase the worker reported, or (None, now) when it reported none."""
    for startstop in kwargs.get("startstops") or ():
        if startstop.get("action") == "compute":  # one compute phase per attempt
            return float(startstop["start"]), float(startstop["stop"])
    return None, time()


def _error_text(kwargs: Mapping[str, Any]) -> str | None:
    text = kwargs.get("exception_text")
    return str(text) if text else None


class RecordsPlugin(SchedulerPlugin):
    """Keeps a :class:`RecordStore` of every task attempt and actor call (see the module docstring)."""

    name = RECORDS_PLUGIN

    def __init__(self, maxlen: int = 100_000, default_max_retries: int = 3) -> None:
        self.store = RecordStore(maxlen)
        self.default_max_retries = default_max_retries
        #: per key: how often its result was lost with a worker and rebuilt (bounded by max_retries)
        self.reconstructions: dict[str, int] = {}
        self.scheduler: Any = None
        self._functions: dict[str, str] = {}
        #: per key: why its next attempt runs, (reconstruction?, reason), set when a worker death is seen
        self._why_next: dict[str, tuple[bool, str | None]] = {}

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        scheduler.stream_handlers[RECORD_OP] = self.add_actor_call

    def _function(self, key: str) -> str:
        """The function name in a key: ``name-<32 hex>`` (labcluster's keys) cached per name, else Dask's rule."""
        head, _, tail = key.rpartition("-")
        if len(tail) == 32 and head:
            name = self._functions.get(head)
            if name is None:
                name = self._functions[head] = str(key_split(key))
            return name
        return str(key_split(key))

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        scheduler = self.scheduler
        if scheduler is None:
            return
        key = str(key)
        if key.startswith(_PLUMBING):
            return  # holders are plumbing, not work
        store = self.store
        index = store.latest.get(key)
        is_open = index is not None and store.is_open(index)
        if finish in _OPEN:
            if not is_open:
                ts = scheduler.tasks.get(key)
                if ts is None:
                    return
                reconstruction, reason = self._why_next.pop(key, (False, None))
                if reason is None and index is not None and store.state_of(index) == "memory":
                    # finished before and released since: re-run because a lost result downstream needs it
                    reconstruction, reason = True, "reconstruction: a lost result that depends on it is being rebuilt"
                annotations = ts.annotations
                index = store.open(
                    key, self._function(key), deps=[str(d.key) for d in ts.dependencies] if ts.dependencies else (),
                    name=annotations.get(NAME_ANNOTATION) if annotations else None,
                    stage=annotations.get(STAGE_ANNOTATION) if annotations else None,
                    resources=ts.resource_restrictions, submitted=time(),
                    attempt=store.attempt_of(index) + 1 if index is not None else 1,
                    reconstruction=reconstruction, reason=reason)
            assert index is not None
            if finish == "processing":
                ts = scheduler.tasks.get(key)
                on = ts.processing_on if ts is not None else None
                store.running_on(index, on.address if on is not None else None)
            elif finish == "queued":
                store.update(index, state=finish, queued=time())
            else:
                store.mark(index, finish)
            return
        if finish == "memory":
            if not is_open:
                if start == "processing":
                    return  # its row was dropped (more tasks in flight than labcluster.records.max)
                index = store.open(key, self._function(key), submitted=time())  # data that was never a task here
            assert index is not None
            ts = scheduler.tasks.get(key)
            started, finished = _compute_times(kwargs)
            store.finished(index, kwargs.get("worker") or _holder(ts), kwargs.get("thread"),
                           getattr(ts, "nbytes", None), started, finished)
            return
        if index is None:
            return
        if finish == "erred":
            started, finished = _compute_times(kwargs)
            error = _error_text(kwargs) or ("a task it depends on failed" if start != "processing" else None)
            store.update(index, state="erred", worker=kwargs.get("worker"), thread=kwargs.get("thread"),
                         error=error, started=started, finished=finished)
        elif start == "processing" and finish == "released":
            worker = store.worker_of(index)
            if worker is not None and worker not in scheduler.workers:
                store.update(index, state="released", error=f"worker {worker} died while running it")
                self._why_next[key] = (False, f"retry: worker {worker} died while running attempt "
                                              f"{store.attempt_of(index)}")
            else:
                store.mark(index, "waiting")  # stolen or rescheduled: the same attempt goes on
        elif start == "memory":
            worker = store.worker_of(index)
            if worker is not None and worker not in scheduler.workers:
                store.mark(index, "lost")
                if finish == "released":  # a task's result: Dask recomputes it if it is still wanted
                    self._why_next[key] = (True, f"reconstruction: its result was lost with worker {worker}")
                    self._limit_reconstructions(key)
        if finish == "forgotten":
            if self._why_next:
                self._why_next.pop(key, None)
            if self.reconstructions:
                self.reconstructions.pop(key, None)
            if store.is_open(index):
                store.mark(index, "cancelled")

    def _limit_reconstructions(self, key: str) -> None:
        """Past its max_retries, a lost result's task is swapped for one raising ObjectReconstructionFailedError
        (before Dask sends it anywhere: the recomputation is scheduled after this transition)."""
        ts = self.scheduler.tasks.get(key)
        if ts is None or ts.run_spec is None:
            return
        count = self.reconstructions[key] = self.reconstructions.get(key, 0) + 1
        limit = (ts.annotations or {}).get(RETRY_ANNOTATION, self.default_max_retries)
        if limit is not None and 0 <= limit < count:
            ts.run_spec = Task(key, reconstruction_failed, key, count, int(limit))

    def add_actor_call(self, worker: str = "", key: str = "", function: str = "", deps: Iterable[str] = (),
                       thread: int = 0, submitted: float = _NAN, started: float = _NAN, finished: float = _NAN,
                       nbytes: int = -1, error: str | None = None, **_: Any) -> None:
        """A worker reports one finished actor method call (Dask's diagnostics never see them)."""
        index = self.store.open(key, function, deps=list(deps), submitted=submitted, actor_call=True)
        self.store.update(index, state="erred" if error else "memory", worker=worker, thread=thread,
                          nbytes=nbytes if nbytes >= 0 else None, error=error, started=started, finished=finished)


def records_plugins() -> list[RecordsPlugin]:
    """The records plugin a scheduler labcluster starts gets, per ``labcluster.records`` (none if disabled)."""
    from .. import config

    if not config.get("records.enabled"):
        return []
    return [RecordsPlugin(int(config.get("records.max")), int(config.get("max-retries")))]


def ensure_on(client: Any, plugin_names: Iterable[str]) -> bool:
    """Add the records plugin to a scheduler labcluster did not start (``lc.init(address=...)``), unless it has
    one (``plugin_names``: another driver added it) or records are disabled. Returns whether it now records."""
    plugins = records_plugins()
    if not plugins:
        return False
    if RECORDS_PLUGIN not in plugin_names:
        client.register_plugin(plugins[0])
    return True


def plugin_of(dask_scheduler: Any) -> RecordsPlugin | None:
    plugin = dask_scheduler.plugins.get(RecordsPlugin.name)
    return plugin if isinstance(plugin, RecordsPlugin) else None


def collect(since: int = 0, limit: int | None = None, dask_scheduler: Any = None) -> dict[str, Any]:
    """Run on the scheduler: a page of rows, and where the next page starts."""
    plugin = plugin_of(dask_scheduler)
    if plugin is None:
        return {"enabled": False, "rows": [], "next": 0, "dropped": 0}
    store = plugin.store
    rows = store.collect(since, limit)
    return {"enabled": True, "rows": rows, "next": rows[-1]["index"] + 1 if rows else max(since, store.first_index),
            "dropped": store.dropped}


def lineage(keys: list[str], limit: int = 100_000, dask_scheduler: Any = None) -> dict[str, Any]:
    """Run on the scheduler: every attempt of ``keys`` and of everything they depend on (breadth first)."""
    plugin = plugin_of(dask_scheduler)
    if plugin is None:
        return {"enabled": False, "rows": [], "truncated": False}
    store = plugin.store
    seen: set[str] = set()
    queue = list(keys)
    rows: list[dict[str, Any]] = []
    missing: list[str] = []
    while queue and len(seen) < limit:
        key = queue.pop()
        if key in seen:
            continue
        seen.add(key)
        attempts = store.rows_of(key)
        if not attempts:
            missing.append(key)
            ts = dask_scheduler.tasks.get(key)
            queue.extend(str(d.key) for d in (ts.dependencies if ts is not None else ()))
            continue
        rows.extend(attempts)
        queue.extend(attempts[-1]["deps"])
    current = {k: (dask_scheduler.tasks[k].state if k in dask_scheduler.tasks else "forgotten") for k in seen}
    return {"enabled": True, "rows": rows, "missing": missing, "truncated": bool(queue), "current": current}
