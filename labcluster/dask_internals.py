"""The one seam to Dask's internals: every private or undocumented part of distributed and dask labcluster uses.

Everything else in labcluster uses public API only (``tests/test_dask_internals.py`` checks both: each adapter
against the installed distributed, and that no other module touches a private name of a Dask object). Widening
the ``distributed`` pin in ``pyproject.toml`` means reading this file and running that test.

Each adapter says what it touches, why no public API serves, and the upstream issue where there is one.

============================  ==========================================================================
adapter                       touches
============================  ==========================================================================
set_stream_interval           ``BatchedSend.interval`` of a client, scheduler or worker stream
client_stream                 ``Client.scheduler_comm`` (the client's BatchedSend)
worker_stream                 ``Worker.batched_stream``
scheduler_streams             ``Scheduler.stream_comms`` and ``Scheduler.client_comms``
future_finished               ``Future._state.wait()`` (an awaitable that does not fetch the result)
send_to_scheduler             ``Client._send_to_scheduler`` (a message on the client's batched stream)
desire_keys                   the same, with Dask's own ``client-desires-keys``
register_worker_data          the scheduler's ``update_data`` handler, with this client as holder
store_on_worker               ``Worker.update_data`` (put a value into the worker's memory under a key)
bind_worker                   ``distributed.worker._worker_cvar`` (what ``get_worker()`` reads)
task_resources                ``Worker.state.tasks[key].resource_restrictions`` (what a running task asked for)
lend_resources                the same, and ``Worker.state.available_resources``
free_resources                ``Worker.state.available_resources``
task_cancelled                ``Worker.state.tasks[key].state`` ("cancelled": the scheduler dropped a running task)
fail_task_with                ``TaskState.run_spec`` replaced by a ``dask._task_spec.Task``
move_task                     the work-stealing extension's ``move_task_request`` and ``in_flight``
inherit_config_env            the ``DASK_INTERNAL_INHERIT_CONFIG`` environment variable
pre_spawn_environ             ``distributed/distributed.yaml`` read as a file (``distributed.nanny.pre-spawn-environ``)
keep_forkserver_preload       ``distributed.utils._forkserver_preload_set``
worker_rpc                    ``Client.rpc`` (the client's connection pool to any server)
add_dashboard_pages           ``Scheduler.http_application``, ``distributed.dashboard.core.BokehApplication`` and the
                              ``_applications`` of the scheduler's BokehTornado (what ``individual-plots.json`` lists)
============================  ==========================================================================

One subclass lives outside this file, as a subclass must: ``cluster/spec_cluster.py``'s ``KeepingSpecCluster``
overrides ``SpecCluster._update_worker_status`` (calling ``Cluster._update_worker_status``) and closes Nannies
through ``SpecCluster._futures`` and ``.workers`` (dask/distributed#3088). ``tests/test_dask_internals.py`` checks
those names; ``tests/test_nanny_restarts.py`` checks the behaviour.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any

#: the distributed releases this file was checked against (tests/test_dask_internals.py runs every adapter)
CHECKED_WITH = ("2026.8",)


# -- streams -----------------------------------------------------------------------------------------------------

def set_stream_interval(comm: Any, seconds: float) -> None:
    """Set how long a ``BatchedSend`` holds messages back to batch them.

    Dask hard-codes it per stream (client->scheduler 10 ms, scheduler->worker 5 ms, the others 2 ms) and offers
    no setting; on one machine it dominates a sync round trip (cluster/tuning.py has the measurements). The
    message log, the other stream tunable, has a public config key (``distributed.admin.low-level-log-length``).
    """
    if hasattr(comm, "interval"):
        comm.interval = seconds


def client_stream(client: Any) -> Any:
    """The client's batched stream to the scheduler (created on connect), or None. Undocumented attribute."""
    return getattr(client, "scheduler_comm", None)


def worker_stream(worker: Any) -> Any:
    """The worker's batched stream to the scheduler. Undocumented attribute."""
    return getattr(worker, "batched_stream", None)


def scheduler_streams(scheduler: Any) -> Iterator[Any]:
    """The scheduler's batched streams to every worker and client. Undocumented attributes."""
    yield from getattr(scheduler, "stream_comms", {}).values()
    yield from getattr(scheduler, "client_comms", {}).values()


# -- futures -----------------------------------------------------------------------------------------------------

def future_finished(future: Any) -> Awaitable[None]:
    """An awaitable, on the client's event loop, that returns once ``future`` is done (finished, erred, cancelled)
    without fetching its result.

    Public waits do not fit: awaiting the future fetches the data, and ``distributed.wait`` builds and cancels a
    waiter per future per call (labcluster waits on thousands of refs in short steps, see api/objects.py).
    """
    state: Any = future._state
    wait: Awaitable[None] = state.wait()
    return wait


def send_to_scheduler(client: Any, msg: dict[str, Any]) -> None:
    """Put ``msg`` (``{"op": ..., ...}``) on the client's batched stream to the scheduler, after what the client sent
    before it (task submissions too) and with no reply. How Dask's own client sends its messages; undocumented.
    Thread-safe: it goes through the client's event loop."""
    client._send_to_scheduler(msg)


def desire_keys(client: Any, keys: Iterable[str]) -> None:
    """Tell the scheduler that ``client`` holds ``keys`` it did not submit (a ref that arrived inside a result or
    an argument). This is how Dask itself subscribes a client to such keys (``fire_and_forget``, reconnects);
    there is no public call. Thread-safe only on the client's event loop or its own thread."""
    send_to_scheduler(client, {"op": "client-desires-keys", "keys": list(keys)})


async def register_worker_data(client: Any, key: str, address: str, nbytes: int) -> None:
    """Make ``key``, which a worker stored itself (``Worker.update_data``: an actor call's large result), a key the
    scheduler knows to be on ``address`` and that ``client`` holds. ``Client.scatter`` does the same with data it
    sends; there is no public call for data that is already there."""
    await client.scheduler.update_data(who_has={key: [address]}, nbytes={key: nbytes}, client=str(client.id))


def store_on_worker(worker: Any, key: str, value: Any) -> None:
    """Put ``value`` into ``worker``'s memory as ``key`` (an actor call's large result, which stays where it was
    made). ``Worker.update_data`` is the handler ``scatter`` uses; it is not documented as API. Call on the worker's
    event loop; then :func:`register_worker_data` tells the scheduler."""
    worker.update_data({key: value})


def worker_rpc(client: Any, address: str) -> Any:
    """An RPC handle to the server at ``address`` through the client's connection pool (``Client.rpc``): how
    labcluster calls an actor's worker directly, with no scheduler hop. The attribute is undocumented."""
    return client.rpc(address)


# -- workers -----------------------------------------------------------------------------------------------------

def bind_worker(worker: Any) -> None:
    """Make ``get_worker()`` return ``worker`` in the calling thread or coroutine context.

    Dask sets this context variable only around the tasks it runs; an actor's own threads and event loop are not
    Dask tasks, and nested ``lc.get``, ``lc.get_gpu_ids()`` and ``.remote()`` need the worker there.
    """
    from distributed.worker import _worker_cvar

    _worker_cvar.set(worker)


def task_resources(worker: Any, key: Any) -> dict[str, float]:
    """The resources the task ``key`` asked for, as the worker's state machine holds them (``{}`` if unknown).
    ``get_runtime_context().get_assigned_resources()`` reads it; Dask has no public call for it."""
    ts = worker.state.tasks.get(key) if key is not None else None
    return {str(k): float(v) for k, v in (ts.resource_restrictions or {}).items()} if ts is not None else {}


def lend_resources(worker: Any, key: Any, sign: int) -> dict[str, float]:
    """Give a running task's resource slots back to the worker's pool (``sign=+1``) or take them again (``-1``);
    returns what was moved. Call on the worker's event loop.

    Ray releases a task's CPU while it blocks in ``ray.get``, so a task can wait for its own children on a one-slot
    worker. Dask's ``secede()`` frees the thread but keeps the slots (dask/distributed#4942 is the closest issue).
    """
    restrictions = task_resources(worker, key)
    available = worker.state.available_resources
    for name, amount in restrictions.items():
        if name in available:
            available[name] += sign * amount
    return restrictions


def task_cancelled(worker: Any, key: Any) -> bool:
    """Whether the task ``key``, running on ``worker``, was cancelled: the scheduler let go of it (``lc.cancel``, or
    no ref left) while it runs. Dask keeps running the thread and has no public flag for the task to read
    (``get_runtime_context().is_canceled()`` reads this)."""
    ts = worker.state.tasks.get(key) if key is not None else None
    return ts is None or ts.state in ("cancelled", "released", "forgotten")


def free_resources(worker: Any) -> dict[str, float]:
    """What the worker's state machine has free now, which is what gates its tasks. The scheduler's own count
    forgets seceded tasks (actor and bundle holders), which still hold theirs on the worker."""
    return {str(k): float(v) for k, v in worker.state.available_resources.items()}


# -- the scheduler -----------------------------------------------------------------------------------------------

def fail_task_with(ts: Any, function: Any, *args: Any) -> None:
    """Make the scheduler's task ``ts`` run ``function(*args)`` instead of its own code, so that it fails through
    Dask's normal error path, on a live worker, with labcluster's error (a task past its ``max_retries``).

    Dask has no public way to fail a task from a plugin (``Scheduler.transitions`` to "erred" needs a worker's
    error report). Run specs are ``dask._task_spec.Task`` objects since dask 2024.12.
    """
    from dask._task_spec import Task

    ts.run_spec = Task(ts.key, function, *args)


def move_task(scheduler: Any, ts: Any, victim: Any, thief: Any) -> bool:
    """Ask the work-stealing extension to move a queued task from worker ``victim`` to ``thief`` (the victim
    confirms that it has not started). Returns False when stealing is off or a move of ``ts`` is already under way.

    Dask moves tasks only by its own cost model; a task queued behind an actor that holds its worker's GPU for
    good never looks worth moving to it (cluster/spill.py). ``move_task_request`` and ``in_flight`` are the
    extension's internals.
    """
    stealing = scheduler.extensions.get("stealing")
    if stealing is None or ts in stealing.in_flight:
        return False
    stealing.move_task_request(ts, victim, thief)
    return True


# -- processes ---------------------------------------------------------------------------------------------------

def inherit_config_env(config: Mapping[str, Any]) -> dict[str, str]:
    """Environment variables that give a child Python process this Dask config, as a Nanny gives its worker
    (distributed reads ``DASK_INTERNAL_INHERIT_CONFIG`` at import; ``dask.config.serialize`` is public)."""
    import dask.config

    return {"DASK_INTERNAL_INHERIT_CONFIG": dask.config.serialize(dict(config))}


def pre_spawn_environ(config: Mapping[str, Any]) -> dict[str, str]:
    """The environment a worker process must start with (``distributed.nanny.pre-spawn-environ``: malloc's trim
    threshold, one BLAS/OpenMP thread), for a process that is about to start a forkserver, before it imports
    distributed.

    A Nanny sets these in its own environment just before it spawns a worker. A worker forked from a forkserver
    gets the forkserver's environment instead (Dask's Nanny docstring says to set them where the cluster starts),
    so the head's launcher sets them, as the Nanny would, in the environment the head starts with: its forkserver
    is a fork of it. ``config`` is this process's Dask config, which lacks distributed's defaults until distributed
    is imported: those are read from distributed's own YAML file, found without importing the package, and
    ``config``'s overrides win. ``PYTHONHASHSEED`` follows the Nanny's rule (6640 unless set to something other
    than "0").
    """
    import importlib.util
    import os

    import yaml

    spec = importlib.util.find_spec("distributed")
    origin = spec.origin if spec is not None else None
    defaults: dict[str, Any] = {}
    if origin:
        with open(os.path.join(os.path.dirname(origin), "distributed.yaml")) as f:
            defaults = dict(yaml.safe_load(f)["distributed"]["nanny"]["pre-spawn-environ"])
    override = config.get("distributed", {}).get("nanny", {}).get("pre-spawn-environ") or {}
    env = {k: str(v) for k, v in {**defaults, **override}.items() if v is not None}
    env = {k: os.environ.get(k, v) for k, v in env.items()}  # the environment wins, as in the Nanny
    if env.get("PYTHONHASHSEED") in (None, "0"):
        env["PYTHONHASHSEED"] = "6640"
    return env


def keep_forkserver_preload() -> None:
    """Stop distributed from choosing the forkserver's preload modules.

    The first time a Nanny starts a worker with ``multiprocessing-method: forkserver``, distributed imports numpy,
    pandas and lz4 into the Nanny's process to name them as the forkserver's preload (``utils.get_mp_context``).
    The head forks its forkserver from itself once it has imported what a labcluster worker needs
    (``cluster/forkserver.py``); importing pandas into the head on top would hold the first worker back by ~0.3 s.
    No setting exists for it.
    """
    import distributed.utils

    distributed.utils._forkserver_preload_set = True


# -- the dashboard -----------------------------------------------------------------------------------------------

def add_dashboard_pages(scheduler: Any, pages: Mapping[str, Callable[[Any], None]]) -> list[str]:
    """Serve bokeh pages (route -> function filling a ``bokeh.document.Document``) from the scheduler's own dashboard
    server, listed in its ``/individual-plots.json``. Returns the routes added: none when the scheduler has no
    dashboard (``dashboard_address=None``, or bokeh missing) or already serves them (a plugin registered again).

    distributed builds its bokeh server once, in ``Scheduler.__init__`` (``dashboard/scheduler.py: connect``), from a
    module-level table; a plugin starts later, and on a remote scheduler long after. No API adds pages then.
    So, as ``connect`` does for distributed's own pages: a second ``BokehTornado`` built by distributed's
    ``BokehApplication`` (same prefix and websocket-origin settings), added with ``http_application.add_application``
    (the routing application asks each added application in turn) and started. ``individual-plots.json``
    (``http/scheduler/info.py``) lists only the first ``BokehTornado``'s ``app_paths``, which are the keys of its
    private ``_applications``: our pages' application contexts are entered there too, for the listing only (that
    server then also runs their no-op unload hooks and idle-session clean-up, as ours does).
    """
    from bokeh.server.tornado import BokehTornado
    from distributed.dashboard.core import BokehApplication
    from tornado.ioloop import IOLoop

    http = getattr(scheduler, "http_application", None)
    servers = [app for app in getattr(http, "applications", ()) if isinstance(app, BokehTornado)]
    if http is None or not servers:
        return []
    primary = servers[0]
    new = {route: page for route, page in pages.items() if route not in primary.app_paths}
    if not new:
        return []

    def doc_function(page: Callable[[Any], None]) -> Callable[[Any, Any, Any], None]:
        return lambda server, extra, doc: page(doc)  # BokehApplication passes (server, template extras, doc)

    ours = BokehApplication({route: doc_function(page) for route, page in new.items()}, scheduler,
                            prefix=primary.prefix)
    http.add_application(ours)
    ours.initialize(IOLoop.current())
    ours.start()
    contexts: dict[str, Any] = primary._applications  # type: ignore[assignment]  # declared a Mapping; a dict
    contexts.update(ours.applications)
    return sorted(new)
