"""``ObjectRef``: a reference to a value in the cluster, wrapping a Dask future -- or, for an actor call, a
:class:`CallOutcome` that becomes a Dask key only when a task needs the result.

Hashable (by key), awaitable, picklable (a ref passed inside a container reaches the task as a ref),
and shown with its state, function and -- in HTML -- the worker holding it.
"""

from __future__ import annotations

import asyncio
import html
import threading
from collections.abc import Callable, Generator
from typing import Any

from distributed import Future

from ..dask_internals import desire_keys, future_finished
from ..exceptions import ObjectLostError
from . import fetching
from .calls import call
from .serialization import box
from .session import current_worker, driver_session, worker_or_driver_session


def _callback_when_done(future: Future[Any], callback: Callable[[], None]) -> None:
    """``callback()`` on the client's event loop once ``future`` is done (finished, erred, cancelled); for an
    awaitable instead (``lc.wait``), see ``fetching._when_done``. Dask's ``add_done_callback`` hands each callback
    to a thread of its own first: one more thread wake-up per ref, which was 8% of the driver's CPU in a Dataset
    run of 192 small tasks (py-spy)."""
    async def wait() -> None:
        while future.status == "pending":  # as in Dask's own done_callback: a reset (retried) key is pending again
            await future_finished(future)
        callback()

    future.client.loop.add_callback(wait)


def _rebuild(key: str, function: str | None) -> ObjectRef:
    """A ref arriving in this process (inside a result or an argument).

    In the driver it binds to the session's client at once, before the object that carried it can be released
    (Ray's borrowing, for its most common case: a task returns a ref to an object it put). On a worker, unpickling
    happens on the event loop while it decodes the task, where no client may be made (that would block the loop):
    the ref binds on first use, in the task's thread, and the sender keeps the object alive until the task starts.
    """
    ref = ObjectRef.__new__(ObjectRef)
    ref._future, ref._key, ref._function, ref._call = None, key, function, None
    session = driver_session()
    if session is not None and not session.closed and current_worker() is None:
        ref._bind(session.client)
    return ref


class CallOutcome:
    """The outcome of one actor method call, filled in on the client's event loop (``actors._call``).

    A call's result is not a Dask key until it has to be one: small results live here, so a call sends
    nothing to the scheduler. A result becomes a key when it is passed to a task (scattered under the
    call's key) or when it is too big to travel in the reply (then it stays on the actor's worker and
    ``future`` is set when the call finishes).
    """

    __slots__ = ("_callbacks", "_lock", "_waiters", "client", "done", "error", "future", "key", "on_cancel", "value")

    def __init__(self, client: Any, key: str) -> None:
        self.client = client
        self.key = key
        #: tells the actor's worker not to start the call (``lc.cancel``); None: nothing to tell
        self.on_cancel: Callable[[], None] | None = None
        self.done = threading.Event()
        #: ``(value,)`` for a result that came back inside the reply
        self.value: tuple[Any] | None = None
        self.error: BaseException | None = None
        self.future: Future[Any] | None = None
        self._lock = threading.Lock()
        self._waiters: list[asyncio.Future[None]] = []
        self._callbacks: list[Callable[[], None]] = []

    def finish(self, *, value: tuple[Any] | None = None, error: BaseException | None = None,
               future: Future[Any] | None = None) -> None:
        """Record the outcome (first one wins). Only on the client's event loop, like ``wait_async``."""
        if self.done.is_set():
            return
        self.value, self.error, self.future = value, error, future
        with self._lock:
            self.done.set()
            callbacks, self._callbacks = self._callbacks, []
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()
        for callback in callbacks:
            callback()

    def on_done(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once the call has finished (at once if it has); it runs on the client's loop."""
        with self._lock:
            if not self.done.is_set():
                self._callbacks.append(callback)
                return
        callback()

    async def wait_async(self) -> None:
        """Wait on the client's event loop until the call has finished."""
        if not self.done.is_set():
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    @property
    def status(self) -> str:
        if self.future is not None:
            return str(self.future.status)
        return "pending" if not self.done.is_set() else "error" if self.error is not None else "finished"

    def as_key(self) -> Future[Any]:
        """A Dask future for the result, once the call has finished (blocks until then). A small result is
        scattered under the call's key; a failed call raises its error (it cannot feed a task)."""
        self.done.wait()
        if self.error is not None:
            raise self.error
        with self._lock:
            if self.future is None:
                assert self.value is not None
                self.future = self.client.scatter({self.key: box(self.value[0])}, hash=False)[self.key]
            return self.future


class ObjectRef:
    """A reference to an object in the cluster; ``lc.get(ref)`` fetches it.

    >>> ref = square.remote(3)            # doctest: +SKIP
    >>> ref                               # doctest: +SKIP
    ObjectRef(square-5d0c..., state=finished)
    """

    __slots__ = ("__weakref__", "_call", "_function", "_future", "_key")

    def __init__(self, future: Future[Any] | None, function: str | None = None, *,
                 call: CallOutcome | None = None) -> None:
        self._future: Future[Any] | None = future
        #: an actor call's result (``future`` is None then): see CallOutcome
        self._call = call
        self._key = str(future.key) if future is not None else call.key if call is not None else ""
        self._function = function

    @staticmethod
    def from_key(key: str, function: str | None = None) -> ObjectRef:
        """A ref to an existing object by its key (``ref.hex()``), held by this process's session."""
        return _rebuild(key, function)

    def on_done(self, callback: Callable[[ObjectRef], None]) -> None:
        """Call ``callback(ref)`` once the object is ready (see :meth:`done`), on the client's event loop: keep it
        short (put the ref in a queue). Waiting for many refs without a poll per ref."""
        call = self._call
        if call is None:
            _callback_when_done(self.future, lambda: callback(self))
            return

        def finished() -> None:  # a result kept on the actor's worker is ready once its key is
            if call.future is not None:
                _callback_when_done(call.future, lambda: callback(self))
            else:
                callback(self)

        call.on_done(finished)

    def done(self) -> bool:
        """Whether the object is ready (computed, failed, cancelled or lost)."""
        if self._call is not None and self._call.future is None:
            return self._call.done.is_set()
        return bool(self.future.done())

    @property
    def is_actor_call(self) -> bool:
        """Whether an actor method call made this ref (not a task or ``put``)."""
        return self._call is not None

    @property
    def client(self) -> Any:
        """The Dask client this ref belongs to."""
        return self._call.client if self._call is not None else self.future.client

    @property
    def bound(self) -> bool:
        """Whether the ref holds its object through a client yet (refs that arrive on a worker bind on first use)."""
        return self._call is not None or self._future is not None

    def _bind(self, client: Any) -> Future[Any]:
        future: Future[Any] = Future(self._key, client)
        # a bare Future never hears about its key: tell the scheduler this client holds it, so it reports it
        desire_keys(client, [self._key])
        self._future = future
        return future

    @property
    def key(self) -> str:
        return self._key

    def hex(self) -> str:
        """The object's id (the Dask key), as Ray's ``ObjectRef.hex()``."""
        return self.key

    @property
    def future(self) -> Future[Any]:
        """The underlying Dask future, to mix with Dask APIs. For an actor call's result this waits for the
        call (raising its error if it failed) and makes the result a Dask key."""
        if self._call is not None:
            return self._call.as_key()
        if self._future is None:
            session = worker_or_driver_session()
            if session is None or session.closed:
                raise ObjectLostError(self._key, "it arrived here after the session that made it was shut down",
                                      "objects do not outlive their session: compute it again in the new one")
            return self._bind(session.client)
        return self._future

    @property
    def state(self) -> str:
        """``pending``, ``finished``, ``error``, ``cancelled`` or ``lost``, as Dask reports it; ``shut down`` once the
        session that made it is gone (its objects with it)."""
        if self._call is not None:
            return self._call.status
        if self._future is not None and getattr(self._future.client, "status", "") in ("closing", "closed"):
            return "shut down"
        return str(self.future.status)

    def _error(self) -> BaseException | None:
        """The exception of a failed object (None if it has not failed); does not block."""
        if self.state != "error":
            return None
        if self._call is not None and self._call.future is None:
            return self._call.error
        exc: BaseException | None = self.future.exception(timeout=1)
        return exc

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectRef) and other.key == self.key

    def __reduce__(self) -> tuple[Any, ...]:
        # A ref nested in an argument travels as its key and is re-bound, where it lands, to that
        # process's client (the worker's), which then holds the object alive too. The sender must keep
        # its own ref until the task has started (Ray's borrowing protocol is not modelled). An actor
        # call's result becomes a key first (arguments are pickled on the caller's thread by
        # serialization.check_arguments before anything is sent).
        if self._call is not None:
            self._call.as_key()
        return (_rebuild, (self.key, self._function))

    def __await__(self) -> Generator[Any, None, Any]:
        """``await ref`` in any event loop: ``lc.get(ref)`` in a thread, so that loop keeps running."""
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(None, self._get).__await__()

    def _get(self) -> Any:
        session = worker_or_driver_session()
        if session is None:
            raise ObjectLostError(self._key, *ObjectLostError.SHUT_DOWN)
        return fetching.values(session, [self], None)[0]

    def __repr__(self) -> str:
        fn = f", function={self._function}" if self._function else ""
        return f"ObjectRef({self.key}, state={self.state}{fn})"

    def _repr_html_(self) -> str:
        state = self.state
        if self._call is not None and self._call.future is None:
            workers = "this process (a small actor result)" if state == "finished" else "-"
        elif state != "finished":  # nothing is held: not yet, or never (failed, cancelled, shut down)
            workers = "-"
        else:
            workers = "?"
            try:
                client = self.future.client
                who = client.who_has([self.future]).get(self.key, ())
                names = call(client, "worker_names", labelled=True) if who else {}
                workers = ", ".join(names.get(a, a) for a in who) or "-"
            except Exception:
                pass  # a closed client or a lost key: the repr must still render
        color = {"finished": "#2a7f2a", "error": "#b00020", "pending": "#8a6d00"}.get(state, "#555")
        error = ""
        exc = self._error()
        if exc is not None:
            cause = getattr(exc, "cause", None) or exc
            first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
            error = f"<br><span style='color:{color}'>{html.escape(type(cause).__name__)}: {html.escape(first)}</span>"
        return (
            f"<div><strong>ObjectRef</strong> <code>{html.escape(self.key)}</code> "
            f"<span style='color:{color}'>{html.escape(state)}</span>"
            f"<br>function: {html.escape(self._function or '-')} &middot; held by: {html.escape(workers)}{error}</div>"
        )
