"""What runs on the worker for a task: the user's function with Ray's error and retry rules, and the errors it raises.

A remote function's task runs a :class:`TaskRunner`: arguments that arrive as boxed collections are unwrapped,
the function runs (re-run on application exceptions only when ``retry_exceptions`` says so), and a collection it
returns is boxed to travel as one object (``serialization.py``). A failure becomes a ``TaskError`` that is also
the user's exception type and carries the remote traceback *with its source lines*, even for functions and classes
defined in a notebook cell (the worker has no copy of that file: the driver reads the source and it travels along).
"""

from __future__ import annotations

import importlib
import inspect
import linecache
import os
import re
import traceback
from collections.abc import Callable
from typing import Any

import cloudpickle

from ..exceptions import TaskError
from . import output
from .blocking import current_task_key
from .generators import generate
from .serialization import box, unbox
from .start import current_session

#: (file, first line, source lines, names of the functions in it): what a worker needs to show the source of one
#: stretch of a file; a function has one, a class one (or one per method, see :func:`source_of`)
Fragment = tuple[str, int, list[str], frozenset[str]]
Source = tuple[Fragment, ...]
#: the file name cloudpickle gives code it sends by value (functions and classes from notebooks and __main__)
_BY_VALUE = "<dynamic-code>"


def task_name(name: str) -> str:
    """A key prefix Dask handles well: letters, digits and '_' ('<lambda>' -> 'lambda'; '<' in keys halved
    task throughput, and '-' would split Dask's key prefix).

    >>> task_name("<lambda>"), task_name("Model.predict")
    ('lambda', 'Model_predict')
    """
    return re.sub(r"[^0-9A-Za-z_]+", "_", name).strip("_") or "task"


def source_of(obj: Any) -> Source | None:
    """The source of a function or class, read on the driver where it exists.

    A class defined in a notebook cell has no source of its own for ``inspect`` (its module, ``__main__``, has no
    file); its methods do (each names its cell), so a class falls back to one fragment per method. A wrapper that
    runs other people's code (a Dataset stage) names their source in ``_labcluster_sources``."""
    given = getattr(obj, "_labcluster_sources", None)
    if given is not None:
        return tuple(given) or None
    if hasattr(obj, "__code__"):
        one = _fragment(obj, [obj])
        return (one,) if one is not None else None
    methods = [m for m in vars(obj).values() if hasattr(m, "__code__")]
    whole = _fragment(obj, methods)
    if whole is not None:
        return (whole,)
    parts = tuple(f for f in (_fragment(m, [m]) for m in methods) if f is not None)
    return parts or None


def _fragment(obj: Any, functions: list[Any]) -> Fragment | None:
    try:
        lines, first = inspect.getsourcelines(obj)
    except (OSError, TypeError):
        return None
    code = getattr(functions[0], "__code__", None) if functions else None
    filename = code.co_filename if code is not None else inspect.getsourcefile(obj)
    if not filename:
        return None
    names = frozenset(f.__code__.co_name for f in functions)
    return filename, max(first, 1), [line.rstrip("\n") for line in lines], names


#: where the machinery between a worker and the user's code lives: labcluster, Dask, tornado, asyncio's and
#: concurrent.futures' threads
_MACHINERY = tuple(os.path.dirname(importlib.import_module(m).__file__ or "") + os.sep
                   for m in ("labcluster", "distributed", "tornado", "asyncio", "concurrent.futures"))


def format_remote(e: BaseException, source: Source | None) -> str:
    """The traceback of ``e`` from the user's code on (the machinery's frames before it dropped), with source lines
    filled in from ``source`` where the worker has no copy of the file; just its message where labcluster raised it
    with no user code on the way (its message says what the user's code did wrong)."""
    frames = traceback.extract_tb(e.__traceback__)
    while len(frames) > 1 and frames[0].filename.startswith(_MACHINERY):
        del frames[0]
    if len(frames) == 1 and frames[0].filename.startswith(_MACHINERY) and (frames[0].line or "").startswith("raise "):
        # no user code in it: labcluster's own message about what the user's code gave it (a wrong return type)
        return "".join(traceback.format_exception_only(type(e), e))
    for filename, first, lines, names in source or ():
        for i, fs in enumerate(frames):
            offset = (fs.lineno or 0) - first
            ours = fs.filename == _BY_VALUE or (fs.filename == filename and not linecache.getline(filename, 1))
            if ours and fs.name in names and 0 <= offset < len(lines):
                frames[i] = traceback.FrameSummary(filename, fs.lineno, fs.name, line=lines[offset].strip())
    return "".join(["Traceback (most recent call last):\n", *frames.format(),
                    *traceback.format_exception_only(type(e), e)])


def task_error(function: str, e: BaseException, worker: Any, traceback_str: str | None = None) -> BaseException:
    """The error ``lc.get`` raises for ``e``: a TaskError that is also ``type(e)``; TaskErrors pass through.
    ``worker``: the Dask worker it ran on (or None)."""
    if isinstance(e, TaskError):  # a failure of a task this one waited for: keep the original
        return e
    if traceback_str is None:
        traceback_str = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    try:  # cloudpickle: an exception class defined in a notebook or script travels by value, keeping its type
        cloudpickle.loads(cloudpickle.dumps(e))
        cause: BaseException | None = e
    except Exception:  # an exception that cannot travel: keep its text, lose its type
        cause = None
    address, name = (str(worker.address), str(worker.name)) if worker is not None else (None, None)
    return TaskError(function, traceback_str, cause, address, os.getpid(), name).as_instanceof_cause()


def _where() -> Any:
    from distributed import get_worker

    try:
        return get_worker()
    except ValueError:
        return None


class TaskRunner:
    """What actually runs on the worker: the user's function plus Ray's error and retry rules."""

    __slots__ = ("_payload", "fn", "name", "num_returns", "retries", "retry_exceptions", "source")

    def __init__(self, fn: Callable[..., Any], name: str, num_returns: int | str, retries: int,
                 retry_exceptions: bool | tuple[type[BaseException], ...]) -> None:
        self.fn = fn
        self.source = source_of(fn)
        self.name = name
        self.num_returns = num_returns
        self.retry_exceptions = retry_exceptions
        self.retries = retries if retry_exceptions else 0
        self._payload: bytes | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # The function (and its source, for tracebacks) is pickled once per remote function, not once per
        # task, and every process unpickles it once (_FUNCTIONS): a function defined in a notebook travels
        # by value, and re-pickling it per task cost ~30% of task throughput (lambdas: ~65%).
        if self._payload is None:
            self._payload = cloudpickle.dumps((self.fn, self.source))
        return (_rebuild_runner, (self._payload, self.name, self.num_returns, self.retries, self.retry_exceptions))

    def __call__(self, kwargs: dict[str, Any], *args: Any) -> Any:
        if isinstance(self.num_returns, str):  # a generator task: the first argument says who the caller is
            owner, kwargs, args = kwargs["owner"], args[0], args[1:]
        args = tuple(unbox(a) for a in args)
        kwargs = {k: unbox(v) for k, v in kwargs.items()}
        owner = owner if isinstance(self.num_returns, str) else None
        origin = output.current_task_origin()
        if origin is None:  # the common case: nothing to route, no context to enter
            return self._run(args, kwargs, owner)
        with output.routed(origin, self.name):
            return self._run(args, kwargs, owner)

    def _run(self, args: tuple[Any, ...], kwargs: dict[str, Any], owner: str | None) -> Any:
        attempt = 0
        while True:
            try:
                result = self.fn(*args, **kwargs)
                if owner is not None:
                    return self._generate(result, owner)
                break
            except Exception as e:
                if self._should_retry(e, attempt):
                    attempt += 1
                    continue
                raise task_error(self.name, e, _where(), format_remote(e, self.source)) from None
        wrong = not isinstance(result, (tuple, list)) or len(result) != self.num_returns
        if isinstance(self.num_returns, int) and self.num_returns > 1 and wrong:
            got = f"{len(result)} values" if isinstance(result, (tuple, list)) else type(result).__name__
            raise task_error(self.name, ValueError(
                f"task {self.name!r} has num_returns={self.num_returns} but returned {got}; return a tuple "
                f"of {self.num_returns} values or change num_returns"), _where(), None)
        return box(result)

    def _generate(self, result: Any, owner: str) -> Any:
        """Put each value a generator task yields (``generators.py``)."""
        if not inspect.isgenerator(result) and not isinstance(result, (list, tuple)):
            raise TypeError(f"task {self.name!r} has num_returns={self.num_returns!r} but returned "
                            f"{type(result).__name__}, not a generator; yield its values, or drop num_returns")
        worker = _where()
        stream = str(current_task_key(worker)) if worker is not None else None
        return generate(current_session(), result, str(self.num_returns), owner, stream, name=self.name)

    def _should_retry(self, e: Exception, attempt: int) -> bool:
        if isinstance(e, TaskError) or not self.retry_exceptions:
            return False
        if self.retries != -1 and attempt >= self.retries:
            return False
        return self.retry_exceptions is True or isinstance(e, self.retry_exceptions)  # type: ignore[arg-type]


_FUNCTIONS: dict[bytes, tuple[Callable[..., Any], Any]] = {}
_FUNCTIONS_MAX = 512


def _rebuild_runner(payload: bytes, name: str, num_returns: int | str, retries: int,
                    retry_exceptions: bool | tuple[type[BaseException], ...]) -> TaskRunner:
    cached = _FUNCTIONS.get(payload)
    if cached is None:
        if len(_FUNCTIONS) >= _FUNCTIONS_MAX:
            _FUNCTIONS.pop(next(iter(_FUNCTIONS)))
        cached = _FUNCTIONS[payload] = cloudpickle.loads(payload)
    runner = TaskRunner.__new__(TaskRunner)
    runner.fn, runner.source = cached
    runner.name, runner.num_returns, runner.retries = name, num_returns, retries
    runner.retry_exceptions = retry_exceptions
    runner._payload = payload
    return runner
