"""labcluster's exceptions, with Ray's names where Ray has one.

::

    LabclusterError (RayError)
     ├── TaskError (RayTaskError)   a task raised; also an instance of the user's exception type
     │    └── TaskCancelledError    the object's task was cancelled with lc.cancel
     ├── GetTimeoutError            lc.get(timeout=...) ran out (also a TimeoutError); the task keeps running
     ├── WorkerCrashedError         the task's worker died more often than max_retries allowed
     ├── ActorDiedError (RayActorError)  an actor is dead (killed, failed to start, or out of restarts)
     ├── ObjectLostError            no copy of an object is left and it cannot be recomputed
     │    └── ObjectReconstructionFailedError   rebuilt from lineage more often than max_retries allows
     ├── InfeasibleResourceError    no worker can ever satisfy a resource request (also a ValueError)
     │    ├── PlacementGroupInfeasibleError   a placement group can never fit the cluster
     │    └── BundleTooSmallError   work asks for more than its placement-group bundle reserves
     ├── SerializationError         a function or argument cannot be pickled (also a TypeError)
     └── ClusterError               the cluster could not be started, reached or used
          └── WorkerStartTimeout    too few workers registered in time

Names in brackets are Ray's, for programs written against ``ray.exceptions``: the same classes.
Every message says what was expected, what arrived, and how to fix it.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from typing import Any

from .text import resources as _fmt


class LabclusterError(Exception):
    """Base class of every labcluster error.

    Errors travel between processes (raised in a task, re-raised by ``lc.get``), so they pickle by state
    rather than by re-calling ``__init__`` with the message.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_error, (type(self), self.args, dict(self.__dict__)))


def _rebuild_error(cls: type[LabclusterError], args: tuple[Any, ...], state: dict[str, Any]) -> LabclusterError:
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


class TaskError(LabclusterError):
    """A task raised an exception.

    ``lc.get`` raises a subclass of both ``TaskError`` and the user's exception type, so
    ``except ValueError`` and ``except lc.exceptions.TaskError`` both catch it, as in Ray.

    Attributes: ``cause`` (the original exception), ``function_name``, ``traceback_str`` (the remote
    traceback, as text), ``worker`` (address of the worker the task ran on), ``worker_name`` (its name, as
    ``lc.nodes()`` shows it), ``pid`` (its process id).
    """

    def __init__(
        self,
        function_name: str,
        traceback_str: str,
        cause: BaseException | None = None,
        worker: str | None = None,
        pid: int | None = None,
        worker_name: str | None = None,
    ) -> None:
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.cause = cause
        self.worker = worker
        self.pid = pid
        self.worker_name = worker_name
        Exception.__init__(self, function_name, traceback_str, cause, worker, pid)

    def __str__(self) -> str:
        where = f" on worker {self.worker_name or self.worker} (pid {self.pid})" if self.worker else ""
        return f"task {self.function_name!r} failed{where}:\n\n{self.traceback_str.rstrip()}"

    def __repr__(self) -> str:
        # short, the cause first: Dask records repr() as a task's exception_text (list_tasks shows it as "error")
        last = self.traceback_str.strip().splitlines()[-1] if self.traceback_str.strip() else "see its traceback"
        cause = f"{type(self.cause).__name__}: {self.cause}" if self.cause is not None else last
        return f"{cause} (in task {self.function_name!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_task_error, (self.function_name, self.traceback_str, self.cause, self.worker, self.pid,
                                      self.worker_name))

    def as_instanceof_cause(self) -> TaskError:
        """Return a copy whose class also derives from the cause's class (Ray's behaviour)."""
        if self.cause is None or isinstance(self.cause, TaskError):
            return self
        cls = _dual_class(type(self.cause))
        if cls is None:
            return self
        err = cls.__new__(cls)
        TaskError.__init__(err, self.function_name, self.traceback_str, self.cause, self.worker, self.pid,
                           self.worker_name)
        err.__cause__ = None
        return err


_DUAL_CLASSES: dict[type[BaseException], type[TaskError] | None] = {}


def _cause_attribute(self: TaskError, name: str) -> Any:
    """An attribute of the user's exception; not its ``__notes__`` (already in the remote traceback's text)."""
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(self.__dict__["cause"], name)


def _dual_class(cause_cls: type[BaseException]) -> type[TaskError] | None:
    """``TaskError(<cause>)``: a class deriving from TaskError and the user's class, cached per class."""
    if cause_cls not in _DUAL_CLASSES:
        try:
            cls: type[TaskError] | None = type(
                f"TaskError({cause_cls.__name__})",
                (TaskError, cause_cls),
                {
                    "__init__": TaskError.__init__,
                    "__str__": TaskError.__str__,
                    "__repr__": TaskError.__repr__,
                    "__reduce__": TaskError.__reduce__,
                    # attributes of the user's exception (e.g. err.errno, err.response) still work
                    "__getattr__": _cause_attribute,
                    "__module__": __name__,
                },
            )
        except TypeError:  # e.g. instance lay-out conflicts between builtin bases
            cls = None
        _DUAL_CLASSES[cause_cls] = cls
    return _DUAL_CLASSES[cause_cls]


def _rebuild_task_error(
    function_name: str, traceback_str: str, cause: BaseException | None, worker: str | None, pid: int | None,
    worker_name: str | None = None,
) -> TaskError:
    return TaskError(function_name, traceback_str, cause, worker, pid, worker_name).as_instanceof_cause()


class GetTimeoutError(LabclusterError, builtins.TimeoutError):
    """``lc.get`` or ``lc.wait`` gave up waiting; the tasks keep running."""

    def __init__(self, pending: int, total: int, timeout: float, fetching: bool = False) -> None:
        self.pending, self.total, self.timeout = pending, total, timeout
        if fetching:  # every object was ready; their values did not arrive from the workers holding them
            text = (f"get timed out after {timeout:g}s fetching {pending}/{total} ready object(s) from the workers "
                    "that hold them (one may be stuck, or just gone): call lc.get again, or pass a larger timeout=")
        else:
            text = (f"get timed out after {timeout:g}s with {pending}/{total} object(s) not ready; the tasks "
                    "keep running: call lc.get again, pass a larger timeout=, or lc.cancel them")
        super().__init__(text)


class TaskCancelledError(TaskError):
    """The task that produces this object was cancelled (a task error too, as Ray programs catch it)."""

    def __init__(self, key: str) -> None:
        self.key = key
        TaskError.__init__(self, key, "")

    def __str__(self) -> str:
        return f"task {self.key!r} was cancelled (lc.cancel), so its result will never exist"

    def __repr__(self) -> str:
        return f"TaskCancelledError({self.key!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (TaskCancelledError, (self.key,))


class WorkerCrashedError(LabclusterError):
    """The worker running a task died more often than the task's ``max_retries`` allows."""

    def __init__(self, key: str, detail: str) -> None:
        self.key = key
        super().__init__(
            f"task {_task_label(key)} was running on a worker that died, and it has no retries left ({detail}); "
            f"raise max_retries in @lc.remote(max_retries=...) or find why the worker dies (memory?)"
        )


def _task_label(key: str) -> str:
    """``'slow' (slow-3416d42e...)`` for a labcluster task key (``<function>-<32 hex>``); other keys as they are.

    >>> _task_label("slow-3416d42e288246469328243ce645b9e8"), _task_label("x")
    ("'slow' (slow-3416d42e288246469328243ce645b9e8)", "'x'")
    """
    name, _, tail = key.rpartition("-")
    if name and len(tail) == 32 and all(c in "0123456789abcdef" for c in tail):
        return f"{name!r} ({key})"
    return repr(key)


class ActorDiedError(LabclusterError):
    """The actor a method was called on is dead: killed, failed in its constructor, or out of restarts."""

    def __init__(self, actor: str, cause: str) -> None:
        self.actor, self.cause = actor, cause
        super().__init__(f"actor {actor} is dead: {cause}")


class ObjectLostError(LabclusterError):
    """No copy of an object remains and it cannot be rebuilt from lineage."""

    #: the usual cause: lc.put data whose only copy was on a worker that died
    PUT_LOST = ("it, or an input it needs, was created by lc.put and its only copy was on a worker that died, so "
                "there is no task to recompute it from", "put the data again, or create it inside a task so it can be "
                "rebuilt")

    #: a ref used after its session ended
    SHUT_DOWN = ("its session was shut down (lc.shutdown), which frees every object it made",
                 "objects do not outlive their session: compute it again in the new one")

    def __init__(self, key: str, reason: str = PUT_LOST[0], fix: str = PUT_LOST[1]) -> None:
        self.key, self.reason = key, reason
        super().__init__(f"object {key!r} is lost: {reason}; {fix}")


class ObjectReconstructionFailedError(ObjectLostError):
    """An object was lost with its worker more often than its task's ``max_retries`` lets it be rebuilt."""

    def __init__(self, key: str, reconstructions: int, limit: int) -> None:
        self.reconstructions, self.limit = reconstructions, limit
        super().__init__(key, f"its result was lost with a worker {reconstructions} time(s) and max_retries={limit} "
                              f"allows {limit} reconstruction(s)",
                         "raise the task's max_retries (.options(max_retries=...)), or keep fewer results on "
                         "workers that may die")


class InfeasibleResourceError(LabclusterError, ValueError):
    """No worker in the cluster can ever satisfy a task's resource request.

    The message names the shortfall (which resource, how much is missing, on which worker) and the fix for it.
    """

    def __init__(self, what: str, request: Mapping[str, float], workers: Sequence[tuple[str, Mapping[str, float]]]):
        self.request = dict(request)
        self.workers = list(workers)
        have = "; ".join(f"{name}: {_fmt(res)}" for name, res in workers) if workers else "no workers at all"
        missing, fix = shortfall(request, workers)
        super().__init__(
            f"{what} asks for {_fmt(request)}, which no worker can ever satisfy: {missing}. {fix}. The cluster has "
            f"{have}. (If your cluster autoscales, set dask.config 'labcluster.infeasible' to 'warn'.)"
        )

    @classmethod
    def because(cls, message: str, request: Mapping[str, float],
                workers: Sequence[tuple[str, Mapping[str, float]]]) -> InfeasibleResourceError:
        """One with its own ``message`` (several requests at once: a dataset's actor pools)."""
        err = cls.__new__(cls)
        err.request, err.workers = dict(request), list(workers)
        Exception.__init__(err, message)
        return err


def shortfall(request: Mapping[str, float], workers: Sequence[tuple[str, Mapping[str, float]]]) -> tuple[str, str]:
    """What is missing for ``request`` on ``workers``, and the fix: computed from the actual shortfall.

    >>> shortfall({"CPU": 1, "GPU": 4}, [("cpu-0", {"CPU": 2}), ("gpu-0", {"CPU": 1, "GPU": 1})])[0]
    'it asks for GPU: 4 but the most one worker has is 1 (gpu-0)'
    >>> shortfall({"CPU": 1, "TPU": 1}, [("cpu-0", {"CPU": 2})])[0]
    "no worker has the resource 'TPU'"
    """
    if not workers:
        return "the cluster has no workers at all", "Start workers (lc.init(), or `labcluster worker ADDRESS`)"
    names = sorted({k for _, res in workers for k in res})
    for k, amount in sorted(request.items(), key=lambda kv: kv[0] not in ("GPU",)):
        best_name, best = max(((n, float(r.get(k, 0.0))) for n, r in workers), key=lambda nb: nb[1])
        if best <= 0:
            if k == "CPU":
                return ("no worker has CPU slots", "The cluster's workers all hold GPUs, whose threads run GPU work "
                        "only: add a CPU worker (lc.WorkerGroup('cpu', nthreads=...)), or ask for num_cpus=0")
            if k == "GPU":
                return ("no worker has a GPU", "Start GPU workers: lc.init(num_gpus=1) simulates one on a machine "
                        "without GPUs; on a cluster, `labcluster worker ADDRESS --gpus sim:1`")
            return (f"no worker has the resource {k!r}", f"Start a worker that advertises it (lc.init(resources="
                    f"{{{k!r}: {amount:g}}}) or `labcluster worker ADDRESS --resources {k}={amount:g}`), or check "
                    f"its spelling: the workers have {', '.join(names)}")
        if best < amount - 1e-9:
            if k == "GPU":
                fix = (f"Ask for num_gpus={best:g} or less: a task runs on one worker, and each labcluster GPU worker "
                       "holds one GPU; spread work over GPUs with several tasks or a placement group of "
                       "{'GPU': 1} bundles")
            elif k == "CPU":
                fix = (f"Ask for num_cpus={best:g} or less, or start a worker with more threads "
                       "(lc.init(num_cpus=...), WorkerGroup(nthreads=...))")
            else:
                fix = f"Ask for {k}: {best:g} or less, or start a worker with more"
            return f"it asks for {k}: {amount:g} but the most one worker has is {best:g} ({best_name})", fix
    # each resource exists somewhere, but no one worker has all of it: the closest worker's gap
    def gap(res: Mapping[str, float]) -> dict[str, float]:
        return {k: float(res.get(k, 0.0)) for k, v in request.items() if float(res.get(k, 0.0)) < v - 1e-9}

    name, res = min(workers, key=lambda w: (len(gap(w[1])), sum(request[k] - v for k, v in gap(w[1]).items())))
    lacks = ", ".join(f"{k}: {v:g} of the {request[k]:g} asked" for k, v in gap(res).items())
    lower = ", ".join(f"num_cpus={v:g}" if k == "CPU" else f"{k}: {v:g}" for k, v in gap(res).items())
    return (f"no single worker has all of it; the closest, {name}, has {lacks}",
            f"Lower the request ({lower}) or start a worker that has {_fmt(request)}")


class PlacementGroupInfeasibleError(InfeasibleResourceError):
    """A placement group can never fit the cluster, whatever else is running."""

    _WHY = {
        "STRICT_SPREAD": "STRICT_SPREAD needs a different worker for every bundle",
        "STRICT_PACK": "STRICT_PACK needs one worker that holds every bundle at once",
        "PACK": "some bundle is bigger than every worker",
        "SPREAD": "some bundle is bigger than every worker",
    }

    def __init__(self, strategy: str, bundles: Sequence[Mapping[str, float]],
                 workers: Sequence[tuple[str, Mapping[str, float]]]) -> None:
        self.strategy, self.bundles, self.workers = strategy, [dict(b) for b in bundles], list(workers)
        self.request = {}
        have = "; ".join(f"{name}: {_fmt(res)}" for name, res in workers) if workers else "no workers at all"
        LabclusterError.__init__(
            self,
            f"placement group {strategy} with bundles {[_fmt(b) for b in bundles]} can never fit this cluster: "
            f"{self._WHY.get(strategy, 'it does not fit')}, and the cluster has {len(workers)} worker(s): {have}. "
            f"Use fewer or smaller bundles, a softer strategy (PACK/SPREAD), or more workers",
        )


class BundleTooSmallError(InfeasibleResourceError):
    """Work placed in a placement-group bundle asks for more than the bundle reserves."""

    def __init__(self, what: str, request: Mapping[str, float], bundle: Mapping[str, float], index: int,
                 group: str) -> None:
        self.request, self.bundle, self.index, self.group = dict(request), dict(bundle), index, group
        self.workers = [(f"bundle {index}", dict(bundle))]
        lacks = {k: v - bundle.get(k, 0.0) for k, v in request.items() if v > bundle.get(k, 0.0) + 1e-9}
        if "CPU" in lacks and request.get("CPU") == 1 and not bundle.get("CPU"):
            others = {k: v for k, v in request.items() if k != "CPU"}
            fix = (f"tasks and actor calls ask for num_cpus=1 unless told otherwise: pass num_cpus=0 "
                   f"(.options(num_cpus=0)) to use only the bundle's {_fmt(others)}, or reserve a CPU in the bundle "
                   f"({_fmt({**bundle, 'CPU': 1})})")
        else:
            fix = "ask for no more than the bundle reserves, or make the bundle bigger"
        LabclusterError.__init__(
            self, f"{what} asks for {_fmt(request)} but bundle {index} of placement group {group} reserves "
                  f"{_fmt(bundle)}: it lacks {_fmt(lacks)}; {fix}")


class SerializationError(LabclusterError, TypeError):
    """A function or argument cannot be pickled, so it cannot be sent to a worker."""

    def __init__(self, what: str, culprit: str, reason: str) -> None:
        self.what, self.culprit, self.reason = what, culprit, reason
        super().__init__(
            f"cannot send {what} to a worker: {culprit} cannot be pickled ({reason}). Create it inside the "
            f"task instead of capturing it, or pass something picklable (a path, a config) and open it there"
        )


class ClusterError(LabclusterError):
    """The cluster could not be started, reached or used."""


class WorkerStartTimeout(ClusterError):
    """Fewer workers than requested registered before the timeout."""

    def __init__(self, arrived: int, expected: int, timeout: float) -> None:
        self.arrived, self.expected, self.timeout = arrived, expected, timeout
        super().__init__(
            f"only {arrived}/{expected} workers arrived after {timeout:g}s; check the worker logs above, "
            f"ask for fewer workers, or raise dask.config 'labcluster.timeouts.worker-start'"
        )


def unknown_name(what: str, name: str, valid: Sequence[str], more: str = "", also: Sequence[str] = ()) -> TypeError:
    """The error for a misspelled option or keyword: what it is, the closest valid name, and every valid one
    (``more``: a note after the list, on names ``also`` valid elsewhere).

    >>> print(unknown_name("option", "num_gpu", ["num_cpus", "num_gpus", "resources"]))
    unknown option 'num_gpu' (did you mean 'num_gpus'?); valid options are: num_cpus, num_gpus, resources
    """
    import difflib

    close = difflib.get_close_matches(name, [*valid, *also], n=1, cutoff=0.6)
    guess = f" (did you mean {close[0]!r}?)" if close else ""
    return TypeError(f"unknown {what} {name!r}{guess}; valid {what}s are: {', '.join(valid)}{more and ' ' + more}")


#: Ray's names for the same classes (``ray.exceptions``)
RayError = LabclusterError
RayTaskError = TaskError
RayActorError = ActorDiedError
