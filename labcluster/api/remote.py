"""``@lc.remote``: Ray-style remote functions (and, on classes, actors) on Dask.

``f.remote(*args)`` submits one Dask task whose key starts with the function's name (so Dask's
dashboard groups by function), asks for ``CPU: num_cpus`` (+ GPUs and custom resources) and returns
an :class:`ObjectRef`. Refs passed as top-level arguments become dependencies and arrive as values;
refs inside containers arrive as refs (Ray's rule).
"""

from __future__ import annotations

import functools
import html
import inspect
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Generic, ParamSpec, TypeVar, overload

from ..exceptions import unknown_name
from ..warn import warn_user
from . import scopes, serialization
from .actors import ActorClass, ActorOptions
from .boundary import entry
from .generators import STREAMING, ObjectRefGenerator
from .options import TaskOptions
from .refs import ObjectRef
from .runner import TaskRunner, task_name
from .session import Session
from .start import current_session
from .submit import arguments, submit, submit_many

P = ParamSpec("P")
R = TypeVar("R")


class RemoteFunction(Generic[P, R]):
    """A function that runs as a task: call ``.remote(...)``, get an :class:`ObjectRef`.

    >>> import labcluster as lc
    >>> @lc.remote(num_cpus=1)
    ... def add(a, b):
    ...     return a + b
    >>> add
    RemoteFunction(add, num_cpus=1)
    """

    def __init__(self, fn: Callable[P, R], options: TaskOptions) -> None:
        self._fn = fn
        self._options = options
        self._name = task_name(str(options.name or getattr(fn, "__name__", None) or "task"))
        self._runner = TaskRunner(fn, self._name, options.num_returns, options.effective_max_retries,
                                  options.retry_exceptions)
        self._pickle_checked = False
        functools.update_wrapper(self, fn)

    def __reduce__(self) -> tuple[Any, ...]:
        # A remote function captured by a task (recursion, fan-out) travels as (function, options), so a cycle
        # such as `def tree(): ... tree.remote()` closes inside one pickling pass.
        return (RemoteFunction, (self._fn, self._options))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"remote functions cannot be called directly. Instead of running '{self._name}()', "
            f"try '{self._name}.remote()'."
        )

    def options(self, **overrides: Any) -> RemoteFunction[P, R]:
        """Return a copy with other options; the original is unchanged."""
        return RemoteFunction(self._fn, self._options.merged(**overrides))

    @property
    def task_options(self) -> TaskOptions:
        return self._options

    def _session(self) -> tuple[Session, str]:
        """The session to submit in and what errors call the task; the function is checked once (picklable)."""
        session = current_session()
        what = f"task {self._name!r}"
        if not self._pickle_checked:
            serialization.check_function(self._fn, what)
            _warn_retry_divergence(session, self._options)
            self._pickle_checked = True
        return session, what

    @entry
    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Submit the task; returns an ObjectRef (a list of them when ``num_returns > 1``)."""
        opts = self._options
        session, what = self._session()
        call_args, call_kwargs = arguments(session, args, kwargs, what)
        generator = isinstance(opts.num_returns, str)
        head = ({"owner": str(session.client.id)},) if generator else ()  # who holds what a generator yields
        future = submit(session, self._runner, (*head, call_kwargs, *call_args), options=opts, what=what,
                        key=f"{self._name}-{uuid.uuid4().hex}", retries=opts.max_retries)
        ref = ObjectRef(future, self._name)
        scopes.started(ref)  # a notebook cell's interrupt cancels it
        if opts.num_returns == STREAMING:
            return ObjectRefGenerator(session, ref)
        if opts.num_returns == 1 or generator:
            return ref
        # one tiny task per return value, on one CPU slot, so slot accounting stays exact
        slot = 1.0 if opts.num_cpus and opts.in_group() is None else 0.0
        refs = [ObjectRef(submit(session, serialization.item, (future, i),
                                 options=TaskOptions(num_cpus=slot, name=f"{self._name}[{i}]"), what=what,
                                 key=f"{self._name}-{i}-{uuid.uuid4().hex}", retries=opts.max_retries), self._name)
                for i in range(int(opts.num_returns))]
        for part in refs:
            scopes.started(part)
        return refs

    def remote_many(self, calls: Sequence[Sequence[Any]]) -> list[ObjectRef]:
        """``[self.remote(*args) for args in calls]`` in one message to the scheduler: for labcluster's own layers
        (a Dataset stage's blocks), so only for a function of one return value and positional arguments."""
        opts = self._options
        if opts.num_returns != 1:
            raise ValueError(f"remote_many needs a function of one return value, not num_returns={opts.num_returns!r}")
        session, what = self._session()
        wired = [({}, *arguments(session, args, {}, what)[0]) for args in calls]
        keys = [f"{self._name}-{uuid.uuid4().hex}" for _ in calls]
        futures = submit_many(session, self._runner, wired, options=opts, what=what, keys=keys,
                              retries=opts.max_retries)
        refs = [ObjectRef(future, self._name) for future in futures]
        for ref in refs:
            scopes.started(ref)  # a notebook cell's interrupt cancels it
        return refs

    def __repr__(self) -> str:
        diffs = []
        default = TaskOptions()
        for name in TaskOptions.valid_names():
            value = getattr(self._options, name)
            if value != getattr(default, name) and name != "name":
                diffs.append(f"{name}={value!r}")
        if not diffs:
            diffs.append(f"num_cpus={self._options.num_cpus:g}")
        return f"RemoteFunction({self._name}, {', '.join(diffs)})"

    def _repr_html_(self) -> str:
        return f"<code>{html.escape(repr(self))}</code>"


class _RetryWarning:
    """Whether a session warned already that its scheduler applies no per-task max_retries."""

    def __init__(self, session: Session) -> None:
        self.warned = False


def _warn_retry_divergence(session: Session, opts: TaskOptions) -> None:
    """On a scheduler without labcluster's retry plugin, Dask counts worker deaths per cluster: say so, once."""
    if opts.max_retries is None or session.in_worker or session.per_task_retries:
        return
    flag = session.part(_RetryWarning)
    if flag.warned:
        return
    flag.warned = True
    warn_user(
        f"max_retries={opts.max_retries}: this scheduler does not run labcluster's retry plugin (it was not started "
        f"by labcluster), so for worker deaths Dask applies one cluster-wide limit "
        f"(distributed.scheduler.allowed-failures); max_retries still applies to retry_exceptions")


@overload
def remote(__fn: Callable[P, R]) -> RemoteFunction[P, R]: ...
@overload
def remote(**options: Any) -> Callable[[Callable[P, R]], RemoteFunction[P, R]]: ...


def remote(*args: Any, **options: Any) -> Any:
    """Make a function a remote function: ``@lc.remote`` or ``@lc.remote(num_cpus=2, num_gpus=1, ...)``.

    Options (Ray's): ``num_cpus`` (CPU slots, default 1), ``num_gpus``, ``resources``, ``max_retries``
    (default 3), ``retry_exceptions`` (bool or list of exception types), ``num_returns`` (an int, or ``"dynamic"`` /
    ``"streaming"`` for a function that yields: see ``generators.py``), ``name``. On a class,
    the actor options too (``max_restarts``, ``max_concurrency``, ``name``, ``lifetime``, ...).
    """
    if len(args) == 1 and not options and callable(args[0]):
        return _make(args[0], {})
    if args:
        raise TypeError("@lc.remote takes either no arguments (@lc.remote) or keyword options "
                        "(@lc.remote(num_cpus=2)); got positional arguments")
    _check_options(options)
    return lambda fn: _make(fn, options)


def _check_options(options: dict[str, Any]) -> None:
    """Misspelled or ill-typed options fail where they are written, before we know function or class."""
    task_names = TaskOptions.valid_names()
    actor_only = sorted(set(ActorOptions.valid_names()) - set(task_names))
    for key in options:
        if key not in task_names and key not in actor_only:
            raise unknown_name("option", key, task_names, f"(and for classes also: {', '.join(actor_only)})",
                               also=actor_only)
    if all(k in task_names for k in options):
        TaskOptions().merged(**options)


def _make(fn: Any, options: dict[str, Any]) -> Any:
    if inspect.isclass(fn):
        return ActorClass(fn, ActorOptions().merged(**options))
    if not callable(fn):
        raise TypeError(f"@lc.remote needs a function or a class, got {type(fn).__name__}")
    return RemoteFunction(fn, TaskOptions().merged(**options))
