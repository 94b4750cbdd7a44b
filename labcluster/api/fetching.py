"""Waiting for objects and fetching their values, with Ray's errors: the machinery behind ``lc.get`` and ``lc.wait``.

Errors arrive as labcluster's types: a task's exception as ``TaskError`` (also an instance of the user's type), a
cancelled task as ``TaskCancelledError``, a task whose workers kept dying as ``WorkerCrashedError``, an object with
no copy left as ``ObjectLostError``, a cluster that is gone as ``ClusterError``.

Works on refs by duck typing (``key``, ``future``, ``done()``, ``_call``) so that ``ObjectRef.__await__`` can use it
without an import loop; ``objects.py`` checks what users pass in.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Iterable, Sequence
from concurrent.futures import CancelledError
from itertools import islice
from typing import Any

from distributed import KilledWorker

from .. import config
from ..dask_internals import future_finished
from ..exceptions import (
    ClusterError,
    GetTimeoutError,
    ObjectLostError,
    TaskCancelledError,
    WorkerCrashedError,
)
from .blocking import blocked
from .calls import acall, call
from .serialization import unbox
from .session import Session, session_of

#: scheduler states (``labcluster_key_states``) of a key that can never be produced again
GONE = ("forgotten", "lost")


class Cancelled:
    """A session's keys that ``lc.cancel`` cancelled (bounded), to tell a user's cancel from the scheduler dropping
    a key: Dask's own ``reason`` is overwritten by the scheduler's cancellation report, so it cannot carry this."""

    MAX = 100_000

    def __init__(self, session: Session) -> None:
        self.keys: OrderedDict[str, None] = OrderedDict()

    def add(self, key: str) -> None:
        self.keys[key] = None
        while len(self.keys) > self.MAX:
            self.keys.popitem(last=False)


def translate(e: BaseException, refs: Sequence[Any], session: Session | None) -> BaseException:
    """Dask's error for one of ``refs`` as labcluster's."""
    if isinstance(e, KilledWorker):
        return WorkerCrashedError(str(e.task), str(e))
    if isinstance(e, CancelledError):
        key = str(getattr(e, "key", None) or next((r.key for r in refs if r.state == "cancelled"), "?"))
        reason = getattr(e, "reason", None)
        if reason == "scheduler-connection-lost":
            error = _session_error(session, wait=1.0)
            return error or ClusterError(
                f"the client lost its connection to the scheduler while waiting for {key!r}; what the scheduler held "
                "may be gone: check that it runs, then lc.shutdown() and lc.init() to connect again")
        cancelled = session.part(Cancelled).keys if session is not None else {}
        if key in cancelled or any(r.key in cancelled for r in refs if r.state == "cancelled"):
            return TaskCancelledError(key)
        # The scheduler dropped the key: an input it needs was lc.put data whose only copy was lost.
        detail = f" (Dask: {reason}: {getattr(e, 'msg', None)})" if reason or getattr(e, "msg", None) else ""
        return ObjectLostError(key, ObjectLostError.PUT_LOST[0] + detail)
    return e


def _session_error(session: Session | None, wait: float = 0.0) -> ClusterError | None:
    """The session's own error (its cluster is gone), giving it ``wait`` seconds to notice."""
    deadline = time.monotonic() + wait
    while session is not None:
        try:
            session.check()
        except ClusterError as e:
            return e
        if time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return None


def values(session: Session, items: Sequence[Any], timeout: float | None) -> list[Any]:
    """The values of ``items`` (refs), in order; blocks at most ``timeout`` seconds (None: as long as it takes)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        with blocked():
            if timeout is not None:  # without one, the watched gather (_fetch) does all the waiting: one hop
                gone = until_done(session, items, len(items), timeout)
                if gone:
                    raise ObjectLostError(sorted(gone)[0])
                pending = len([r for r in items if not r.done()])
                if pending:
                    raise GetTimeoutError(pending, len(items), timeout)
            if deadline is not None:  # every object is ready: fetching them gets at least one step (timeout=0 polls)
                deadline = max(deadline, time.monotonic() + config.seconds("wait-step"))
            return _collect(session, items, deadline, timeout)
    except GetTimeoutError:
        raise
    except BaseException as e:
        translated = translate(e, items, session)
        if translated is e:
            raise
        raise translated from None


def _collect(session: Session, items: Sequence[Any], deadline: float | None = None, timeout: float | None = None
             ) -> list[Any]:
    """Fetch values: actor results that came back inside their call's reply from their refs (no scheduler
    round trip), the rest from the workers in one ``gather``, by ``deadline`` (monotonic; None: no limit), after
    which GetTimeoutError says ``timeout``."""
    remote = []
    for ref in items:
        call_outcome = ref._call
        if call_outcome is not None:
            call_outcome.done.wait()
            if call_outcome.error is not None:
                raise call_outcome.error
            if call_outcome.value is not None:
                continue
        remote.append(ref)
    fetched = iter(_fetch(session, remote, deadline, timeout) if remote else [])
    out = []
    for ref in items:
        value = ref._call.value if ref._call is not None else None
        out.append(unbox(value[0] if value is not None else next(fetched)))
    return out


def _fetch(session: Session, refs: Sequence[Any], deadline: float | None, timeout: float | None) -> list[Any]:
    """Values of refs, waiting for them until ``deadline`` (None: as long as it takes).

    Dask's gather connects to the workers that hold the values; one that died a moment ago is retried until
    ``distributed.comm.timeouts.connect`` passes. So the gather runs watched: every ``labcluster.wait-step``
    seconds the scheduler is asked about the keys. Gone for good raises ObjectLostError at once; not in memory
    (still running, or lost with a worker and being rebuilt), or a worker gone since the gather began, waits for
    them and starts over.
    """
    client = session.client
    notice = WaitNotice(session)
    while True:
        outcome, value = client.sync(_gather_watched, session, [r.future for r in refs], deadline, notice)
        if outcome == "ok":
            return list(value)
        if outcome == "lost":
            raise ObjectLostError(value)
        left = None if deadline is None else deadline - time.monotonic()
        if outcome == "timeout" or (left is not None and left <= 0):
            pending = len([r for r in refs if not r.done()])
            raise GetTimeoutError(pending or len(refs), len(refs), timeout or 0.0, fetching=not pending)
        until_done(session, refs, len(refs), left)  # "stale": some are still running, or being rebuilt


async def _gather_watched(session: Session, futures: list[Any], deadline: float | None,
                          notice: WaitNotice | None = None) -> tuple[str, Any]:
    client = session.client
    gathering = asyncio.ensure_future(client.gather(futures, asynchronous=True))
    try:
        return await _watch(session, futures, gathering, deadline, notice)
    finally:
        if not gathering.done():  # lost, stale, or this coroutine was cancelled (a timeout, Ctrl-C)
            # Dask's gather leaves helper tasks behind that end in its internal AllExit, which asyncio would
            # report as "never retrieved" noise
            _quiet_all_exit(asyncio.get_running_loop())
            gathering.cancel()


async def _watch(session: Session, futures: list[Any], gathering: asyncio.Future[Any], deadline: float | None,
                 notice: WaitNotice | None = None) -> tuple[str, Any]:
    step = config.seconds("wait-step")
    started = time.monotonic()
    removals: int | None = None  # workers removed so far, when first asked
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        done, _ = await asyncio.wait({gathering}, timeout=step if left is None else max(0.0, min(step, left)))
        if done:
            return "ok", gathering.result()
        if deadline is not None and time.monotonic() >= deadline:
            return "timeout", None
        session.check()  # raises through client.sync: no scheduler to ask
        if session.extension and (gone_all := await acall(session.client, "workers_gone")):
            raise _no_workers_error(gone_all)
        if notice is not None:
            await notice.acheck(str(f.key) for f in futures if f.status == "pending")
        # unknown to the scheduler is "gone" only for a key this client saw computed *before it asked*: a pending
        # one may simply not have reached the scheduler yet (its update-graph message is queued behind others), and
        # one that finishes while the question travels was answered "forgotten" for the same reason
        computed = {str(f.key) for f in futures if f.status != "pending"}
        states = await acall(session.client, "key_states", keys=[str(f.key) for f in futures])
        gone = [k for k, state in states.items() if state in GONE and k in computed]
        # a computed key that is no longer in memory was lost with its worker (and is being rebuilt): the gather
        # may be stuck connecting to that worker. Keys still being computed are waited on by the gather itself.
        if gone or any(state != "memory" for k, state in states.items() if k in computed):
            return ("lost", gone[0]) if gone else ("stale", None)
        # all in memory, and still gathering: lost results may have been rebuilt between two looks while Dask's
        # gather still waits on the dead worker that held them (seen: 60 s, once in ~8 kills); start over
        removed = await acall(session.client, "removals")
        if removals is None:
            if removed["seconds_ago"] is not None and removed["seconds_ago"] < time.monotonic() - started:
                return "stale", None  # a worker left after this gather began
            removals = removed["count"]
        elif removed["count"] != removals:
            return "stale", None


_QUIETED: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def _quiet_all_exit(loop: asyncio.AbstractEventLoop) -> None:
    """Drop asyncio's "Task exception was never retrieved" reports of Dask's internal AllExit on this loop."""
    if loop in _QUIETED:
        return
    from distributed.client import AllExit

    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if isinstance(context.get("exception"), AllExit):
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    _QUIETED.add(loop)


def _lost_for_good(session: Session, refs: Sequence[Any]) -> list[Any]:
    """Refs whose Dask future is "lost" and that the scheduler cannot rebuild (no task, no copy left)."""
    lost = [r for r in refs if r._call is None and r._future is not None and r._future.status == "lost"]
    if not lost:
        return []
    states = call(session.client, "key_states", keys=[r.key for r in lost])
    return [r for r in lost if states[r.key] in GONE]


class WaitNotice:
    """One wait (``lc.get``, ``lc.wait``): past ``waiting-notice``, it says once, in the cell running now, which
    of its tasks wait for resources that running work holds, and what holds them (``usage.waiting_on``): a GPU
    task behind a GPU actor from another cell waits for good, and silently otherwise."""

    #: keys asked about at most (the scheduler looks at each)
    MOST = 1000

    def __init__(self, session: Session) -> None:
        self.session, self.began, self.told = session, time.monotonic(), False

    def _claim(self) -> bool:
        """Whether to ask now: once per wait, past the notice time, where the extension can answer."""
        if self.told or not self.session.extension or \
                time.monotonic() - self.began < config.seconds("waiting-notice"):
            return False
        self.told = True
        return True

    def _tell(self, rows: Sequence[dict[str, Any]]) -> None:
        from ..scheduler.usage import held_up
        from .session import say

        if rows:
            first = rows[0]
            more = f" (and {len(rows) - 1} more task(s) of this wait)" if len(rows) > 1 else ""
            say(f"{first['what']} has waited {time.monotonic() - self.began:.0f}s: "
                f"{held_up(first['needs'], first['held'])}{more}. It runs when that ends (lc.kill the actor, or "
                f"lc.cancel the task, to go on now)")

    def check(self, keys: Iterable[str]) -> None:
        """``keys``: the pending ones, made only when it asks (a generator: nothing is built at the other steps)."""
        if self._claim():
            with contextlib.suppress(Exception):  # an older extension: the wait goes on in silence, as before
                self._tell(call(self.session.client, "waiting_on", keys=list(islice(keys, self.MOST))) or [])

    async def acheck(self, keys: Iterable[str]) -> None:
        if self._claim():
            with contextlib.suppress(Exception):
                self._tell(await acall(self.session.client, "waiting_on", keys=list(islice(keys, self.MOST))) or [])


def until_done(session: Session, refs: Sequence[Any], need: int, timeout: float | None) -> set[str]:
    """Block until ``need`` of ``refs`` are done (finished, failed, cancelled, or lost for good) or ``timeout``
    passes; returns the keys lost for good.

    Costs O(n) for n refs per step (``labcluster.wait-step``): one coroutine on the client's loop counts
    completions (re-scanning the list after each one was O(n^2): 105 s to wait for 4,000 refs).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    step = config.seconds("wait-step")
    steps = 0
    notice = WaitNotice(session)
    while True:
        pending = [r for r in refs if not r.done()]
        gone = {r.key for r in _lost_for_good(session, pending)}
        missing = need - (len(refs) - len(pending)) - len(gone)
        left = None if deadline is None else deadline - time.monotonic()
        if missing <= 0 or (left is not None and left <= 0):
            return gone
        waiting = [r for r in pending if r.key not in gone]
        session.check()
        if steps:  # a step passed with work still pending: is there anything left to do it?
            no_workers(session)
            notice.check(str(r.key) for r in waiting)
        steps += 1
        # our own counter, not distributed.wait: on a timeout it cancels every waiter it made; then look for
        # lost objects and wait on (or return what is ready by the deadline)
        session.client.sync(_count_done, [_when_done(r) for r in waiting], missing,
                            step if left is None else min(step, left))


def no_workers(session: Session) -> None:
    """Raise ClusterError when the session's (local) cluster has no workers left and none will come back."""
    if session.extension:
        gone = call(session.client, "workers_gone")
        if gone:
            raise _no_workers_error(gone)


def _no_workers_error(gone: dict[str, Any]) -> ClusterError:
    left = ", ".join(f"{w['name']} {w['seconds_ago']:.0f}s ago" for w in gone["left"]) or "none was ever here"
    return ClusterError(f"the cluster has no workers left (they left: {left}) and none will come back, so this "
                        "will never finish; call lc.shutdown() and lc.init() to start a new cluster")


def _when_done(ref: Any) -> Awaitable[Any]:
    """A coroutine, on the client's loop, that returns when ``ref`` is done."""
    if ref._call is not None and ref._call.future is None:
        return ref._call.wait_async()  # type: ignore[no-any-return]
    return future_finished(ref.future)


async def _count_done(waitables: Sequence[Awaitable[Any]], missing: int, timeout: float) -> None:
    """On the client's loop: return once ``missing`` of ``waitables`` finished, or after ``timeout`` seconds.

    It ends on its own rather than being cancelled from outside, and never sees the refs: a cancelled coroutine's
    traceback forms a reference cycle with its frame, and refs in that frame would keep their results on the
    workers until the next full garbage collection (seen: 1,000 of 2,000 keys still held after 60 s).
    """
    enough = asyncio.Event()
    left = missing

    def one_done(_: asyncio.Future[Any]) -> None:
        nonlocal left
        left -= 1
        if left <= 0:
            enough.set()

    waiters = [asyncio.ensure_future(w) for w in waitables]
    for waiter in waiters:
        waiter.add_done_callback(one_done)
    until = asyncio.ensure_future(enough.wait())
    try:
        await asyncio.wait({until}, timeout=timeout)
    finally:
        until.cancel()
        for waiter in waiters:
            waiter.cancel()


def session_of_refs(refs: Sequence[Any], fallback: Session) -> Session:
    """The session ``refs`` belong to when it is a live one of this process, else ``fallback``."""
    for ref in refs:
        session = session_of(ref.client) if ref.bound else None
        if session is not None:
            return session
    return fallback
