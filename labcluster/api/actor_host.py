"""The worker side of actors: a holder task keeps each actor alive (and its resources held), and an RPC
handler runs its method calls.

- The **holder** is an ordinary Dask task with the actor's resource request. It constructs the instance
  in the worker process, records ``{address, state, incarnation}`` in the scheduler's metadata, then
  holds (``blocking.hold``, as placement-group bundles do) until ``lc.kill`` sets its Dask Event. A
  seceded task keeps its resources in Dask's worker state machine, so a GPU actor keeps its GPU slot for
  its whole life. If the worker dies, Dask reschedules
  the holder elsewhere, and that *is* the restart (bounded by ``max_restarts`` through the retry plugin).
- **Calls** come straight from the caller over Dask's RPC (``labcluster_actor_call``; no scheduler hop).
  They run on the actor's own thread pool (``max_concurrency`` threads), or on its own event loop for
  ``async def`` methods, in per-caller order. Small results go back inside the reply; larger ones stay on
  this worker as a Dask key (``Worker.update_data``) that the caller registers with the scheduler. Either
  way actor results are ordinary objects: they can be passed to tasks, waited on and fetched.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from time import time
from typing import Any

import cloudpickle
from dask.sizeof import sizeof
from distributed import Event, get_client, get_worker, secede
from distributed.protocol.serialize import to_serialize
from distributed.worker import _worker_cvar  # internal: what get_worker() reads

from ..cluster.held import ACTOR_HOLDER_PREFIX
from ..cluster.records import RECORD_OP, RECORDS_PLUGIN
from .blocking import wait_released

METADATA = "labcluster-actors"
#: results up to this size return inside the call's reply; larger ones stay on the worker as a Dask key
INLINE_BYTES = 1 << 20


@dataclass
class _Hosted:
    actor_id: str
    instance: Any
    #: the actor's ``max_concurrency`` threads, each set up by ``_enter``
    executor: ThreadPoolExecutor = field(init=False)
    #: per caller: the sequence number of the next call to start (calls from one caller run in order)
    next_seq: dict[str, int] = field(default_factory=dict)
    #: calls that arrived before an earlier call from the same caller: (caller, seq) -> wake-up
    early: dict[tuple[str, int], asyncio.Future[None]] = field(default_factory=dict)
    #: per method name: whether it is ``async def``
    is_async: dict[str, bool] = field(default_factory=dict)
    #: whether the scheduler keeps task records (then each call reports itself)
    recorded: bool = False
    #: async actors: the actor's own event loop (a thread), where its coroutine methods interleave
    loop: asyncio.AbstractEventLoop | None = None

    def event_loop(self, worker: Any) -> asyncio.AbstractEventLoop:
        if self.loop is None:
            loop = self.loop = asyncio.new_event_loop()

            def run() -> None:
                _enter(worker, self)  # coroutines copy the loop thread's context
                loop.run_forever()

            threading.Thread(target=run, name="actor-loop", daemon=True).start()
        return self.loop

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


_HOSTED: dict[str, _Hosted] = {}
#: the actor whose method is running in this thread or coroutine (lc.get_runtime_context().get_actor_id())
current_actor: contextvars.ContextVar[str | None] = contextvars.ContextVar("labcluster_actor", default=None)
_CLASSES: dict[bytes, Any] = {}


def metadata_key(actor_id: str) -> list[str]:
    return [METADATA, actor_id]


def holder_key(actor_id: str) -> str:
    """The Dask key of the actor's holder task; the actor lives while a client (its driver) holds it."""
    return f"{ACTOR_HOLDER_PREFIX}{actor_id}"


def release_event(actor_id: str) -> str:
    """The Dask Event whose setting (``lc.kill``) releases the actor's holder."""
    return f"labcluster-actor-{actor_id}"


def host_actor(actor_id: str, payload: bytes, args: tuple[Any, ...], kwargs: dict[str, Any],
               max_concurrency: int, class_name: str) -> str:
    """The holder task: construct, publish, hold the resources until killed (or restarted in place by
    ``lc.kill(no_restart=False)``, or ended because its driver disconnected)."""
    released = Event(release_event(actor_id))
    if released.is_set():
        return "killed"  # killed before it ever started: never construct it
    worker = get_worker()
    cls = _CLASSES.get(payload)
    if cls is None:
        cls = _CLASSES[payload] = cloudpickle.loads(payload)
    args, kwargs = _resolve_refs(args, kwargs)
    client = get_client()
    secede()  # from here on the thread is not a task slot; the task's resources stay held (blocking.hold)
    while True:
        hosted = _construct(client, worker, actor_id, cls, args, kwargs, max_concurrency, class_name)
        if hosted is None:
            return "out of restarts"
        owned = wait_released(released, holder_key(actor_id))
        _HOSTED.pop(actor_id, None)
        hosted.executor.shutdown(wait=False, cancel_futures=True)
        if hosted.loop is not None:
            hosted.loop.call_soon_threadsafe(hosted.loop.stop)
        state = client.get_metadata(metadata_key(actor_id), default=None) or {}
        if not owned:
            client.set_metadata(metadata_key(actor_id), {**state, "state": "DEAD", "error": (
                "the driver that created it disconnected without lc.kill; pass lifetime='detached' to keep an "
                "actor after its driver has gone")})
            return "abandoned"
        if state.get("state") != "RESTARTING":
            return "stopped"
        released.clear()  # lc.kill(no_restart=False): a fresh instance from the constructor, on this worker


def _construct(client: Any, worker: Any, actor_id: str, cls: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
               max_concurrency: int, class_name: str) -> _Hosted | None:
    """Build one incarnation of the actor and publish where it lives; None (and the actor DEAD) when that would be
    one restart more than ``max_restarts``.

    The retry plugin bounds the holder's re-runs after worker deaths by ``max_restarts``, but restarts on purpose
    (``lc.kill(no_restart=False)``) come out of the same budget, as in Ray: the incarnation counts both.
    """
    previous = client.get_metadata(metadata_key(actor_id), default=None) or {}
    incarnation = int(previous.get("incarnation", -1)) + 1
    limit = int(previous.get("max_restarts", 0) or 0)
    if incarnation > 0 and limit != -1 and incarnation > limit:
        client.set_metadata(metadata_key(actor_id), {**previous, "state": "DEAD", "error": (
            f"its worker died and it has no restarts left: max_restarts={limit}, all used (restarts with "
            f"lc.kill(no_restart=False) count too)")})
        return None
    try:
        instance = cls(*args, **kwargs)
    except Exception as e:
        client.set_metadata(metadata_key(actor_id), {**previous, "state": "DEAD", "incarnation": incarnation,
                                                     "error": f"{type(e).__name__}: {e}"})
        raise
    hosted = _Hosted(actor_id, instance, recorded=_scheduler_records(client))
    hosted.executor = ThreadPoolExecutor(max(1, max_concurrency), thread_name_prefix=f"actor-{class_name}",
                                         initializer=_enter, initargs=(worker, hosted))
    _install_handlers(worker)
    _HOSTED[actor_id] = hosted
    client.set_metadata(metadata_key(actor_id), {
        **previous, "state": "ALIVE", "address": worker.address, "incarnation": incarnation, "restarts": incarnation,
        "pid": os.getpid(), "class": class_name, "worker": worker.name,
    })
    return hosted


_records_on: bool | None = None


def _scheduler_records(client: Any) -> bool:
    """Does the scheduler keep task records (labcluster's records plugin)? Asked once per worker process."""
    global _records_on
    if _records_on is None:
        from .session import scheduler_plugins

        _records_on = RECORDS_PLUGIN in scheduler_plugins(client)
    return _records_on


def _install_handlers(worker: Any) -> None:
    if "labcluster_actor_call" in worker.handlers:
        return

    # handlers run on the worker's event loop, where get_worker() does not work: bind the worker
    async def labcluster_actor_call(comm: Any = None, **msg: Any) -> dict[str, Any]:
        return await _actor_call(worker, **msg)

    worker.handlers["labcluster_actor_call"] = labcluster_actor_call


def _resolve_refs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Top-level ObjectRef arguments arrive as values (Ray's rule, as for tasks)."""
    from .objects import get
    from .refs import ObjectRef

    if not args and not kwargs:
        return args, kwargs
    return (tuple(get(a) if isinstance(a, ObjectRef) else a for a in args),
            {k: get(v) if isinstance(v, ObjectRef) else v for k, v in kwargs.items()})


def _enter(worker: Any, hosted: _Hosted) -> None:
    """Make get_worker() (lc.get_gpu_ids, nested lc.get) and get_runtime_context().get_actor_id() work in
    the actor's threads and event loop, which are not Dask task threads."""
    _worker_cvar.set(worker)
    current_actor.set(hosted.actor_id)


def _run(hosted: _Hosted, method: str, payload: Any, timing: dict[str, float]) -> Any:
    timing["thread"], timing["started"] = threading.get_ident(), time()
    try:
        args, kwargs = _resolve_refs(*payload)
        return getattr(hosted.instance, method)(*args, **kwargs)
    finally:
        timing["finished"] = time()


async def _run_async(hosted: _Hosted, method: str, payload: Any, timing: dict[str, float]) -> Any:
    timing["thread"], timing["started"] = threading.get_ident(), time()
    try:
        args, kwargs = _resolve_refs(*payload)  # a blocking get is fine: refs are usually ready values
        return await getattr(hosted.instance, method)(*args, **kwargs)
    finally:
        timing["finished"] = time()


async def _actor_call(worker: Any, actor: str = "", method: str = "", payload: Any = None, key: str = "",
                      caller: str = "", seq: int = 0, function: str = "") -> dict[str, Any]:
    from .remote import format_task_error

    hosted = _HOSTED.get(actor)
    if hosted is None:
        return {"status": "missing"}
    payload = payload or ((), {})
    timing: dict[str, float] = {"submitted": time()}
    await hosted.turn(caller, seq)  # start calls from one caller in the order they were made
    is_async = hosted.is_async.get(method)
    if is_async is None:
        is_async = hosted.is_async[method] = inspect.iscoroutinefunction(getattr(hosted.instance, method, None))
    if is_async:
        coro = _run_async(hosted, method, payload, timing)
        running = asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, hosted.event_loop(worker)))
    else:
        running = asyncio.get_running_loop().run_in_executor(hosted.executor, _run, hosted, method, payload, timing)
    hosted.started(caller, seq)
    try:
        result = await running
    except Exception as e:
        error = format_task_error(function, e, worker.address)
        if hosted.recorded:
            _record(worker, key, function, payload, timing, -1, repr(error))
        return {"status": "error", "exception": to_serialize(error)}
    nbytes = sizeof(result)
    if hosted.recorded:
        _record(worker, key, function, payload, timing, nbytes, None)
    if nbytes <= INLINE_BYTES:  # small: back in the reply, like Dask's own actors; no key is made unless needed
        return {"status": "OK", "inline": True, "value": to_serialize(result), "nbytes": nbytes}
    worker.update_data({key: result})
    return {"status": "OK", "inline": False, "nbytes": nbytes, "type": to_serialize(type(result))}


def _record(worker: Any, key: str, function: str, payload: Any, timing: dict[str, float], nbytes: int,
            error: str | None) -> None:
    """Report a finished call to the scheduler's task records, on the worker's batched stream (no round trip)."""
    from .refs import ObjectRef

    args, kwargs = payload
    deps = [a.key for a in (*args, *kwargs.values()) if isinstance(a, ObjectRef)]
    worker.batched_stream.send({"op": RECORD_OP, "key": key, "function": function, "deps": deps, "nbytes": nbytes,
                                "error": error, **timing})
