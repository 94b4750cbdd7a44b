"""The task records' store: a bounded ring of task-attempt rows, column-wise, on the scheduler.

One row per attempt of every task and actor call (the recorder, ``recorder.py``, writes them). Memory is bounded:
a ring of ``labcluster.records.max`` rows stored column-wise (numbers in ``array``\\ s, names interned), oldest
dropped first and counted in ``dropped``. Readers page with the monotonic ``index`` every row gets
(``collect(since=...)``). ``RecordStore.nbytes()`` measures what it holds.

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
from collections.abc import Mapping, Sequence
from typing import Any

from dask.utils import key_split

#: "dropped": forgotten before it finished because no client held it any more (not an lc.cancel)
STATES = ("waiting", "queued", "no-worker", "processing", "memory", "erred", "released", "lost", "cancelled",
          "dropped")
#: a row in one of these is the attempt in progress (they come first in STATES)
OPEN = ("waiting", "queued", "no-worker", "processing")
OPEN_SET = frozenset(OPEN)
_CLOSED = len(OPEN)
MEMORY, ERRED, RELEASED, CANCELLED, DROPPED = (STATES.index(s) for s in ("memory", "erred", "released", "cancelled",
                                                                          "dropped"))
_STATE_CODE = {s: i for i, s in enumerate(STATES)}
_RECONSTRUCTION, _ACTOR_CALL = 1, 2
NAN = float("nan")
FIELDS = ("index", "key", "function", "name", "stage", "kind", "deps", "worker", "thread", "resources",
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
                    "resources": ("I", 0), "thread": ("q", 0), "nbytes": ("q", -1), "submitted": ("d", NAN),
                    "queued": ("d", NAN), "started": ("d", NAN), "finished": ("d", NAN), "state": ("B", 0),
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
             stage: str | None = None, resources: Mapping[str, float] | None = None, submitted: float = NAN,
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
               reason: str | None = None,
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
        if reason is not None:
            self._extra.setdefault(index, {})["reason"] = reason
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

    def lineage_rows(self, since: int = 0, limit: int | None = None) -> list[tuple[Any, ...]]:
        """What the lineage of rows ``index >= since`` needs, without building whole rows (:meth:`row` costs ~10x
        more, read by a dashboard at every update): ``(index, key, group, deps, state, actor_call, rebuilt)``,
        group being the stage, else the function."""
        start = max(since, self.first_index)
        stop = self.next_index if limit is None else min(self.next_index, start + limit)
        values, capacity = self.names.values, self._capacity
        keys, deps, stages, functions = self._keys, self._deps, self._stage, self._function
        states, flags = self._state, self._flags
        out = []
        for index in range(start, stop):
            slot = index % capacity
            key = keys[slot]
            assert key is not None
            code = stages[slot] or functions[slot]
            out.append((index, key, values[code] if code else self.function_of(key), deps[slot],
                        STATES[states[slot]], bool(flags[slot] & _ACTOR_CALL), bool(flags[slot] & _RECONSTRUCTION)))
        return out

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


