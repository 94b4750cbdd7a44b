"""``get``, ``put``, ``wait`` and ``cancel`` with Ray's semantics, on Dask futures.

Errors arrive as labcluster's types (``fetching.py``): a task's exception as ``TaskError`` (also an instance of the
user's type), a cancelled task as ``TaskCancelledError``, a task whose workers kept dying as ``WorkerCrashedError``,
a wait past ``timeout`` as ``GetTimeoutError`` (the tasks keep running). An error raised here shows the caller's
line and labcluster's message (with the remote traceback), not the frames of the machinery in between.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, overload

from ..exceptions import ObjectLostError, TaskCancelledError
from ..warn import warn_user
from . import fetching, scopes, serialization
from . import progress as progress_bar
from .blocking import blocked
from .boundary import entry
from .refs import ObjectRef
from .session import Session
from .start import current_session


def _as_list(refs: Any, fn: str) -> tuple[list[ObjectRef], bool]:
    if isinstance(refs, ObjectRef):
        return [refs], True
    if isinstance(refs, (list, tuple)):
        bad = [type(r).__name__ for r in refs if not isinstance(r, ObjectRef)]
        if bad:
            raise TypeError(f"lc.{fn}() takes ObjectRefs (from f.remote() or lc.put()), but got {bad[0]} in the list")
        return list(refs), False
    hint = ""
    if type(refs).__name__ in ("ObjectRefGenerator", "DynamicObjectRefGenerator"):  # (generators.py imports us)
        hint = ("; a generator task's values are refs of their own: iterate it (lc.get(ref) for each ref), "
                "or pass list(generator) to get them all")
    raise TypeError(f"lc.{fn}() takes an ObjectRef or a list of ObjectRefs, got {type(refs).__name__}{hint}")


def _check_same_session(items: Sequence[ObjectRef], session: Session) -> None:
    for ref in items:
        if not ref.bound:
            continue
        owner = ref.client
        if owner is session.client:
            continue
        if getattr(owner, "status", "") in ("closing", "closed"):
            raise ObjectLostError(ref.key, *ObjectLostError.SHUT_DOWN)
        raise ObjectLostError(ref.key, "it belongs to another session or client than the one in use",
                              "get it through the client that created it")


def check_alive(items: Sequence[ObjectRef]) -> None:
    """Raise ``ObjectLostError`` at once for a ref whose session was shut down (and start nothing)."""
    for ref in items:
        if ref.bound and getattr(ref.client, "status", "") in ("closing", "closed"):
            raise ObjectLostError(ref.key, *ObjectLostError.SHUT_DOWN)


def _refs_session(items: Sequence[ObjectRef]) -> Session:
    """The session to fetch ``items`` with. A ref of a session that was shut down raises at once and starts
    nothing (the first call without ``lc.init`` would otherwise start a cluster just to say the object is gone)."""
    check_alive(items)
    session = current_session()
    _check_same_session(items, session)
    return session


@overload
def get(refs: ObjectRef, *, timeout: float | None = None, progress: bool | None = None) -> Any: ...
@overload
def get(refs: Sequence[ObjectRef], *, timeout: float | None = None, progress: bool | None = None) -> list[Any]: ...


@entry(interrupted="the tasks keep running: lc.get them again for their results, or lc.cancel(ref) to stop one")
def get(refs: ObjectRef | Sequence[ObjectRef], *, timeout: float | None = None, progress: bool | None = None) -> Any:
    """Fetch the value of one ref, or the values of a list of refs (same order, duplicates allowed).

    ``timeout`` (seconds) raises :class:`GetTimeoutError` if results are not ready by then; the tasks
    keep running. Inside a task, ``get`` hands the task's thread and CPU slots back while it waits.
    ``progress=True`` shows a bar of the refs done while it waits (tqdm in a terminal, a widget in a notebook);
    in a notebook one appears by itself when the wait lasts (``labcluster.progress.auto-after``); ``False``: never.

    >>> lc.get([square.remote(i) for i in range(3)])   # doctest: +SKIP
    [0, 1, 4]
    """
    items, single = _as_list(refs, "get")
    if not items:
        return []
    with progress_bar.tracked(items, "lc.get", progress):
        values = fetching.values(_refs_session(items), items, timeout)
    return values[0] if single else values


def put_in(session: Session, value: Any, p: serialization.Pickled | None = None, name: str = "put") -> ObjectRef:
    """``lc.put`` in ``session``: store ``value`` on a worker, as one object, and return a ref to it. ``p``: its
    pickle, when it was pickled already (to check it): a collection then travels as that pickle. ``name``: what
    made it (``put``; a generator task's values are ``<function>-<i>``)."""
    # keyed by hand: Dask would name the key after the value's type ("list-..."); "<name>-<hex>" reads as what it
    # is in lineage, records and errors
    key = f"{name}-{uuid.uuid4().hex}"
    future = session.client.scatter({key: serialization.box(value, p)}, hash=False)[key]
    return ObjectRef(future, name)


@entry
def put(value: Any) -> ObjectRef:
    """Store ``value`` in the cluster (on a worker) and return a ref to it.

    >>> ref = lc.put(list(range(3)))       # doctest: +SKIP
    >>> lc.get(ref)                        # doctest: +SKIP
    [0, 1, 2]
    """
    if isinstance(value, ObjectRef):
        raise TypeError("lc.put() of an ObjectRef is not allowed: the ref already names an object in the cluster; "
                        "pass the ref itself")
    session = current_session()
    checked = serialization.check_arguments([value], {}, "lc.put() value", name_arguments=False)
    return put_in(session, value, checked.get(0))


@entry(interrupted="the tasks keep running: lc.wait or lc.get them again, or lc.cancel(ref) to stop one")
def wait(
    refs: Sequence[ObjectRef],
    *,
    num_returns: int = 1,
    timeout: float | None = None,
    fetch_local: bool = True,
    progress: bool | None = None,
) -> tuple[list[ObjectRef], list[ObjectRef]]:
    """Wait until ``num_returns`` refs are ready (done or failed) or ``timeout`` passes.

    Returns ``(ready, not_ready)``, both in input order; ``ready`` has at most ``num_returns`` refs.
    ``fetch_local`` is accepted for Ray compatibility; results stay on the workers until ``get``. ``progress``: a
    bar of the refs done, as for :func:`get`.

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
    if not items:
        return [], []
    session = _refs_session(items)
    with blocked(), progress_bar.tracked(items, f"lc.wait for {num_returns}", progress):
        gone = fetching.until_done(session, items, num_returns, timeout)
    done = [r for r in items if r.done() or r.key in gone]  # a lost object is ready: get raises ObjectLostError
    ready = set(done[:num_returns])
    return [r for r in items if r in ready], [r for r in items if r not in ready]


@entry
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
    if force:  # Ray kills the worker process; here that would take every other task on it along
        warn_user("lc.cancel(force=True) does not interrupt a task that is already running (Dask cannot stop a "
                      "thread): its result is dropped and it runs to its end; a long task can stop early by "
                      "checking lc.get_runtime_context().is_canceled()")
    session = current_session()
    session.part(fetching.Cancelled).add(ref.key)
    call = ref._call
    if call is not None and call.future is None:  # an actor call: one not started yet never starts; a running one
        if call.on_cancel is not None:            # runs on, and its result is dropped
            call.on_cancel()
        call.client.loop.add_callback(call.finish, error=TaskCancelledError(ref.key))
        return
    session.client.cancel([ref.future], force=force)


scopes.set_canceller(cancel)  # a cell's interrupt cancels its refs with this (scopes.py cannot import us)
