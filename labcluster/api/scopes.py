"""Work scopes: what one stretch of a user's code (a notebook cell) started, so that it can be cancelled as one.

A scope collects the task refs, actor calls and dataset executions started while it is current (in this thread or
coroutine: a ``ContextVar``). The notebook layer opens one per cell; a kernel interrupt then cancels what that
cell started, and nothing else: work from earlier cells keeps running. Tasks started inside a scope that collects
output also carry its id (the ``labcluster_origin`` annotation), which is how what they print finds its way back
to that cell (``output.py``).

Below the Jupyter line, so it knows nothing of cells: a scope is opened with :func:`opened` and cancelled with
:meth:`WorkScope.cancel`. Refs are held weakly: a scope never keeps a result alive.

>>> with opened("demo") as scope:
...     current() is scope
True
>>> scope.cancel()
>>> current() is None
True
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from ..text import plural


class Stoppable(Protocol):
    """A dataset execution, as a scope sees it."""

    def stop(self) -> None: ...

    @property
    def running(self) -> bool: ...


class WorkScope:
    """The work started while this scope was current. ``label``: what it is to the user (``"cell 12"``)."""

    def __init__(self, label: str, *, collect_output: bool = False) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.label = label
        #: whether what this scope's tasks print comes back to the driver (``output.py``)
        self.collect_output = collect_output
        self._refs: list[weakref.ref[Any]] = []
        self._executions: list[weakref.ref[Any]] = []
        self._lock = threading.Lock()
        self.cancelled = False

    def origin(self, client_id: str) -> str | None:
        """The annotation value tasks started here by that Dask client carry: ``"<its output topic> <scope id>"``,
        or None (output not wanted)."""
        return f"{output_topic(client_id)} {self.id}" if self.collect_output else None

    def started(self, ref: Any) -> None:
        with self._lock:
            self._refs.append(weakref.ref(ref))

    def started_execution(self, execution: Stoppable) -> None:
        with self._lock:
            self._executions.append(weakref.ref(execution))

    def pending(self) -> tuple[list[Any], list[Stoppable]]:
        """The refs not finished yet and the executions still running (what :meth:`cancel` would stop)."""
        with self._lock:
            refs = [r for r in (w() for w in self._refs) if r is not None and not r.done()]
            runs = [e for e in (w() for w in self._executions) if e is not None and e.running]
        return refs, runs

    def cancel(self) -> str | None:
        """Cancel what is not finished; returns what was cancelled, in words (None: nothing was)."""
        refs, runs = self.pending()
        cancel = _cancel_ref
        if cancel is None:  # lc.cancel is not even imported: no ref of this process can be pending
            refs, cancel = [], _cancel_nothing
        for execution in runs:
            with contextlib.suppress(Exception):
                execution.stop()
        tasks = calls = 0
        for ref in refs:
            try:
                cancel(ref)
            except Exception:  # the session is gone, say: nothing of it is running any more
                continue
            if ref.is_actor_call:
                calls += 1
            else:
                tasks += 1
        self.cancelled = True
        parts = [plural(tasks, "task")] if tasks else []
        if calls:
            parts.append(plural(calls, "actor call") + " (one already running finishes)")
        if runs:
            parts.append(plural(len(runs), "dataset execution"))
        return ", ".join(parts) if parts else None


#: how a ref is cancelled: ``lc.cancel``, which registers itself (``objects.py`` imports this module, not back)
_cancel_ref: Callable[[Any], None] | None = None


def _cancel_nothing(ref: Any) -> None:
    return None


def set_canceller(fn: Callable[[Any], None]) -> None:
    global _cancel_ref
    _cancel_ref = fn


_current: contextvars.ContextVar[WorkScope | None] = contextvars.ContextVar("labcluster_scope", default=None)
#: what a KeyboardInterrupt in a blocking call does with the current scope (the notebook layer sets it)
_cancel_on_interrupt: contextvars.ContextVar[bool] = contextvars.ContextVar("labcluster_scope_cancel",
                                                                             default=False)


def current() -> WorkScope | None:
    return _current.get()


def enter(scope: WorkScope | None, *, cancel_on_interrupt: bool = True) -> tuple[Any, Any]:
    """Make ``scope`` current until :func:`leave` with the tokens returned (for callers that cannot use ``with``:
    IPython's pre- and post-cell hooks)."""
    return _current.set(scope), _cancel_on_interrupt.set(cancel_on_interrupt)


def leave(tokens: tuple[Any, Any]) -> None:
    _current.reset(tokens[0])
    _cancel_on_interrupt.reset(tokens[1])


@contextlib.contextmanager
def opened(label: str, *, collect_output: bool = False, cancel_on_interrupt: bool = True
           ) -> Iterator[WorkScope]:
    scope = WorkScope(label, collect_output=collect_output)
    tokens = enter(scope, cancel_on_interrupt=cancel_on_interrupt)
    try:
        yield scope
    finally:
        leave(tokens)


def started(ref: Any) -> None:
    """``ref`` (a task or an actor call) was just started: the current scope, if any, keeps it."""
    scope = _current.get()
    if scope is not None:
        scope.started(ref)


def started_execution(execution: Stoppable) -> None:
    scope = _current.get()
    if scope is not None:
        scope.started_execution(execution)


#: on a worker: the origin of the task (or actor call) running here, which the tasks it starts inherit
_inherited: contextvars.ContextVar[str | None] = contextvars.ContextVar("labcluster_inherited_origin", default=None)


def origin(client_id: str) -> str | None:
    """What a task the client ``client_id`` starts now carries as its origin (None: no scope wants its output).
    Inside a task that has one, the task's own: what a nested task prints goes to the same cell."""
    scope = _current.get()
    return scope.origin(client_id) if scope is not None else _inherited.get()


@contextlib.contextmanager
def inheriting(origin: str | None) -> Iterator[None]:
    """Tasks started inside the block carry ``origin`` (set around a task's run on its worker)."""
    token = _inherited.set(origin)
    try:
        yield
    finally:
        _inherited.reset(token)


def output_topic(client_id: str) -> str:
    """The event topic a driver (by its Dask client's id) hears its tasks' output on."""
    return f"labcluster-output-{client_id}"


def interrupted() -> str | None:
    """A blocking call was interrupted: cancel what the current scope started, when it asks for that; returns the
    words for the error message (None: nothing to say, the caller says what it always says)."""
    scope = _current.get()
    if scope is None or not _cancel_on_interrupt.get():
        return None
    cancelled = scope.cancel()
    # nothing of this scope's was running (the wait was on an earlier cell's work): the caller's own words say
    # what keeps running and how to stop it
    return f"cancelled what {scope.label} started: {cancelled}; the cluster keeps running" if cancelled else None

