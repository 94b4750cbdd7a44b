"""Task records: one row per attempt of every task and actor call, kept on the scheduler.

A scheduler plugin (after distributed's ``TaskStreamPlugin``) watches every transition and keeps, per
attempt: key, function, user-given name, stage, dependencies, worker and thread, resources asked for,
times (submitted, queued, started, finished), final state, bytes of the result, attempt number, whether it
was a reconstruction (and why), and the error. Actor calls, which Dask never sees, arrive from the
actor's worker on its batched stream (``labcluster-actor-call``). To keep the scheduler's hot path short, a
task's row starts with its key and time and is filled in once, when the attempt ends; until then readers take
its state, worker and the rest from the scheduler (``RecordsPlugin.live``).

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
_OPEN_SET = frozenset(_OPEN)
_FIRST: tuple[bool, str | None] = (False, None)  # why a first attempt runs
_CLOSED = len(_OPEN)
_MEMORY, _ERRED, _RELEASED, _CANCELLED = (STATES.index(s) for s in ("memory", "erred", "released", "cancelled"))
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
    """A bounded ring of task-attempt rows, column-wise (see the module docstring).

    Writes are the scheduler's hot path, so a row is opened with only what differs from the defaults: slots
    are put back to the defaults a chunk at a time, ahead of the write position (the ring has one spare chunk
    for that, so the last ``maxlen`` rows are always whole). A task's function name is read from its key
    when a row is read, not when it is written.
    """

    def __init__(self, maxlen: int = 100_000) -> None:
        if maxlen < 1:
            raise ValueError(f"labcluster.records.max must be >= 1, got {maxlen}")
        self.maxlen = maxlen
        self._chunk = chunk = max(1, min(512, maxlen // 8))
        self._capacity = capacity = -(-maxlen // chunk) * chunk + chunk
        #: rows ever opened; the next row's index
        self.next_index = 0
        self.names = _Interned()
        self._key_functions: dict[str, str] = {}
        self._keys: list[str | None] = [None] * capacity
        self._deps: list[tuple[str, ...]] = [()] * capacity
        self._extra: dict[int, dict[str, str]] = {}  # sparse: reason, error
        self._columns: dict[str, array[Any]] = {}
        defaults = {"function": ("I", 0), "name": ("I", 0), "stage": ("I", 0), "worker": ("I", 0),
                    "resources": ("I", 0), "thread": ("q", 0), "nbytes": ("q", -1), "submitted": ("d", _NAN),
                    "queued": ("d", _NAN), "started": ("d", _NAN), "finished": ("d", _NAN), "state": ("B", 0),
                    "attempt": ("H", 1), "flags": ("B", 0)}
        #: one chunk of each column's default, copied over a chunk of slots to reset them
        self._blank = {name: array(code, [value]) * chunk for name, (code, value) in defaults.items()}
        for name, blank in self._blank.items():
            self._columns[name] = blank * (capacity // chunk)
        c = self._columns
        self._function, self._name, self._stage, self._worker = c["function"], c["name"], c["stage"], c["worker"]
        self._resources, self._thread, self._nbytes, self._state = c["resources"], c["thread"], c["nbytes"], c["state"]
        self._submitted, self._queued, self._started, self._finished = (c["submitted"], c["queued"], c["started"],
                                                                        c["finished"])
        self._attempt, self._flags = c["attempt"], c["flags"]
        #: key -> index of its newest row (rows not yet recycled)
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

    def _recycle(self, slot: int) -> None:
        """Put the chunk of slots starting at ``slot`` (rows dropped already) back to the defaults."""
        chunk = self._chunk
        end = slot + chunk
        gone = self.next_index - self._capacity  # the index of the row in ``slot`` now
        latest = self.latest
        for offset, key in enumerate(self._keys[slot:end]):
            if key is not None and latest.get(key) == gone + offset:
                del latest[key]
        if self._extra:
            for index in range(gone, gone + chunk):
                self._extra.pop(index, None)
        self._keys[slot:end] = [None] * chunk
        self._deps[slot:end] = [()] * chunk
        for name, column in self._columns.items():
            column[slot:end] = self._blank[name]

    def start(self, key: str, submitted: float) -> int:
        """Start a row with only its key and time (the hot path of ``open``); returns its index."""
        index = self.next_index
        slot = index % self._capacity
        if not slot % self._chunk and index >= self._capacity:
            self._recycle(slot)
        self.next_index = index + 1
        self._keys[slot] = key
        self._submitted[slot] = submitted
        self.latest[key] = index
        return index

    def open(self, key: str, function: str | None = None, *, deps: Sequence[str] = (), name: str | None = None,
             stage: str | None = None, resources: Mapping[str, float] | None = None, submitted: float = _NAN,
             attempt: int = 1, reconstruction: bool = False, reason: str | None = None,
             actor_call: bool = False) -> int:
        """Start the row of one attempt; returns its index. ``function`` None: read from the key."""
        index = self.start(key, submitted)
        slot = index % self._capacity
        if function is not None:
            self._function[slot] = self.names.code(function)
        self._describe(slot, deps, name, stage, resources)
        if attempt != 1:
            self._attempt[slot] = attempt if attempt < 65535 else 65535
        if reconstruction or actor_call:
            self._flags[slot] = (_RECONSTRUCTION if reconstruction else 0) | (_ACTOR_CALL if actor_call else 0)
        if reason:
            self._extra[index] = {"reason": reason}
        return index

    def _describe(self, slot: int, deps: Sequence[str], name: str | None, stage: str | None,
                  resources: Mapping[str, float] | None) -> None:
        if deps:
            self._deps[slot] = deps if isinstance(deps, tuple) else tuple(deps)
        if name is not None:
            self._name[slot] = self.names.code(name)
        if stage is not None:
            self._stage[slot] = self.names.code(stage)
        if resources:
            last = self._last_resources
            if resources == last[0]:  # tasks mostly ask alike: skip hashing the request
                self._resources[slot] = last[1]
            else:
                c = self.names.code(tuple(resources.items()))
                self._last_resources = (dict(resources), c)
                self._resources[slot] = c

    def close(self, index: int, state: int, deps: Sequence[str], name: str | None, stage: str | None,
              resources: Mapping[str, float] | None, worker: str | None, thread: int | None, nbytes: int | None,
              started: float | None, finished: float) -> None:
        """End an attempt's row: what it was (``deps`` .. ``resources``) and how it ran (the hot path)."""
        if index < self.next_index - self.maxlen:
            return
        slot = index % self._capacity
        self._state[slot] = state
        self._describe(slot, deps, name, stage, resources)
        if worker is not None:
            self._worker[slot] = self.names.code(worker)
        if thread:
            self._thread[slot] = thread
        if nbytes is not None:
            self._nbytes[slot] = nbytes
        if started is not None:
            self._started[slot] = started
        self._finished[slot] = finished

    def update(self, index: int, *, state: str | None = None, worker: str | None = None,
               thread: int | None = None, nbytes: int | None = None, error: str | None = None,
               queued: float | None = None, started: float | None = None, finished: float | None = None) -> None:
        """Fill in what became known about a row (ignored once the row was dropped)."""
        if not self.holds(index):
            return
        slot = index % self._capacity
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
        if queued is not None:
            self._queued[slot] = queued
        if started is not None:
            self._started[slot] = started
        if finished is not None:
            self._finished[slot] = finished

    def function_of(self, key: str) -> str:
        """The function name in a task key: ``name-<32 hex>`` (labcluster's keys) cached per name, else Dask's
        rule."""
        head, _, tail = key.rpartition("-")
        if len(tail) == 32 and head:
            name = self._key_functions.get(head)
            if name is None:
                name = self._key_functions[head] = str(key_split(key))
            return name
        return str(key_split(key))

    def row(self, index: int) -> dict[str, Any]:
        """One row as a dict (``None`` for what is not known)."""
        if not self.holds(index):
            raise IndexError(f"record {index} was dropped or does not exist yet")
        slot = index % self._capacity
        values = self.names.values
        extra = self._extra.get(index, {})
        flags = self._flags[slot]
        resources = values[self._resources[slot]]
        key = self._keys[slot]
        assert key is not None
        function = self._function[slot]
        times = {t: (None if math.isnan(c[slot]) else c[slot]) for t, c in (
            ("submitted", self._submitted), ("queued", self._queued), ("started", self._started),
            ("finished", self._finished))}
        return {
            "index": index, "key": key, "function": values[function] if function else self.function_of(key),
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
            self._state[index % self._capacity] = _STATE_CODE[state]

    def is_open(self, index: int) -> bool:
        return index >= self.next_index - self.maxlen and self._state[index % self._capacity] < _CLOSED

    def state_of(self, index: int) -> str:
        return STATES[self._state[index % self._capacity]] if self.holds(index) else "dropped"

    def worker_of(self, index: int) -> str | None:
        return self.names.values[self._worker[index % self._capacity]] if self.holds(index) else None

    def attempt_of(self, index: int) -> int:
        return self._attempt[index % self._capacity] if self.holds(index) else 0

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
            if self._keys[i % self._capacity] == key:
                return i
            if index - i > 10_000:
                break
        return None

    def nbytes(self) -> int:
        """Bytes this store holds: its columns, plus the keys, dependency tuples and interned values it keeps."""
        size = sum(sys.getsizeof(c) for c in self._columns.values())
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


def _what(ts: Any) -> tuple[tuple[str, ...], str | None, str | None, Mapping[str, float] | None]:
    """What a task is, from its scheduler state: (dependencies, name, stage, resources asked for)."""
    if ts is None:
        return (), None, None, None
    annotations, deps = ts.annotations, ts.dependencies
    return (tuple([str(d.key) for d in deps]) if deps else (),
            annotations.get(NAME_ANNOTATION) if annotations else None,
            annotations.get(STAGE_ANNOTATION) if annotations else None, ts.resource_restrictions)


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
        #: per key: why its next attempt runs, (reconstruction?, reason), set when a worker death is seen
        self._why_next: dict[str, tuple[bool, str | None]] = {}
        #: per key: the worker that was running it when it left the cluster, and how ("died", or "left" when
        #: it was retired on purpose), until the task is released
        self._died_running: dict[str, tuple[str, str]] = {}
        #: workers being removed right now (Dask releases their tasks and results in between)
        self._removing: set[str] = set()

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        scheduler.stream_handlers[RECORD_OP] = self.add_actor_call

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        # The scheduler calls this for every transition of every task (~4 per task); with the scheduler in the
        # driver's process each microsecond here cost several in throughput (bench/records.py). So the common
        # transitions come first and do little: a row starts with its key and time, and is filled in once, from
        # the task's state, when the attempt ends. Where a running task is, readers ask the scheduler (live()).
        if finish == "processing":
            return
        if key.__class__ is not str:
            key = str(key)
        store = self.store
        index = store.latest.get(key)
        if finish == "memory" and start == "processing":
            if index is not None and store.is_open(index):
                self._close(key, index, _MEMORY, kwargs)
            return  # no open row: dropped (more tasks in flight than labcluster.records.max), or plumbing
        if finish == "waiting" and index is None and not self._why_next:
            if not key.startswith(_PLUMBING):  # holders are plumbing, not work
                store.start(key, time())
            return
        if start == "memory" and not self._removing and not (finish == "forgotten" and self._pending):
            return  # a result released: nothing to record unless its worker is leaving (then it was lost)
        if key.startswith(_PLUMBING):
            return
        self._transition(key, start, finish, index, kwargs)

    def _transition(self, key: str, start: str, finish: str, index: int | None, kwargs: Mapping[str, Any]) -> None:
        """Every transition the hot path in ``transition`` does not handle."""
        store = self.store
        scheduler = self.scheduler
        is_open = index is not None and store.is_open(index)
        if finish in _OPEN_SET:
            if not is_open or index is None:
                index = self._open(key, index)
            if finish == "queued":
                store.update(index, state=finish, queued=time())
            elif finish != "waiting" or is_open:  # a new row starts out waiting
                store.mark(index, finish)
            return
        if finish == "memory":
            if not is_open or index is None:
                index = store.open(key, submitted=time())  # data that was never a task here (scattered)
            self._close(key, index, _MEMORY, kwargs)
            return
        if index is None:
            return
        if finish == "erred":
            error = _error_text(kwargs) or ("a task it depends on failed" if start != "processing" else None)
            self._close(key, index, _ERRED, kwargs, error)
        elif start == "processing" and finish == "released":
            gone = self._died_running.pop(key, None)
            if gone is not None:
                left, how = gone
                self._close(key, index, _RELEASED, kwargs, f"worker {left} {how} while running it", left)
                self._why_next[key] = (False, f"retry: worker {left} {how} while running attempt "
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
            if self._died_running:
                self._died_running.pop(key, None)
            if store.is_open(index):
                self._close(key, index, _CANCELLED, kwargs)

    @property
    def _pending(self) -> bool:
        """Whether some key has a note that must go when it is forgotten."""
        return bool(self._why_next or self.reconstructions or self._died_running)

    def log_event(self, topic: str, msg: Any) -> None:
        # Dask logs a worker's removal, with the tasks it was running, just before it releases them and its
        # results; the remove_worker hook runs once it has
        if topic == "all" and isinstance(msg, dict) and msg.get("action") == "remove-worker":
            worker = str(msg.get("worker"))
            self._removing.add(worker)
            how = "left the cluster" if msg.get("expected") else "died"
            self._died_running.update(dict.fromkeys(msg.get("processing-tasks") or (), (worker, how)))

    def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
        self._removing.discard(worker)

    def _open(self, key: str, previous: int | None) -> int:
        """Open the row of ``key``'s next attempt (``previous``: the index of its last row, if any)."""
        store = self.store
        reconstruction, reason = self._why_next.pop(key, _FIRST) if self._why_next else _FIRST
        attempt = 1
        if previous is not None:
            attempt = store.attempt_of(previous) + 1
            if reason is None and store.state_of(previous) == "memory":
                # finished before and released since: re-run because a lost result downstream needs it
                reconstruction, reason = True, "reconstruction: a lost result that depends on it is being rebuilt"
        return store.open(key, submitted=time(), attempt=attempt, reconstruction=reconstruction, reason=reason)

    def _close(self, key: str, index: int, state: int, kwargs: Mapping[str, Any], error: str | None = None,
               worker: str | None = None) -> None:
        """End the row of an attempt, with what the task is (from the scheduler) and how it ran (``kwargs``)."""
        ts = self.scheduler.tasks.get(key)
        started, finished = _compute_times(kwargs)
        worker = kwargs.get("worker") or worker or (_holder(ts) if state == _MEMORY else None)
        nbytes = ts.nbytes if ts is not None and state == _MEMORY and ts.nbytes >= 0 else None
        self.store.close(index, state, *_what(ts), worker, kwargs.get("thread"), nbytes, started, finished)
        if error is not None:
            self.store.update(index, error=error)

    def live(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Fill in the open rows of ``rows`` from the scheduler: state, worker, and what the task is."""
        tasks = self.scheduler.tasks if self.scheduler is not None else {}
        for row in rows:
            if row["state"] not in _OPEN_SET or row["kind"] != "task":
                continue
            ts = tasks.get(row["key"])
            if ts is None:
                continue
            if ts.state in _OPEN_SET:
                row["state"] = ts.state
            if ts.processing_on is not None:
                row["worker"] = ts.processing_on.address
            deps, name, stage, resources = _what(ts)
            row["deps"] = row["deps"] or list(deps)
            row["name"] = row["name"] or name
            row["stage"] = row["stage"] or stage
            row["resources"] = row["resources"] or dict(resources or {})
        return rows

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
    rows = plugin.live(store.collect(since, limit))
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
        attempts = plugin.live(store.rows_of(key))
        if not attempts:
            missing.append(key)
            ts = dask_scheduler.tasks.get(key)
            queue.extend(str(d.key) for d in (ts.dependencies if ts is not None else ()))
            continue
        rows.extend(attempts)
        queue.extend(attempts[-1]["deps"])
    current = {k: (dask_scheduler.tasks[k].state if k in dask_scheduler.tasks else "forgotten") for k in seen}
    return {"enabled": True, "rows": rows, "missing": missing, "truncated": bool(queue), "current": current}
