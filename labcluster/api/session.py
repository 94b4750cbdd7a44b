"""The session: one Dask client, the cluster labcluster started (if any), and what labcluster keeps per client.

``lc.init()`` creates the driver's session; ``lc.shutdown()`` closes what ``init`` started and nothing else.
Inside a task, an actor method (its threads and its event loop) or anything else running in a worker process,
:func:`current_session` is that worker's session instead, around the worker's own client, so work can submit work
and ``lc.get`` its results wherever it runs.

Per-session state lives in the session, not in module globals: a module keeps what it needs per client in a
*part* (``session.part(Cls)``: one ``Cls(session)`` per session, made on first use) and a part with a ``close()``
method is closed with its session, newest first.
"""

from __future__ import annotations

import contextvars
import html
import logging
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..cluster import info as cluster_info
from ..cluster.worker_process import process_worker
from ..dask_internals import send_to_scheduler
from ..exceptions import ClusterError
from . import hooks
from .calls import PREFIX, call

logger = logging.getLogger("labcluster")

if TYPE_CHECKING:
    from distributed import Client

P = TypeVar("P")


class Session:
    """A connection to a cluster: the object ``lc.init()`` returns.

    Use it as a context manager to shut down on exit::

        with lc.init(num_cpus=2, num_gpus=1) as ctx:
            print(ctx.workers())
    """

    def __init__(self, client: Client, cluster: Any | None = None, owns_cluster: bool = False,
                 extension: dict[str, Any] | None = None, address: str | None = None,
                 dashboard_link: Callable[[], str | None] | None = None,
                 on_close: Callable[[], None] | None = None, check: Callable[[], None] | None = None,
                 in_worker: bool = False, namespace: str = "") -> None:
        self.client = client
        self.cluster = cluster
        self.owns_cluster = owns_cluster
        #: what the scheduler's labcluster extension said of itself (``labcluster_info``); None without one
        self.extension = extension
        #: whether this is a worker's session (inside tasks and actors), around the worker's own client
        self.in_worker = in_worker
        #: where named actors are looked up and created (``lc.init(namespace=...)``; "" is shared by every driver)
        self.namespace = namespace
        self._address = address or (str(client.scheduler.address) if client.scheduler is not None else "?")
        self._dashboard_link = dashboard_link
        self._on_close = on_close
        self._check = check
        self._name: str | None = None
        self._closed = False
        self._parts: dict[type, Any] = {}
        self._lock = threading.Lock()

    @property
    def name(self) -> str | None:
        """What the user calls this cluster (``%cluster start --name``): the cluster widget and the registry say it."""
        return self._name

    @name.setter
    def name(self, name: str | None) -> None:
        self._name = name
        from .registration import Registration

        registration = self._parts.get(Registration)
        if registration is not None and registration.entry is not None:
            registration.publish()

    # -- per-session parts ---------------------------------------------------------------------------------------
    def part(self, cls: type[P]) -> P:
        """This session's instance of ``cls``: ``cls(self)``, made on first use, closed with the session (newest
        first) when it has a ``close()`` method."""
        part = self._parts.get(cls)
        if part is None:
            with self._lock:
                part = self._parts.get(cls)
                if part is None:
                    part = self._parts[cls] = cls(self)  # type: ignore[call-arg]  # parts take the session
        return part

    @property
    def per_task_retries(self) -> bool:
        """Whether the scheduler applies each task's own ``max_retries`` for worker deaths (labcluster started it)."""
        return bool(self.extension and self.extension.get("retries"))

    def require_extension(self, feature: str) -> None:
        """Raise ClusterError naming ``feature`` when the scheduler has no labcluster extension."""
        if not self.extension:
            raise ClusterError(
                f"{feature} needs labcluster's scheduler extension, which the scheduler at {self.address} does not run "
                "and could not be added (is labcluster installed where the scheduler runs?); start the scheduler "
                "with `labcluster scheduler`, or install labcluster there and connect again")

    def send(self, op: str, **kwargs: Any) -> None:
        """Run the extension's ``op`` with no reply: a message on the client's batched stream, which the scheduler
        handles in order with the tasks this client submits (so a task sent after it runs after it); a blocking
        ``call`` on a scheduler whose extension does not take ``op`` that way (an older labcluster)."""
        if op in (self.extension or {}).get("stream_ops", ()):
            send_to_scheduler(self.client, {"op": PREFIX + op, **kwargs})
        else:
            call(self.client, op, **kwargs)

    # -- what the cluster has -------------------------------------------------------------------------------------
    @property
    def address(self) -> str:
        """The scheduler's address, e.g. ``tcp://127.0.0.1:8786``."""
        return self._address

    @property
    def dashboard_link(self) -> str | None:
        """The scheduler's dashboard URL, or None when it has none."""
        if self._dashboard_link is not None:
            return self._dashboard_link()
        try:
            return str(self.client.dashboard_link)
        except Exception:  # a scheduler without a dashboard
            return None

    def workers(self) -> list[cluster_info.WorkerInfo]:
        """Every worker, freshly read from the scheduler."""
        return cluster_info.workers_from_info(self.client.scheduler_info(n_workers=-1))

    def _summary(self) -> tuple[str, list[cluster_info.WorkerInfo], dict[str, float]]:
        kind = "local" if self.owns_cluster else "connected"
        if self._closed:
            return "closed", [], {}
        try:
            workers = self.workers()
        except Exception:
            return f"{kind}, unreachable", [], {}
        return kind, workers, cluster_info.total_resources(workers)

    def __repr__(self) -> str:
        kind, workers, total = self._summary()
        res = ", ".join(f"{k}: {v:g}" for k, v in sorted(cluster_info.shown(total).items()) if k != "memory")
        sim = sum(1 for w in workers if w.simulated)
        sim_note = f", {sim} simulated GPU(s)" if sim else ""
        return f"<labcluster.Session {kind} {self.address} workers={len(workers)} {{{res}}}{sim_note}>"

    def _repr_html_(self) -> str:
        kind, workers, total = self._summary()
        res = ", ".join(f"{k}: {v:g}" for k, v in sorted(cluster_info.shown(total).items()) if k != "memory")
        link = self.dashboard_link if not self._closed else None
        dash = f" &middot; <a href='{html.escape(link)}' target='_blank'>dashboard</a>" if link else ""
        return (
            f"<div><strong>labcluster session</strong> ({kind}) <code>{html.escape(self.address)}</code>{dash}"
            f"<br>{len(workers)} workers &middot; {html.escape(res)}"
            f"{cluster_info.workers_html(workers)}</div>"
        )

    def scale(self, n: int, group: str = "cpu") -> str:
        """Grow or shrink the worker group ``group`` of the cluster ``lc.init()`` started to ``n`` workers; returns
        what changed, in words, once the scheduler lists the new workers (removed ones retire gracefully: Dask
        moves their results to the workers left).

        >>> ctx.scale(2)                                 # doctest: +SKIP
        "labcluster: worker group 'cpu' has 2 workers (started cpu-1)"
        """
        from ..cluster.scaling import describe
        from .calls import call

        if not self.owns_cluster:
            raise ValueError("this session is connected to a cluster it did not start: scale it where it runs "
                             "(its Dask cluster object's scale(), or your cluster manager)")
        result = call(self.client, "scale", group=group, n=int(n))
        if result is None:
            raise ValueError("this cluster's scheduler cannot scale its groups (it was not started by lc.init)")
        if "error" in result:
            raise (TimeoutError if result.get("type") == "TimeoutError" else ValueError)(result["error"])
        return describe(result)

    # -- lifecycle -------------------------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Disconnect; close the cluster too if this session started it. Parts close first, newest first."""
        if self._closed:
            return
        self._closed = True
        for part in reversed(list(self._parts.values())):
            close = getattr(part, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # one part failing must not keep the cluster running
                    logger.exception("closing %s failed", type(part).__name__)
        if self._on_close is not None:
            self._on_close()
        else:
            self.client.close(timeout=10)

    def check(self) -> None:
        """Raise ClusterError when this session can no longer work, saying why (cheap: every API call runs it)."""
        if self._check is not None and not self._closed:
            self._check()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        if self is _driver.session:
            shutdown()
        else:
            self.close()


def worker_or_driver_session() -> Session | None:
    """The session for the calling context if there is one: the worker's in worker code, else the driver's."""
    worker = current_worker()
    return worker_session(worker) if worker is not None else _driver.session


class _Driver:
    """The driver process's session (lc.init), behind a lock."""

    def __init__(self) -> None:
        self.lock: threading.RLock = threading.RLock()
        self.session: Session | None = None


_driver = _Driver()
#: per worker (by id): the session around that worker's own client, for work running in a worker process
_worker_sessions: dict[str, Session] = {}
_worker_sessions_lock = threading.Lock()
def current_worker() -> Any:
    """The worker whose code is running here (a task, an actor's thread or event loop, a worker process), or None."""
    worker_module = sys.modules.get("distributed.worker")
    if worker_module is None:  # distributed is not even imported here (lc.init launching): no worker can be here
        return None
    try:
        return worker_module.get_worker()
    except ValueError:  # not a Dask task's context; in a worker process of its own, that process's worker
        return process_worker()


def in_task() -> bool:
    """True when called from code running on a worker (a task, an actor method, a worker process)."""
    return current_worker() is not None


def worker_session(worker: Any) -> Session:
    """The session around ``worker``'s own client (made on first use, in a thread that may block)."""
    session = _worker_sessions.get(worker.id)
    if session is None:
        with _worker_sessions_lock:
            session = _worker_sessions.get(worker.id)
            if session is None:
                client = worker.client
                session = _worker_sessions[worker.id] = Session(client, extension=extension_info(client),
                                                                in_worker=True)
    return session


def driver_lock() -> threading.RLock:
    """Held while the driver's session is made or ended."""
    return _driver.lock


def driver_session() -> Session | None:
    """The driver's session if there is one (``lc.init`` ran and was not shut down)."""
    return _driver.session


def session_of(client: Any) -> Session | None:
    """The session whose client ``client`` is, if it is this process's driver session or a worker's."""
    session = _driver.session
    if session is not None and session.client is client:
        return session
    return next((s for s in list(_worker_sessions.values()) if s.client is client), None)


def set_driver_session(session: Session) -> None:
    with _driver.lock:
        if _driver.session is not None:
            raise RuntimeError("a session is already open")
        _driver.session = session
    hooks.session_opened(session)


def shutdown() -> None:
    """Disconnect and stop what ``init`` started (a connected cluster keeps running). Safe to call twice."""
    with _driver.lock:
        session, _driver.session = _driver.session, None
    if session is not None:
        session.close()


def is_initialized() -> bool:
    """True if ``lc.init()`` ran in this process (and was not shut down), or inside a task."""
    return _driver.session is not None or in_task()


def extension_info(client: Client) -> dict[str, Any] | None:
    """What the scheduler's labcluster extension says of itself, or None if it runs none."""
    try:
        info = call(client, "info")
    except Exception:  # an old scheduler that refuses unknown ops outright
        return None
    return dict(info) if isinstance(info, dict) else None


def ensure_extension(client: Client) -> dict[str, Any] | None:
    """The extension's info, adding the extension to a scheduler that has none (``lc.init(address=...)``); None,
    with a warning that says what will not work, where it cannot be added."""
    info = extension_info(client)
    if info is None:
        info = _add_extension(client)
    if info is not None:
        _check_version(client, info)
    return info


def _add_extension(client: Client) -> dict[str, Any] | None:
    """Register the extension with a scheduler that runs none; its info, or None with a warning."""
    from ..scheduler.extension import LabclusterSchedulerPlugin

    try:
        client.register_plugin(LabclusterSchedulerPlugin.configured(retries=False, stream_interval=None))
    except Exception as e:  # labcluster is not installed there, or the scheduler refuses pickled plugins
        logger.warning("the scheduler at %s runs no labcluster extension and it could not be added (%s: %s): actors, "
                       "placement groups, task records, lineage and timelines will not work; install labcluster "
                       "where the scheduler runs, or start it with `labcluster scheduler`",
                       getattr(client.scheduler, "address", "?"), type(e).__name__, e)
        return None
    return extension_info(client)  # the plugin went by reference: the scheduler's own labcluster runs it


def _check_version(client: Client, info: dict[str, Any]) -> None:
    """Warn where the scheduler's labcluster is not this driver's: the two speak one protocol, which changes between
    versions (a call the other side does not know fails where it is made, far from the cause)."""
    from .. import __version__

    if info.get("version") != __version__:
        logger.warning("the scheduler at %s runs labcluster %s and this process %s: calls between them may fail; "
                       "install the same labcluster version where the scheduler runs (and on its workers)",
                       getattr(client.scheduler, "address", "?"), info.get("version", "unknown"), __version__)


class _RefetchNoise(logging.Filter):
    """Drop the client's "Couldn't gather N keys, rescheduling (every key)" warning: it follows a worker's death,
    which the notice has told in one line, and labcluster's fetch waits for the rebuilt results by itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Couldn't gather")


def say(text: str) -> None:
    """One line for the user, ``labcluster: <text>`` on stdout, from any thread (the client's event loop too). In a
    fresh context: a notebook kernel (ipykernel 7 keeps each cell's output target in a context variable) then
    shows it in the cell running now, not in the cell that started the client."""
    contextvars.Context().run(print, f"labcluster: {text}", file=sys.stdout, flush=True)


def show_notices(client: Client) -> None:
    """Print the extension's notices for a user (``protocol.NOTICES``: a worker died, what it means for the work) as
    one line each, on stdout: visible in a notebook cell, not painted as an error. Dask's own log records of a
    cluster labcluster started go to its log file instead."""
    from ..scheduler.protocol import NOTICES

    log = logging.getLogger("distributed.client")
    if not any(isinstance(f, _RefetchNoise) for f in log.filters):
        log.addFilter(_RefetchNoise())

    def show(event: Any) -> None:
        _, msg = event
        text = msg.get("text") if isinstance(msg, dict) else None
        if text:
            say(text)

    client.subscribe_topic(NOTICES, show)


def dashboard_port(client: Client) -> int | None:
    port = client.scheduler_info(n_workers=0).get("services", {}).get("dashboard")
    return int(port) if port else None
