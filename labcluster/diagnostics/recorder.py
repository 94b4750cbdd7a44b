"""Task records: the scheduler plugin that writes one row per attempt of every task and actor call.

After distributed's ``TaskStreamPlugin``, it watches every transition and keeps, per attempt: key, function,
user-given name, stage, dependencies, worker and thread, resources asked for, times (submitted, queued, started,
finished), final state, bytes of the result, attempt number, whether it was a reconstruction (and why), and the
error, in a :class:`~labcluster.diagnostics.record_store.RecordStore`. Actor calls, which Dask never sees, arrive
as events the actor's worker logs (``Worker.log_event``, topic ``labcluster-actor-call``). To keep the scheduler's
hot path short, a task's row starts with its key and time and is filled in once, when the attempt ends; until
then readers take its state, worker and the rest from the scheduler (:meth:`RecordsPlugin.live`).

The scheduler extension (``labcluster/scheduler/extension.py``) installs it and answers the ``labcluster_records``
and ``labcluster_lineage`` handlers from it. Tasks with a labcluster role (holders) are plumbing, not work: the
extension keeps them in :attr:`RecordsPlugin.plumbing` and they get no row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dask.utils import key_split
from distributed import SchedulerPlugin
from distributed.metrics import time

from ..dask_internals import fail_task_with
from ..exceptions import ObjectReconstructionFailedError
from ..scheduler.protocol import MAX_RETRIES, NAME, STAGE
from .record_store import CANCELLED, DROPPED, ERRED, MEMORY, NAN, OPEN_SET, RELEASED, RecordStore

#: the event topic a worker reports a finished actor call on
ACTOR_CALL_TOPIC = "labcluster-actor-call"
_FIRST: tuple[bool, str | None] = (False, None)  # why a first attempt runs


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
    """What a task is, from its scheduler state: (dependencies, name, stage, resources asked for).

    A task of a Dask collection (a dataframe's, bag's or array's: its key is a tuple ``(name, partition)``, or it
    gathers such tasks, as a shuffle's barrier does) is in the stage of its operation, its key's prefix
    (``"read-csv"``, ``"shuffle-transfer"``...), so the lineage's stage view and the timeline group a dataframe's
    tasks by operation."""
    if ts is None:
        return (), None, None, None
    annotations, deps = ts.annotations, ts.dependencies
    stage = annotations.get(STAGE) if annotations else None
    if stage is None and (isinstance(ts.key, tuple) or (
            deps and not (annotations and NAME in annotations) and any(isinstance(d.key, tuple) for d in deps))):
        stage = key_split(ts.key)
    return (tuple([str(d.key) for d in deps]) if deps else (),
            annotations.get(NAME) if annotations else None, stage, ts.resource_restrictions)


def _error_text(kwargs: Mapping[str, Any]) -> str | None:
    text = kwargs.get("exception_text")
    return str(text) if text else None


class RecordsPlugin(SchedulerPlugin):
    """Keeps a :class:`RecordStore` of every task attempt and actor call (see the module docstring)."""

    name = "labcluster-records"

    def __init__(self, maxlen: int = 100_000, default_max_retries: int = 3) -> None:
        self.store = RecordStore(maxlen)
        #: keys of labcluster's own plumbing tasks (holders), kept by the extension: they get no row
        self.plumbing: set[str] = set()
        #: worker address -> name (the extension keeps it, for workers that left too): reasons name workers so
        self.worker_names: dict[str, str] = {}
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
        #: per key: the worker being removed that held its last copy (Dask names them when it removes a worker;
        #: not always where the task ran: the active memory manager may have kept a copy elsewhere)
        self._lost_with: dict[str, str] = {}
        #: the scheduler's own key of a Dask collection's task (a tuple), by the text rows use, until forgotten
        self._raw: dict[str, Any] = {}

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        # The scheduler calls this for every transition of every task (~4 per task); with the scheduler in the
        # driver's process each microsecond here cost several in throughput (bench/records.py). So the common
        # transitions come first and do little: a row starts with its key and time, and is filled in once, from
        # the task's state, when the attempt ends. Where a running task is, readers ask the scheduler (live()).
        if finish == "processing":
            return
        if key.__class__ is not str:
            raw, key = key, str(key)
            if finish == "forgotten":
                self._raw.pop(key, None)
            else:
                self._raw[key] = raw
        store = self.store
        index = store.latest.get(key)
        if finish == "memory" and start == "processing":
            if index is not None and store.is_open(index):
                self._close(key, index, MEMORY, kwargs)
            return  # no open row: dropped (more tasks in flight than labcluster.records.max), or plumbing
        if finish == "waiting" and index is None and not self._why_next:
            if key not in self.plumbing:  # holders are plumbing, not work
                store.start(key, time())
            return
        if start == "memory" and not self._removing and not (finish == "forgotten" and self._pending):
            return  # a result released: nothing to record unless its worker is leaving (then it was lost)
        if key in self.plumbing:
            return
        self._transition(key, start, finish, index, kwargs)

    def _transition(self, key: str, start: str, finish: str, index: int | None, kwargs: Mapping[str, Any]) -> None:
        """Every transition the hot path in ``transition`` does not handle."""
        store = self.store
        is_open = index is not None and store.is_open(index)
        if finish in OPEN_SET:
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
            self._close(key, index, MEMORY, kwargs)
            return
        if index is None:
            return
        if finish == "erred":
            error = _error_text(kwargs) or ("a task it depends on failed" if start != "processing" else None)
            self._close(key, index, ERRED, kwargs, error)
        elif start == "processing" and finish == "released":
            gone = self._died_running.pop(key, None)
            if gone is not None:
                left, how = gone
                name = self.worker_names.get(left, left)
                self._close(key, index, RELEASED, kwargs, f"worker {name} {how} while running it", left)
                self._why_next[key] = (False, f"retry: worker {name} {how} while running attempt "
                                              f"{store.attempt_of(index)}")
            else:
                store.mark(index, "waiting")  # stolen or rescheduled: the same attempt goes on
        elif start == "memory":
            worker = self._lost_with.pop(key, None) if self._lost_with else None
            if worker is not None:
                store.mark(index, "lost")
                if finish == "released":  # a task's result: Dask recomputes it if it is still wanted
                    name = self.worker_names.get(worker, worker)
                    self._why_next[key] = (True, f"reconstruction: its result was lost with worker {name}")
                    self._limit_reconstructions(key)
        if finish == "forgotten":
            if self._why_next:
                self._why_next.pop(key, None)
            if self.reconstructions:
                self.reconstructions.pop(key, None)
            if self._died_running:
                self._died_running.pop(key, None)
            if self._lost_with:
                self._lost_with.pop(key, None)
            if store.is_open(index):
                # lc.cancel, or every ref to it dropped before it finished (released by its owner)
                cancelled = str(kwargs.get("stimulus_id") or "").startswith("cancel")
                self._close(key, index, CANCELLED if cancelled else DROPPED, kwargs)
                if not cancelled:
                    store.update(index, reason="released by its owner before it finished: no ref to it was left")

    @property
    def _pending(self) -> bool:
        """Whether some key has a note that must go when it is forgotten."""
        return bool(self._why_next or self.reconstructions or self._died_running or self._lost_with)

    def log_event(self, topic: str, msg: Any) -> None:
        if topic == ACTOR_CALL_TOPIC and isinstance(msg, dict):
            self.add_actor_call(**msg)
            return
        # Dask logs a worker's removal, with the tasks it was running, just before it releases them and its
        # results; the remove_worker hook runs once it has
        if topic == "all" and isinstance(msg, dict) and msg.get("action") == "remove-worker":
            worker = str(msg.get("worker"))
            self._removing.add(worker)
            how = "left the cluster" if msg.get("expected") else "died"
            self._died_running.update(dict.fromkeys(map(str, msg.get("processing-tasks") or ()), (worker, how)))
            for lost in ("lost-computed-tasks", "lost-scattered-tasks"):
                self._lost_with.update(dict.fromkeys(map(str, msg.get(lost) or ()), worker))

    def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
        self._removing.discard(worker)
        if self._lost_with:  # keys Dask named but did not release (none expected): forget them with the worker
            self._lost_with = {key: gone for key, gone in self._lost_with.items() if gone != worker}

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
        ts = self._task(key)
        started, finished = _compute_times(kwargs)
        worker = kwargs.get("worker") or worker or (_holder(ts) if state == MEMORY else None)
        nbytes = ts.nbytes if ts is not None and state == MEMORY and ts.nbytes >= 0 else None
        self.store.close(index, state, *_what(ts), worker, kwargs.get("thread"), nbytes, started, finished)
        if error is not None:
            self.store.update(index, error=error)

    def _task(self, key: str) -> Any:
        """The scheduler's state of the task whose row says ``key`` (a collection's task is known by a tuple)."""
        tasks = self.scheduler.tasks if self.scheduler is not None else {}
        ts = tasks.get(key)
        return ts if ts is not None or not self._raw else tasks.get(self._raw.get(key))

    def live(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Fill in the open rows of ``rows`` from the scheduler: state, worker, and what the task is."""
        for row in rows:
            if row["state"] not in OPEN_SET or row["kind"] != "task":
                continue
            ts = self._task(row["key"])
            if ts is None:
                continue
            if ts.state in OPEN_SET:
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
        ts = self._task(key)
        if ts is None or ts.run_spec is None:
            return
        count = self.reconstructions[key] = self.reconstructions.get(key, 0) + 1
        limit = (ts.annotations or {}).get(MAX_RETRIES, self.default_max_retries)
        if limit is not None and 0 <= limit < count:
            fail_task_with(ts, reconstruction_failed, key, count, int(limit))

    def add_actor_call(self, worker: str = "", key: str = "", function: str = "", deps: Iterable[str] = (),
                       thread: int = 0, submitted: float = NAN, started: float = NAN, finished: float = NAN,
                       nbytes: int = -1, error: str | None = None, stage: str | None = None, **_: Any) -> None:
        """A worker reports one finished actor method call (Dask's diagnostics never see them)."""
        index = self.store.open(key, function, deps=list(deps), stage=stage, submitted=submitted, actor_call=True)
        self.store.update(index, state="erred" if error else "memory", worker=worker, thread=thread,
                          nbytes=nbytes if nbytes >= 0 else None, error=error, started=started, finished=finished)

    # -- readers (the extension's handlers) ----------------------------------------------------------------------

    def page(self, since: int = 0, limit: int | None = None) -> dict[str, Any]:
        """A page of rows from index ``since`` on, and where the next page starts."""
        store = self.store
        rows = self.live(store.collect(since, limit))
        return {"enabled": True, "rows": rows,
                "next": rows[-1]["index"] + 1 if rows else max(since, store.first_index), "dropped": store.dropped,
                "end": store.next_index}

    def lineage_rows(self, since: int = 0, limit: int | None = None) -> list[tuple[Any, ...]]:
        """``RecordStore.lineage_rows``, with a running task's group and inputs from the scheduler (a row learns
        them when it closes), as :meth:`live` fills whole rows."""
        rows = self.store.lineage_rows(since, limit)
        for i, (index, key, group, deps, state, actor_call, rebuilt) in enumerate(rows):
            if state in OPEN_SET and not actor_call and (ts := self._task(key)) is not None:
                ts_deps, _, stage, _ = _what(ts)
                # an open row holds no stage yet (it is written at close): group is its function here
                rows[i] = (index, key, stage or group, deps or ts_deps,
                           ts.state if ts.state in OPEN_SET else state, actor_call, rebuilt)
        return rows

    def lineage(self, keys: list[str], limit: int = 100_000) -> dict[str, Any]:
        """Every attempt of ``keys`` and of everything they depend on (breadth first), with each key's state now."""
        store = self.store
        seen: set[str] = set()
        queue = list(keys)
        rows: list[dict[str, Any]] = []
        missing: list[str] = []
        while queue and len(seen) < limit:
            key = queue.pop()
            if key in seen:
                continue
            seen.add(key)
            attempts = self.live(store.rows_of(key))
            if not attempts:
                missing.append(key)
                ts = self._task(key)
                queue.extend(str(d.key) for d in (ts.dependencies if ts is not None else ()))
                continue
            rows.extend(attempts)
            queue.extend(attempts[-1]["deps"])
        current = {k: (ts.state if (ts := self._task(k)) is not None else "forgotten") for k in seen}
        return {"enabled": True, "rows": rows, "missing": missing, "truncated": bool(queue), "current": current}
