"""``get``, ``put``, ``wait`` and ``cancel`` with Ray's semantics, on Dask futures.

Errors arrive as labcluster's types: a task's exception as ``TaskError`` (also an instance of the
user's type), a cancelled task as ``TaskCancelledError``, a task whose workers kept dying as
``WorkerCrashedError``, a wait past ``timeout`` as ``GetTimeoutError`` (the tasks keep running).
"""

from __future__ import annotations

import asyncio
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Sequence
from concurrent.futures import CancelledError
from typing import Any, overload

from distributed import KilledWorker, get_worker

from ..exceptions import (
    ClusterError,
    GetTimeoutError,
    ObjectLostError,
    SerializationError,
    TaskCancelledError,
    WorkerCrashedError,
)
from . import _on_scheduler, serialization
from .blocking import blocked
from .refs import ObjectRef
from .session import current_client, session_of


def _as_list(refs: Any, fn: str) -> tuple[list[ObjectRef], bool]:
    if isinstance(refs, ObjectRef):
        return [refs], True
    if isinstance(refs, (list, tuple)):
        bad = [type(r).__name__ for r in refs if not isinstance(r, ObjectRef)]
        if bad:
            raise TypeError(f"lc.{fn}() takes ObjectRefs (from f.remote() or lc.put()), but got {bad[0]} in the list")
        return list(refs), False
    raise TypeError(f"lc.{fn}() takes an ObjectRef or a list of ObjectRefs, got {type(refs).__name__}")


#: keys lc.cancel cancelled (bounded), to tell a user's cancel from the scheduler dropping a key: Dask's
#: own ``reason`` is overwritten by the scheduler's cancellation report, so it cannot carry this
_user_cancelled: OrderedDict[str, None] = OrderedDict()
_USER_CANCELLED_MAX = 100_000


def _translate(e: BaseException, refs: Sequence[ObjectRef]) -> BaseException:
    if isinstance(e, KilledWorker):
        return WorkerCrashedError(str(e.task), str(e))
    if isinstance(e, CancelledError):
        key = str(getattr(e, "key", None) or next((r.key for r in refs if r.state == "cancelled"), "?"))
        reason = getattr(e, "reason", None)
        if reason == "scheduler-connection-lost":
            session = session_of(refs[0].client) if refs else None
            error = session.scheduler_error(wait=1.0) if session is not None else None
            return error or ClusterError(
                f"the client lost its connection to the scheduler while waiting for {key!r}; what the scheduler held "
                "may be gone: check that it runs, then lc.shutdown() and lc.init() to connect again")
        if key in _user_cancelled or any(r.key in _user_cancelled for r in refs if r.state == "cancelled"):
            return TaskCancelledError(key)
        # The scheduler dropped the key: an input it needs was lc.put data whose only copy was lost.
        detail = f" (Dask: {reason}: {getattr(e, 'msg', None)})" if reason or getattr(e, "msg", None) else ""
        return ObjectLostError(key, ObjectLostError.PUT_LOST[0] + detail)
    return e


def _gather(client: Any, items: Sequence[ObjectRef]) -> list[Any]:
    """Fetch values: actor results that came back inside their call's reply from their refs (no scheduler
    round trip), the rest from the workers in one ``gather``."""
    remote = []
    for ref in items:
        call = ref._call
        if call is not None:
            call.done.wait()
            if call.error is not None:
                raise call.error
            if call.value is not None:
                continue
        remote.append(ref)
    fetched = iter(_fetch(client, remote) if remote else [])
    out = []
    for ref in items:
        value = ref._call.value if ref._call is not None else None
        out.append(value[0] if value is not None else next(fetched))
    return out


#: scheduler states (``_on_scheduler.key_states``) of a key that can never be produced again
GONE = ("forgotten", "lost")
#: how often a long wait looks for objects that are lost for good (lc.put data whose worker died): a Dask
#: future of such a key can stay "lost" and would otherwise be waited on forever
_LOST_CHECK = 0.5


def _fetch(client: Any, refs: Sequence[ObjectRef]) -> list[Any]:
    """Values of refs, waiting for them as long as it takes.

    Dask's gather connects to the workers that hold the values; one that died a moment ago is retried until
    ``distributed.comm.timeouts.connect`` (30 s) passes. So the gather runs watched: every ``_LOST_CHECK``
    seconds the scheduler is asked about the keys. Gone for good raises ObjectLostError at once; not in memory
    (still running, or lost with a worker and being rebuilt) waits for them and starts over.
    """
    try:
        local_worker = get_worker()
    except ValueError:
        local_worker = None
    while True:
        outcome, value = client.sync(_gather_watched, client, [r.future for r in refs], local_worker)
        if outcome == "ok":
            return list(value)
        if outcome == "lost":
            raise ObjectLostError(value)
        _until_done(refs, len(refs), None)  # "stale": some are still running, or being rebuilt


async def _gather_watched(client: Any, futures: list[Any], local_worker: Any) -> tuple[str, Any]:
    gathering = asyncio.ensure_future(client._gather(futures, local_worker=local_worker))
    try:
        return await _watch(client, futures, gathering)
    finally:
        if not gathering.done():  # lost, stale, or this coroutine was cancelled (a timeout, Ctrl-C)
            # Dask's gather leaves helper tasks behind that end in its internal AllExit, which asyncio would
            # report as "never retrieved" noise
            _quiet_all_exit(asyncio.get_running_loop())
            gathering.cancel()


async def _watch(client: Any, futures: list[Any], gathering: asyncio.Future[Any]) -> tuple[str, Any]:
    while True:
        done, _ = await asyncio.wait({gathering}, timeout=_LOST_CHECK)
        if done:
            return "ok", gathering.result()
        _check_scheduler(client)  # raises through client.sync: no scheduler to ask
        states = await client._run_on_scheduler(_on_scheduler.key_states, [str(f.key) for f in futures])
        # unknown to the scheduler is "gone" only for a key this client saw computed: a pending one may simply not
        # have reached the scheduler yet (its update-graph message is queued behind others)
        computed = {str(f.key) for f in futures if f.status != "pending"}
        gone = [k for k, state in states.items() if state in GONE and k in computed]
        # a computed key that is no longer in memory was lost with its worker (and is being rebuilt): the gather
        # may be stuck connecting to that worker. Keys still being computed are waited on by the gather itself.
        if gone or any(state != "memory" for k, state in states.items() if k in computed):
            return ("lost", gone[0]) if gone else ("stale", None)


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


def _check_scheduler(client: Any) -> None:
    """Raise ClusterError if ``client`` is the session's and its scheduler process died."""
    session = session_of(client)
    if session is not None:
        session.check_scheduler()


def _lost_for_good(refs: Sequence[ObjectRef]) -> list[ObjectRef]:
    """Refs whose Dask future is "lost" and that the scheduler cannot rebuild (no task, no copy left)."""
    lost = [r for r in refs if r._call is None and r._future is not None and r._future.status == "lost"]
    if not lost:
        return []
    states = lost[0].client.run_on_scheduler(_on_scheduler.key_states, [r.key for r in lost])
    return [r for r in lost if states[r.key] in GONE]


def _check_same_session(items: Sequence[ObjectRef], client: Any) -> None:
    for ref in items:
        owner = ref.client
        if owner is None or owner is client:
            continue
        if getattr(owner, "status", "") in ("closing", "closed"):
            raise ObjectLostError(ref.key, "its session was shut down (lc.shutdown), which frees every object it made",
                                  "objects do not outlive their session: compute it again in the new one")
        raise ObjectLostError(ref.key, "it belongs to another session or client than the one in use",
                              "get it through the client that created it")


@overload
def get(refs: ObjectRef, *, timeout: float | None = None) -> Any: ...
@overload
def get(refs: Sequence[ObjectRef], *, timeout: float | None = None) -> list[Any]: ...


def get(refs: ObjectRef | Sequence[ObjectRef], *, timeout: float | None = None) -> Any:
    """Fetch the value of one ref, or the values of a list of refs (same order, duplicates allowed).

    ``timeout`` (seconds) raises :class:`GetTimeoutError` if results are not ready by then; the tasks
    keep running. Inside a task, ``get`` hands the task's thread and CPU slots back while it waits.

    >>> lc.get([square.remote(i) for i in range(3)])   # doctest: +SKIP
    [0, 1, 4]
    """
    items, single = _as_list(refs, "get")
    if not items:
        return []
    client = current_client()
    _check_same_session(items, client)
    try:
        with blocked():
            if timeout is not None:  # without one, the watched gather (_fetch) does all the waiting: one hop
                gone = _until_done(items, len(items), timeout)
                if gone:
                    raise ObjectLostError(sorted(gone)[0])
                pending = len([r for r in items if not r.done()])
                if pending:
                    raise GetTimeoutError(pending, len(items), timeout)
            values = _gather(client, items)
    except GetTimeoutError:
        raise
    except BaseException as e:
        translated = _translate(e, items)
        if translated is e:
            raise
        raise translated from None
    return values[0] if single else list(values)


def put(value: Any) -> ObjectRef:
    """Store ``value`` in the cluster (on a worker) and return a ref to it.

    >>> ref = lc.put(list(range(3)))       # doctest: +SKIP
    >>> lc.get(ref)                        # doctest: +SKIP
    [0, 1, 2]
    """
    if isinstance(value, ObjectRef):
        raise TypeError("lc.put() of an ObjectRef is not allowed: the ref already names an object in the cluster; "
                        "pass the ref itself")
    client = current_client()
    serialization.check_arguments([value], {}, "lc.put() value", name_arguments=False)
    try:
        # keyed by hand: a list would be split into one object per element, and Dask would name the key after the
        # value's type ("list-..."); "put-<hex>" reads as what it is in lineage, records and errors
        key = f"put-{uuid.uuid4().hex}"
        future = client.scatter({key: value}, hash=False)[key]
    except (TypeError, AttributeError) as e:
        if "pickle" in str(e).lower() or "serializ" in str(e).lower():
            raise SerializationError("lc.put() value", type(value).__name__, f"{type(e).__name__}: {e}") from e
        raise
    return ObjectRef(future, "put")


def wait(
    refs: Sequence[ObjectRef],
    *,
    num_returns: int = 1,
    timeout: float | None = None,
    fetch_local: bool = True,
) -> tuple[list[ObjectRef], list[ObjectRef]]:
    """Wait until ``num_returns`` refs are ready (done or failed) or ``timeout`` passes.

    Returns ``(ready, not_ready)``, both in input order; ``ready`` has at most ``num_returns`` refs.
    ``fetch_local`` is accepted for Ray compatibility; results stay on the workers until ``get``.

    >>> ready, pending = lc.wait(refs, num_returns=2, timeout=5)   # doctest: +SKIP
    """
    items, single = _as_list(refs, "wait")
    if single:
        raise TypeError("lc.wait() takes a list of ObjectRefs; wrap a single ref: lc.wait([ref])")
    if len(set(items)) != len(items):
        raise ValueError("lc.wait() requires a list of unique ObjectRefs")
    if not isinstance(num_returns, int) or not 1 <= num_returns <= max(1, len(items)):
        raise ValueError(f"num_returns must be between 1 and len(refs)={len(items)}, got {num_returns!r}")
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be >= 0 or None, got {timeout!r}")
    with blocked():
        gone = _until_done(items, num_returns, timeout)
    done = [r for r in items if r.done() or r.key in gone]  # a lost object is ready: get raises ObjectLostError
    ready = set(done[:num_returns])
    return [r for r in items if r in ready], [r for r in items if r not in ready]


def _until_done(refs: Sequence[ObjectRef], need: int, timeout: float | None) -> set[str]:
    """Block until ``need`` of ``refs`` are done (finished, failed, cancelled, or lost for good) or ``timeout``
    passes; returns the keys lost for good.

    Costs O(n) for n refs per ``_LOST_CHECK`` seconds: one coroutine on the client's loop counts completions
    (re-scanning the list after each one was O(n^2): 105 s to wait for 4,000 refs).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        pending = [r for r in refs if not r.done()]
        gone = {r.key for r in _lost_for_good(pending)}
        missing = need - (len(refs) - len(pending)) - len(gone)
        left = None if deadline is None else deadline - time.monotonic()
        if missing <= 0 or (left is not None and left <= 0):
            return gone
        step = _LOST_CHECK if left is None else min(_LOST_CHECK, left)
        waiting = [r for r in pending if r.key not in gone]
        _check_scheduler(waiting[0].client)
        # our own counter, not distributed.wait: on a timeout it cancels every waiter it made; then look for
        # lost objects and wait on (or return what is ready by the deadline)
        waiting[0].client.sync(_count_done, [_when_done(r) for r in waiting], missing, step)


def _when_done(ref: ObjectRef) -> Any:
    """A coroutine, on the client's loop, that returns when ``ref`` is done."""
    if ref._call is not None and ref._call.future is None:
        return ref._call.wait_async()
    future: Any = ref.future
    return future._state.wait()


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


def cancel(ref: ObjectRef, *, force: bool = False, recursive: bool = True) -> None:
    """Cancel the task behind ``ref``; ``lc.get(ref)`` then raises :class:`TaskCancelledError`.

    A finished task is left alone (as in Ray). A task already running finishes on its worker and its
    result is dropped (Dask does not interrupt a running thread); ``force`` is accepted for Ray
    compatibility. ``recursive`` is accepted; Dask cancels the task and whatever depends on it.
    """
    if not isinstance(ref, ObjectRef):
        raise TypeError(f"lc.cancel() takes an ObjectRef, got {type(ref).__name__}")
    if ref.state == "finished":
        return
    _user_cancelled[ref.key] = None
    while len(_user_cancelled) > _USER_CANCELLED_MAX:
        _user_cancelled.popitem(last=False)
    call = ref._call
    if call is not None and call.future is None:  # an actor call: it runs on; its result is dropped
        call.client.loop.add_callback(call.finish, error=TaskCancelledError(ref.key))
        return
    current_client().cancel([ref.future], force=force)
