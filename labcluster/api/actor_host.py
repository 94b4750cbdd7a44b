"""The worker side of actors: a holder task keeps each actor alive (and its resources held), and an RPC
handler runs its method calls.

- The **holder** is an ordinary Dask task with the actor's resource request and the role annotation ``actor``. It
  constructs the instance in the worker process, tells the scheduler extension where the actor lives, then holds
  (``blocking.hold``, as placement-group bundles do) until ``lc.kill`` releases it. A seceded task keeps its
  resources in Dask's worker state machine, so a GPU actor keeps its GPU slot for its whole life. If the worker
  dies, Dask reschedules the holder elsewhere, and that *is* the restart (bounded by ``max_restarts``: the retry
  plugin counts deaths, the extension's ``actor_incarnate`` counts every restart).
- **Calls** come straight from the caller over Dask's RPC (``labcluster_actor_call``; no scheduler hop), in
  per-caller order. A plain actor runs them on its own thread pool (``max_concurrency`` threads). An actor with
  any ``async def`` method is an *async actor*, as in Ray: every method, plain ones too, runs on the actor's own
  event loop, so an ``asyncio.Event`` set in one method wakes another. Small results go back inside the reply;
  larger ones stay on this worker as a Dask key that the caller registers with the scheduler. Either way actor
  results are ordinary objects: they can be passed to tasks, waited on and fetched.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import os
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from time import time
from typing import Any

import cloudpickle
from dask.sizeof import sizeof
from distributed import get_worker, secede
from distributed.protocol.serialize import to_serialize

from .. import config
from ..dask_internals import bind_worker, store_on_worker
from ..diagnostics.recorder import ACTOR_CALL_TOPIC
from ..exceptions import TaskCancelledError
from ..scheduler.protocol import RELEASED
from . import output
from .blocking import wait_released
from .calls import call
from .objects import get
from .refs import ObjectRef
from .runner import Source, format_remote, task_error
from .serialization import box, unbox
from .session import worker_session

#: the actor whose method is running in this thread or coroutine (lc.get_runtime_context().get_actor_id())
current_actor: contextvars.ContextVar[str | None] = contextvars.ContextVar("labcluster_actor", default=None)
#: the call running in this thread or coroutine: its actor and its key (``running_call``)
_current_call: contextvars.ContextVar[tuple[_Hosted, str] | None] = contextvars.ContextVar("labcluster_actor_call",
                                                                                          default=None)


@dataclass
class _Hosted:
    actor_id: str
    instance: Any
    #: where the class came from, for tracebacks with source lines
    source: Source | None
    #: whether any method is ``async def``: then every call runs on the actor's event loop (Ray's async actors)
    is_async: bool
    #: the actor's ``max_concurrency`` threads (plain actors), each set up by ``_enter``
    executor: ThreadPoolExecutor | None = None
    #: per caller: the sequence number of the next call to start (calls from one caller run in order)
    next_seq: dict[str, int] = field(default_factory=dict)
    #: calls that arrived before an earlier call from the same caller: (caller, seq) -> wake-up
    early: dict[tuple[str, int], asyncio.Future[None]] = field(default_factory=dict)
    #: whether the scheduler keeps task records (then each call reports itself)
    recorded: bool = False
    #: async actors: the actor's own event loop (a thread), and the context its coroutines run in
    loop: asyncio.AbstractEventLoop | None = None
    context: contextvars.Context | None = None
    #: fetches the ObjectRef arguments of a call while earlier calls still run (``prefetch``)
    fetcher: ThreadPoolExecutor | None = None
    #: results up to this size travel back in the reply; a class sets ``_labcluster_inline_result_bytes`` to
    #: change it (Dataset stage actors: 0, their blocks stay on the worker for the next stage)
    inline_limit: int = 0
    #: calls cancelled by their caller before they started (``lc.cancel``): they never start
    cancelled: set[str] = field(default_factory=set)

    def start_loop(self, worker: Any) -> None:
        loop = self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            _enter(worker, self)
            self.context = contextvars.copy_context()  # coroutines started on this loop run in it
            ready.set()
            loop.run_forever()

        threading.Thread(target=run, name=f"actor-loop-{self.actor_id}", daemon=True).start()
        ready.wait()

    def on_loop(self, fn: Callable[[], Coroutine[Any, Any, Any]]) -> concurrent.futures.Future[Any]:
        """Run the coroutine ``fn()`` makes as a task of the actor's loop, in the actor's context."""
        assert self.loop is not None and self.context is not None
        loop, done = self.loop, concurrent.futures.Future[Any]()

        def start() -> None:
            task = loop.create_task(fn())  # copies the current context: the actor's

            def finished(t: asyncio.Task[Any]) -> None:
                if t.cancelled():
                    done.cancel()
                elif t.exception() is not None:
                    done.set_exception(t.exception())
                else:
                    done.set_result(t.result())

            task.add_done_callback(finished)

        loop.call_soon_threadsafe(start, context=self.context)
        return done

    def prefetch(self, payload: Any) -> concurrent.futures.Future[Any] | None:
        """Start fetching the call's ObjectRef arguments now, before its turn (None: it has none)."""
        args, kwargs = payload
        if self.fetcher is None or not any(isinstance(a, ObjectRef) for a in (*args, *kwargs.values())):
            return None
        return self.fetcher.submit(_resolve_refs, args, kwargs)

    def stop(self) -> None:
        if self.fetcher is not None:
            self.fetcher.shutdown(wait=False, cancel_futures=True)
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)

    async def turn(self, caller: str, seq: int) -> None:
        """Wait until every earlier call from ``caller`` has started (calls can overtake on the wire)."""
        if seq > self.next_seq.get(caller, 0):
            wake = self.early[(caller, seq)] = asyncio.get_running_loop().create_future()
            await wake

    def started(self, caller: str, seq: int) -> None:
        self.next_seq[caller] = seq + 1
        wake = self.early.pop((caller, seq + 1), None)
        if wake is not None and not wake.done():
            wake.set_result(None)


#: actors hosted in this worker process, by id (what ``labcluster_actor_call`` finds them by)
_HOSTED: dict[str, _Hosted] = {}
#: unpickled actor classes (with their source), by payload: every restart in this process reuses the class
_CLASSES: dict[bytes, tuple[Any, Source | None]] = {}


def host_actor(actor_id: str, holder: str, payload: bytes, args: tuple[Any, ...], kwargs: dict[str, Any],
               max_concurrency: int, class_name: str, origin: str | None = None) -> str:
    """The holder task: construct, publish, hold the resources until killed (or restarted in place by
    ``lc.kill(no_restart=False)``, or ended because its driver disconnected). ``origin``: where what the
    constructor prints goes (the cell that made the actor)."""
    worker = get_worker()
    client = worker.client
    if call(client, "hold", key=holder, timeout=0) == RELEASED:
        return "killed"  # killed before it ever started: never construct it
    cached = _CLASSES.get(payload)
    if cached is None:
        cached = _CLASSES[payload] = cloudpickle.loads(payload)
    cls, source = cached
    args, kwargs = _resolve_refs(args, kwargs)
    secede()  # from here on the thread is not a task slot; the task's resources stay held (blocking.hold)
    while True:
        with output.routed(origin, f"{class_name}.__init__"):
            hosted = _construct(client, worker, actor_id, cls, source, args, kwargs, max_concurrency, class_name)
        if hosted is None:
            return "out of restarts"
        owned = wait_released(client, holder)
        _HOSTED.pop(actor_id, None)
        hosted.stop()
        if not owned:
            call(client, "actor_update", actor_id=actor_id, fields={"state": "DEAD", "error": (
                "the driver that created it disconnected without lc.kill; pass lifetime='detached' to keep an "
                "actor after its driver has gone")})
            return "abandoned"
        state = call(client, "actor_get", actor_id=actor_id) or {}
        if state.get("state") != "RESTARTING":
            return "stopped"
        # lc.kill(no_restart=False): a fresh instance from the constructor, on this worker


def _construct(client: Any, worker: Any, actor_id: str, cls: Any, source: Source | None, args: tuple[Any, ...],
               kwargs: dict[str, Any], max_concurrency: int, class_name: str) -> _Hosted | None:
    """Build one incarnation of the actor and publish where it lives; None when the extension says that would be
    one restart more than ``max_restarts`` (it marks the actor DEAD)."""
    entry = call(client, "actor_incarnate", actor_id=actor_id)
    if entry["state"] == "DEAD":
        return None
    try:
        instance = cls(*args, **kwargs)
    except Exception as e:
        call(client, "actor_update", actor_id=actor_id, fields={"state": "DEAD", "error": f"{type(e).__name__}: {e}"})
        raise task_error(f"{class_name}.__init__", e, worker, format_remote(e, source)) from None
    is_async = any(inspect.iscoroutinefunction(m) for _, m in inspect.getmembers(cls, inspect.isfunction))
    extension = worker_session(worker).extension or {}
    hosted = _Hosted(actor_id, instance, source, is_async, recorded=bool(extension.get("records")),
                     inline_limit=int(getattr(cls, "_labcluster_inline_result_bytes",
                                              config.get("actors.inline-result-bytes"))))
    hosted.fetcher = ThreadPoolExecutor(2, thread_name_prefix=f"actor-{class_name}-fetch",
                                        initializer=_enter, initargs=(worker, hosted))
    if is_async:
        hosted.start_loop(worker)
    else:
        hosted.executor = ThreadPoolExecutor(max(1, max_concurrency), thread_name_prefix=f"actor-{class_name}",
                                             initializer=_enter, initargs=(worker, hosted))
    _install_handler(worker)
    _HOSTED[actor_id] = hosted
    call(client, "actor_update", actor_id=actor_id, fields={
        "state": "ALIVE", "address": worker.address, "pid": os.getpid(), "worker": str(worker.name)})
    return hosted


def _install_handler(worker: Any) -> None:
    if "labcluster_actor_call" in worker.handlers:
        return

    # handlers run on the worker's event loop, where get_worker() does not work: bind the worker
    async def labcluster_actor_call(**msg: Any) -> dict[str, Any]:
        return await _actor_call(worker, **msg)

    worker.handlers["labcluster_actor_call"] = labcluster_actor_call

    def labcluster_actor_cancel(actor: str = "", keys: tuple[str, ...] = ()) -> None:
        hosted = _HOSTED.get(actor)
        if hosted is not None:
            if len(hosted.cancelled) > 10_000:  # keys of calls that had finished already: never looked at again
                hosted.cancelled.clear()
            hosted.cancelled.update(keys)

    worker.handlers["labcluster_actor_cancel"] = labcluster_actor_cancel


def _resolve_refs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Top-level ObjectRef arguments arrive as values (Ray's rule, as for tasks)."""
    if not args and not kwargs:
        return args, kwargs
    return (tuple(get(a) if isinstance(a, ObjectRef) else unbox(a) for a in args),
            {k: get(v) if isinstance(v, ObjectRef) else unbox(v) for k, v in kwargs.items()})


def running_call() -> tuple[_Hosted, str] | None:
    """The actor call running in this thread or coroutine (its actor and key), or None."""
    return _current_call.get()


def call_cancelled(running: tuple[_Hosted, str]) -> bool:
    """Whether the actor call ``running`` (:func:`running_call`) was cancelled by its caller (``lc.cancel``) or its
    actor was stopped (killed, restarted) since it began. Python cannot stop the method's thread: a long method
    reads this (``lc.get_runtime_context().is_canceled()``) and returns early, as with Ray."""
    hosted, key = running
    return key in hosted.cancelled or _HOSTED.get(hosted.actor_id) is not hosted


def _enter(worker: Any, hosted: _Hosted) -> None:
    """Make get_worker() (lc.get_gpu_ids, nested lc.get, .remote()) and get_runtime_context().get_actor_id() work
    in the actor's threads and event loop, which are not Dask task threads."""
    bind_worker(worker)
    current_actor.set(hosted.actor_id)


class _Cancelled(Exception):
    """The call was cancelled before it started."""


def _check_cancelled(hosted: _Hosted, key: str) -> None:
    if key in hosted.cancelled:
        hosted.cancelled.discard(key)
        raise _Cancelled(key)


def _run(hosted: _Hosted, method: str, payload: Any, timing: dict[str, float],
         fetched: concurrent.futures.Future[Any] | None, origin: str | None, function: str, key: str) -> Any:
    _check_cancelled(hosted, key)  # its turn came after its caller cancelled it
    args, kwargs = fetched.result() if fetched is not None else _resolve_refs(*payload)
    timing["thread"], timing["started"] = threading.get_ident(), time()  # the method's own time, not the fetch
    token = _current_call.set((hosted, key))
    try:
        with output.routed(origin, function):  # what it prints goes to the caller's cell
            return getattr(hosted.instance, method)(*args, **kwargs)
    finally:
        _current_call.reset(token)
        timing["finished"] = time()


async def _run_async(hosted: _Hosted, method: str, payload: Any, timing: dict[str, float],
                     fetched: concurrent.futures.Future[Any] | None, origin: str | None, function: str,
                     key: str) -> Any:
    _check_cancelled(hosted, key)
    args, kwargs = await asyncio.wrap_future(fetched) if fetched is not None else _resolve_refs(*payload)
    timing["thread"], timing["started"] = threading.get_ident(), time()
    _current_call.set((hosted, key))  # in this call's own task context
    try:
        with output.routed(origin, function):
            result = getattr(hosted.instance, method)(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result
    finally:
        timing["finished"] = time()


async def _actor_call(worker: Any, actor: str = "", method: str = "", payload: Any = None, key: str = "",
                      caller: str = "", seq: int = 0, function: str = "", stage: str | None = None,
                      origin: str | None = None) -> dict[str, Any]:
    hosted = _HOSTED.get(actor)
    if hosted is None:
        return {"status": "missing"}
    payload = payload or ((), {})
    timing: dict[str, float] = {"submitted": time()}
    fetched = hosted.prefetch(payload)  # while earlier calls run
    await hosted.turn(caller, seq)  # start calls from one caller in the order they were made
    if hosted.is_async:
        running = asyncio.wrap_future(hosted.on_loop(lambda: _run_async(hosted, method, payload, timing, fetched,
                                                                         origin, function, key)))
    else:
        running = asyncio.get_running_loop().run_in_executor(hosted.executor, _run, hosted, method, payload, timing,
                                                             fetched, origin, function, key)
    hosted.started(caller, seq)
    try:
        result = box(await running)
    except _Cancelled:  # cancelled before it began
        return {"status": "cancelled"}
    except Exception as e:
        if isinstance(e, TaskCancelledError):  # it saw that it was cancelled and ended early (data.operators)
            if key in hosted.cancelled:
                return {"status": "cancelled"}
            if _HOSTED.get(actor) is not hosted:  # its actor was stopped: the caller's restart and resend rules
                return {"status": "missing"}
        error = task_error(function, e, worker, format_remote(e, hosted.source))
        if hosted.recorded:
            _record(worker, key, function, payload, timing, -1, repr(error), stage)
        return {"status": "error", "exception": to_serialize(error)}
    nbytes = sizeof(result)
    if hosted.recorded:
        _record(worker, key, function, payload, timing, nbytes, None, stage)
    if nbytes <= hosted.inline_limit:
        # small: back in the reply, like Dask's own actors; no key is made unless needed
        return {"status": "OK", "inline": True, "value": to_serialize(result), "nbytes": nbytes}
    store_on_worker(worker, key, result)
    return {"status": "OK", "inline": False, "nbytes": nbytes}


def _record(worker: Any, key: str, function: str, payload: Any, timing: dict[str, float], nbytes: int,
            error: str | None, stage: str | None) -> None:
    """Report a finished call to the scheduler's task records, as an event (no round trip). Its times go on the
    scheduler's clock, as Dask puts a task's (``scheduler_delay``, from the heartbeats): the records compare calls
    with tasks, and a worker's estimate of that offset moves by tenths of a second on a loaded machine."""
    args, kwargs = payload
    deps = [a.key for a in (*args, *kwargs.values()) if isinstance(a, ObjectRef)]
    delay = worker.scheduler_delay
    times = {k: v + delay if k in ("submitted", "started", "finished") else v for k, v in timing.items()}
    worker.log_event(ACTOR_CALL_TOPIC, {"key": key, "function": function, "deps": deps, "nbytes": nbytes,
                                        "error": error, "stage": stage, **times})
