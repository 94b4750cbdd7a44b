"""``@lc.remote``: Ray-style remote functions on Dask.

``f.remote(*args)`` submits one Dask task whose key starts with the function's name (so Dask's
dashboard groups by function), asks for ``CPU: num_cpus`` (+ GPUs and custom resources) and returns
an :class:`ObjectRef`. Refs passed as top-level arguments become dependencies and arrive as values;
refs inside containers arrive as refs (Ray's rule).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import operator
import os
import re
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Generic, ParamSpec, TypeVar, overload

import cloudpickle
from dask.base import annotate
from distributed import get_worker

from ..cluster.records import NAME_ANNOTATION, STAGE_ANNOTATION
from ..cluster.retries import ANNOTATION as RETRY_ANNOTATION
from ..exceptions import TaskError
from . import feasibility, serialization
from .options import TaskOptions
from .refs import ObjectRef
from .session import current_client, current_session, in_task

P = ParamSpec("P")
R = TypeVar("R")


class _TaskRunner:
    """What actually runs on the worker: the user's function plus Ray's error and retry rules."""

    __slots__ = ("_payload", "fn", "name", "num_returns", "retries", "retry_exceptions", "source")

    def __init__(self, fn: Callable[..., Any], name: str, options: TaskOptions) -> None:
        self.fn = fn
        self.source = _source_of(fn)
        self.name = name
        self.num_returns = options.num_returns
        self.retry_exceptions = options.retry_exceptions
        self.retries = options.effective_max_retries if options.retry_exceptions else 0
        self._payload: bytes | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # The function (and its source, for tracebacks) is pickled once per remote function, not once per
        # task, and every process unpickles it once (_FUNCTIONS): a function defined in a notebook travels
        # by value, and re-pickling it per task cost ~30% of task throughput (lambdas: ~65%).
        if self._payload is None:
            self._payload = cloudpickle.dumps((self.fn, self.source))
        return (_rebuild_runner, (self._payload, self.name, self.num_returns, self.retries, self.retry_exceptions))

    def __call__(self, kwargs: dict[str, Any], *args: Any) -> Any:
        attempt = 0
        while True:
            try:
                result = self.fn(*args, **kwargs)
                break
            except Exception as e:
                if self._should_retry(e, attempt):
                    attempt += 1
                    continue
                raise self._task_error(e) from None
        if self.num_returns > 1 and (not isinstance(result, (tuple, list)) or len(result) != self.num_returns):
            got = f"{len(result)} values" if isinstance(result, (tuple, list)) else type(result).__name__
            raise self._task_error(ValueError(
                f"task {self.name!r} has num_returns={self.num_returns} but returned {got}; return a tuple "
                f"of {self.num_returns} values or change num_returns"))
        return result

    def _should_retry(self, e: Exception, attempt: int) -> bool:
        if isinstance(e, TaskError) or not self.retry_exceptions:
            return False
        if self.retries != -1 and attempt >= self.retries:
            return False
        return self.retry_exceptions is True or isinstance(e, self.retry_exceptions)  # type: ignore[arg-type]

    def _task_error(self, e: Exception) -> Exception:
        try:
            where: str | None = str(get_worker().address)
        except ValueError:
            where = None
        return format_task_error(self.name, e, where, self._format(e))

    def _format(self, e: BaseException) -> str:
        """The remote traceback, with the user's source lines even when the worker has no copy of the file
        (functions defined in a notebook cell or a test module travel by value, without their source)."""
        frames = traceback.extract_tb(e.__traceback__.tb_next if e.__traceback__ else None)
        if self.source is not None:
            filename, first, lines = self.source
            code_name = getattr(self.fn, "__name__", "")
            for i, fs in enumerate(frames):
                offset = (fs.lineno or 0) - first
                if not fs.line and fs.name == code_name and 0 <= offset < len(lines):
                    frames[i] = traceback.FrameSummary(filename, fs.lineno, fs.name, line=lines[offset])
        return "".join(["Traceback (most recent call last):\n", *frames.format(),
                        *traceback.format_exception_only(type(e), e)])


def format_task_error(function: str, e: Exception, worker: str | None, traceback_str: str | None = None) -> Exception:
    """The error ``lc.get`` raises for ``e``: a TaskError that is also ``type(e)``; TaskErrors pass through."""
    if isinstance(e, TaskError):  # a failure of a task this one waited for: keep the original
        return e
    if traceback_str is None:
        traceback_str = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    try:
        import pickle

        pickle.loads(pickle.dumps(e))
        cause: BaseException | None = e
    except Exception:  # an exception that cannot travel: keep its text, lose its type
        cause = None
    return TaskError(function, traceback_str, cause, worker, os.getpid()).as_instanceof_cause()


def _task_name(name: str) -> str:
    """A key prefix Dask handles well: letters, digits and '_' ('<lambda>' -> 'lambda'; '<' in keys halved
    task throughput, and '-' would split Dask's key prefix)."""
    return re.sub(r"[^0-9A-Za-z_]+", "_", name).strip("_") or "task"


_FUNCTIONS: dict[bytes, tuple[Callable[..., Any], Any]] = {}
_FUNCTIONS_MAX = 512


def _rebuild_runner(payload: bytes, name: str, num_returns: int, retries: int,
                    retry_exceptions: bool | tuple[type[BaseException], ...]) -> _TaskRunner:
    cached = _FUNCTIONS.get(payload)
    if cached is None:
        if len(_FUNCTIONS) >= _FUNCTIONS_MAX:
            _FUNCTIONS.pop(next(iter(_FUNCTIONS)))
        cached = _FUNCTIONS[payload] = cloudpickle.loads(payload)
    runner = _TaskRunner.__new__(_TaskRunner)
    runner.fn, runner.source = cached
    runner.name, runner.num_returns, runner.retries = name, num_returns, retries
    runner.retry_exceptions = retry_exceptions
    runner._payload = payload
    return runner


def _source_of(fn: Callable[..., Any]) -> tuple[str, int, list[str]] | None:
    """``(file, first line number, lines)`` of ``fn``, read on the driver where the source exists."""
    try:
        lines, first = inspect.getsourcelines(fn)
        filename = inspect.getsourcefile(fn) or fn.__code__.co_filename
    except (OSError, TypeError, AttributeError):
        return None
    return filename, max(first, 1), [line.strip() for line in lines]


_stage: contextvars.ContextVar[str | None] = contextvars.ContextVar("labcluster_stage", default=None)


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Tasks submitted inside ``with lc.stage(name):`` belong to stage ``name`` in the task records: the
    lineage's coarse view groups by it, and ``lc.timeline_figure(color_by="stage")`` colours by it.

    >>> with lc.stage("load"):                             # doctest: +SKIP
    ...     parts = [load.remote(i) for i in range(8)]
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a stage name must be a non-empty string, got {name!r}")
    token = _stage.set(name)
    try:
        yield
    finally:
        _stage.reset(token)


def _to_dependency(value: Any) -> Any:
    if isinstance(value, ObjectRef):
        return value.future  # an actor call's result: waits for the call and makes it a key
    return value


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
        self._name = _task_name(str(options.name or getattr(fn, "__name__", None) or "task"))
        self._runner = _TaskRunner(fn, self._name, options)
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

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Submit the task; returns an ObjectRef (a list of them when ``num_returns > 1``)."""
        opts = self._options
        client = current_client()
        what = f"task {self._name!r}"
        if not self._pickle_checked:
            serialization.check_function(self._fn, what)
            _warn_retry_divergence(opts)
            self._pickle_checked = True
        serialization.check_arguments(args, kwargs, what)
        request = opts.request()
        group = opts.in_group()
        if group is None:
            feasibility.check(client, request, what)
        else:  # the bundle's resources appear on its worker once the group is placed: wait for that
            pg, index = group
            pg.wait_placed()
            request = pg.request_in_bundle(request, pg.bundle(index))
        key = f"{self._name}-{uuid.uuid4().hex}"
        dep_args = [_to_dependency(a) for a in args]
        dep_kwargs = {k: _to_dependency(v) for k, v in kwargs.items()}
        annotations: dict[str, Any] = {}
        stage_name = _stage.get()
        if stage_name is not None:
            annotations[STAGE_ANNOTATION] = stage_name
        if opts.max_retries is not None:  # the scheduler's retry plugin reads the task's own limit from this
            annotations[RETRY_ANNOTATION] = opts.max_retries
        if opts.name is not None:
            annotations[NAME_ANNOTATION] = opts.name
        with annotate(**annotations) if annotations else contextlib.nullcontext():
            future = client.submit(self._runner, dep_kwargs, *dep_args, key=key, resources=request or None,
                                   pure=False)
        if opts.num_returns == 1:
            return ObjectRef(future, self._name)
        # one tiny task per return value, on one CPU slot, so slot accounting stays exact
        item_request = {"CPU": 1.0} if "CPU" in request and group is None else None
        return [
            ObjectRef(client.submit(operator.getitem, future, i, key=f"{self._name}-{i}-{uuid.uuid4().hex}",
                                    resources=item_request, pure=False), self._name)
            for i in range(opts.num_returns)
        ]

    def __repr__(self) -> str:
        diffs = []
        for name in TaskOptions.valid_names():
            value = getattr(self._options, name)
            default = getattr(TaskOptions(), name)
            if value != default and name != "name":
                diffs.append(f"{name}={value!r}")
        if not diffs:
            diffs.append(f"num_cpus={self._options.num_cpus:g}")
        return f"RemoteFunction({self._name}, {', '.join(diffs)})"

    def _repr_html_(self) -> str:
        import html

        return f"<code>{html.escape(repr(self))}</code>"


_warned_retries = False


def _warn_retry_divergence(opts: TaskOptions) -> None:
    """On a scheduler without labcluster's retry plugin, Dask counts worker deaths per cluster: say so."""
    global _warned_retries
    if opts.max_retries is None or _warned_retries or in_task():
        return
    if current_session().per_task_retries:
        return
    _warned_retries = True
    warnings.warn(
        f"max_retries={opts.max_retries}: this scheduler does not run labcluster's retry plugin (it was not started "
        f"by labcluster), so for worker deaths Dask applies one cluster-wide limit "
        f"(distributed.scheduler.allowed-failures); max_retries still applies to retry_exceptions",
        stacklevel=4,
    )


@overload
def remote(__fn: Callable[P, R]) -> RemoteFunction[P, R]: ...
@overload
def remote(**options: Any) -> Callable[[Callable[P, R]], RemoteFunction[P, R]]: ...


def remote(*args: Any, **options: Any) -> Any:
    """Make a function a remote function: ``@lc.remote`` or ``@lc.remote(num_cpus=2, num_gpus=1, ...)``.

    Options (Ray's): ``num_cpus`` (CPU slots, default 1), ``num_gpus``, ``resources``, ``max_retries``
    (default 3), ``retry_exceptions`` (bool or list of exception types), ``num_returns``, ``name``.
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
    from .actors import ActorOptions

    task_names = TaskOptions.valid_names()
    actor_only = sorted(set(ActorOptions.valid_names()) - set(task_names))
    for key in options:
        if key not in task_names and key not in actor_only:
            raise TypeError(f"unknown option {key!r}; valid options are: {', '.join(task_names)} "
                            f"(and for classes also: {', '.join(actor_only)})")
    if all(k in task_names for k in options):
        TaskOptions().merged(**options)


def _make(fn: Any, options: dict[str, Any]) -> Any:
    if inspect.isclass(fn):
        from .actors import ActorClass, ActorOptions

        return ActorClass(fn, ActorOptions().merged(**options))
    if not callable(fn):
        raise TypeError(f"@lc.remote needs a function or a class, got {type(fn).__name__}")
    return RemoteFunction(fn, TaskOptions().merged(**options))

