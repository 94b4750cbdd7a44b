"""``ObjectRef``: a reference to a value in the cluster, wrapping a Dask future.

Hashable (by key), awaitable, picklable (a ref passed inside a container reaches the task as a ref),
and shown with its state, function and -- in HTML -- the worker holding it.
"""

from __future__ import annotations

import asyncio
import html
import threading
from collections.abc import Generator
from typing import Any

from distributed import Future


def _rebuild(key: str, function: str | None) -> ObjectRef:
    # Unpickling happens on the worker's event loop while it decodes the task, where no client may be
    # made (that would block the loop); the ref binds to a client on first use, in the task's thread.
    ref = ObjectRef.__new__(ObjectRef)
    ref._future, ref._key, ref._function, ref._registered, ref._inline = None, key, function, None, None
    return ref


class ObjectRef:
    """A reference to an object in the cluster; ``lc.get(ref)`` fetches it.

    >>> ref = square.remote(3)            # doctest: +SKIP
    >>> ref                               # doctest: +SKIP
    ObjectRef(square-5d0c..., state=finished)
    """

    __slots__ = ("__weakref__", "_function", "_future", "_inline", "_key", "_registered")

    def __init__(self, future: Future[Any], function: str | None = None,
                 registered: threading.Event | None = None) -> None:
        self._future: Future[Any] | None = future
        self._key = str(future.key)
        self._function = function
        #: actor results: set once the call has finished (until then a task cannot depend on it)
        self._registered = registered
        #: a small actor result kept here instead of on a worker: ``(value,)``; None otherwise
        self._inline: tuple[Any] | None = None

    def wait_registered(self) -> None:
        """Block until the scheduler knows this object, so a task can depend on it.

        Only actor results can be unknown: until their call finishes, and small ones (kept in this ref)
        until they are first passed to a task, when they are scattered under the same key.
        """
        if self._registered is None:
            return
        if not self._registered.is_set():
            self._registered.wait()
        if self.state == "error":
            self.future.result()  # an actor call that failed cannot feed a task: raise its error here
        if self._inline is not None:
            (value,) = self._inline
            self.future.client.scatter({self._key: value}, hash=False)
            self._inline = None

    @property
    def key(self) -> str:
        return self._key

    def hex(self) -> str:
        """The object's id (the Dask key), as Ray's ``ObjectRef.hex()``."""
        return self.key

    @property
    def future(self) -> Future[Any]:
        """The underlying Dask future, to mix with Dask APIs."""
        if self._future is None:
            from distributed import get_client

            client = get_client()
            self._future = Future(self._key, client)
            # A bare Future never hears about its key; this is how Dask itself subscribes a client to
            # a key it did not submit (fire_and_forget, reconnects): the scheduler then reports it.
            client._send_to_scheduler({"op": "client-desires-keys", "keys": [self._key]})
        return self._future

    @property
    def state(self) -> str:
        """``pending``, ``finished``, ``error``, ``cancelled`` or ``lost``, as Dask reports it."""
        return str(self.future.status)

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectRef) and other.key == self.key

    def __reduce__(self) -> tuple[Any, ...]:
        # A ref nested in an argument travels as its key and is re-bound, where it lands, to that
        # process's client (the worker's), which then holds the object alive too. The sender must keep
        # its own ref until the task has started (Ray's borrowing protocol is not modelled).
        return (_rebuild, (self.key, self._function))

    def __await__(self) -> Generator[Any, None, Any]:
        from .objects import get

        loop = asyncio.get_running_loop()
        return loop.run_in_executor(None, get, self).__await__()

    def __repr__(self) -> str:
        fn = f", function={self._function}" if self._function else ""
        return f"ObjectRef({self.key}, state={self.state}{fn})"

    def _repr_html_(self) -> str:
        workers = "?"
        try:
            who = self.future.client.who_has([self.future])
            workers = ", ".join(who.get(self.key, ())) or "-"
        except Exception:
            pass  # a closed client or a lost key: the repr must still render
        state = self.state
        color = {"finished": "#2a7f2a", "error": "#b00020", "pending": "#8a6d00"}.get(state, "#555")
        error = ""
        if state == "error":
            exc = self.future.exception(timeout=1)
            cause = getattr(exc, "cause", None) or exc
            first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
            error = f"<br><span style='color:{color}'>{html.escape(type(cause).__name__)}: {html.escape(first)}</span>"
        return (
            f"<div><strong>ObjectRef</strong> <code>{html.escape(self.key)}</code> "
            f"<span style='color:{color}'>{html.escape(state)}</span>"
            f"<br>function: {html.escape(self._function or '-')} &middot; held by: {html.escape(workers)}{error}</div>"
        )
