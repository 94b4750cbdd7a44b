"""``lc.init()``: start a local cluster or connect to one; and the current session, starting a default one on first use.

A local cluster runs in a head process of its own (``cluster/head.py``): Dask's scheduler with labcluster's
extension, and a Nanny per worker. ``init`` launches it before this process imports distributed, so the two
imports run side by side, then connects to it as a client. ``processes=False`` instead runs the scheduler and
thread workers in this process (``cluster/local.py``): the fastest to start, for tests and small experiments.

This module imports no Dask at import time (distributed is imported once the head is on its way).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import logging
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .. import config
from ..cluster.groups import WorkerGroup, default_groups, pin_real_gpus
from ..cluster.info import total_resources
from ..cluster.launcher import Head
from ..cluster.tuning import dask_settings, local_interval, local_settings, tune
from ..dask_internals import client_stream
from ..exceptions import ClusterError, WorkerStartTimeout, unknown_name
from .boundary import entry
from .registration import Registration
from .session import (
    Session,
    current_worker,
    dashboard_port,
    driver_lock,
    driver_session,
    ensure_extension,
    set_driver_session,
    show_notices,
    shutdown,
    worker_session,
)

if TYPE_CHECKING:
    from distributed import Client

logger = logging.getLogger("labcluster")

#: what the first task and its ``get`` import, imported while the head process starts (by name: they import this)
FIRST_USE = ("labcluster.api.remote", "labcluster.api.objects")

_INIT_KEYWORDS = ("address", "cluster", "workers", "num_cpus", "num_gpus", "resources", "simulate_gpus",
                  "processes", "host", "dashboard_address", "include_dashboard", "security", "namespace",
                  "ignore_reinit_error", "timeout")


@entry
def init(
    address: str | None = None,
    *,
    cluster: Any | None = None,
    workers: Sequence[WorkerGroup] | None = None,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    resources: Mapping[str, float] | None = None,
    simulate_gpus: int | None = None,
    processes: bool | None = None,
    host: str | None = None,
    dashboard_address: str | None = None,
    include_dashboard: bool = True,
    security: Any | None = None,
    namespace: str | None = None,
    ignore_reinit_error: bool = False,
    timeout: float | None = None,
    **unknown: Any,
) -> Session:
    """Start a local heterogeneous cluster, or connect to one; returns the :class:`Session`.

    - ``lc.init()``: a CPU worker sized to this machine plus one GPU worker per GPU NVML finds
      (none without GPUs, unless ``simulate_gpus=N``).
    - ``lc.init(num_cpus=4, num_gpus=2, resources={"special": 1})``: Ray's keywords; GPUs the
      machine lacks are simulated (a GPU slot, labelled simulated everywhere).
    - ``lc.init(workers=[lc.WorkerGroup("cpu", n=2), lc.WorkerGroup("gpu", resources={"GPU": 1})])``.
    - ``lc.init("tcp://10.0.0.5:8786")`` or ``lc.init(cluster=any_dask_cluster)``: connect; ``shutdown``
      then leaves that cluster running.

    A local cluster runs in a process of its own, out of reach of a notebook's interrupt: Dask's scheduler, and a
    Nanny per worker process. ``processes=False`` runs thread workers, with the scheduler, in this process.
    ``namespace`` scopes the names of named actors (default "": shared by every driver of the cluster).

    >>> import labcluster as lc
    >>> with lc.init(num_cpus=2, processes=False) as ctx:
    ...     lc.cluster_resources()["CPU"]
    2.0
    """
    if unknown:
        raise unknown_name("lc.init() keyword", sorted(unknown)[0], _INIT_KEYWORDS)
    with driver_lock():
        existing = driver_session()
        if existing is not None:
            if ignore_reinit_error:
                return existing
            raise RuntimeError("lc.init() was already called in this process; call lc.shutdown() first, or "
                               "pass ignore_reinit_error=True to reuse the running session")
        if address is not None and cluster is not None:
            raise ValueError("pass address= or cluster=, not both")
        remote = address is not None or cluster is not None
        local_only = {"workers": workers, "num_cpus": num_cpus, "num_gpus": num_gpus, "resources": resources,
                      "simulate_gpus": simulate_gpus, "processes": processes}
        given = sorted(k for k, v in local_only.items() if v is not None)
        if remote and given:
            raise ValueError(f"{', '.join(given)} describe a local cluster; they cannot be used with "
                             f"address= or cluster= (size a remote cluster where it runs)")
        if workers is not None and any(v is not None for v in (num_cpus, num_gpus, resources, simulate_gpus)):
            raise ValueError("pass workers= or num_cpus/num_gpus/resources/simulate_gpus, not both")
        if remote:
            session = _connect(address, cluster, security, timeout)
        else:
            groups = list(workers) if workers is not None else default_groups(
                num_cpus, num_gpus, resources, simulate_gpus)
            processes = bool(config.get("local.processes")) if processes is None else processes
            host = host or str(config.get("local.host"))
            # no bokeh server when include_dashboard is False: saves ~0.35 s of start-up
            dashboard = (dashboard_address or str(config.get("local.dashboard-address"))) if include_dashboard else None
            wait = timeout if timeout is not None else config.seconds("timeouts.worker-start")
            start = _start_head if processes else _start_in_process
            session = start(groups, host, dashboard, wait)
        session.namespace = namespace or ""
        if session.owns_cluster:
            session.part(Registration).publish()
        set_driver_session(session)
        return session


def _connect(address: str | None, cluster: Any | None, security: Any | None, timeout: float | None) -> Session:
    from distributed import Client

    timeout = timeout if timeout is not None else config.seconds("timeouts.connect")
    target = cluster if cluster is not None else address
    settings = _Settings(dask_settings())
    try:
        client = Client(target, timeout=timeout, security=security)
    except (OSError, TimeoutError) as e:
        settings.leave()
        raise ClusterError(f"could not reach a Dask scheduler at {address!r} within {timeout:g}s ({e}); "
                           f"check the address (e.g. 'tcp://127.0.0.1:8786'), that `labcluster scheduler` "
                           f"or `dask scheduler` runs there, and any TLS settings (security=)") from e
    extension = ensure_extension(client)
    if extension:
        show_notices(client)

    def close() -> None:
        try:
            client.close(timeout=10)
        finally:
            settings.leave()

    return Session(client, cluster, owns_cluster=False, extension=extension, on_close=close)


class _Settings:
    """``dask.config.set(values)`` for as long as a session lasts: entered now, left by :meth:`leave`."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        import dask.config

        self._ctx = dask.config.set(dict(values))

    def leave(self) -> None:
        self._ctx.__exit__(None, None, None)


def _start_head(groups: list[WorkerGroup], host: str, dashboard: str | None, wait: float) -> Session:
    """The cluster in a head process of its own (``cluster/head.py``), this process its client."""
    groups = pin_real_gpus(groups)  # real GPUs: one per worker, by UUID
    head = Head(groups, host=host, dashboard_address=dashboard)
    head.start()
    settings: _Settings | None = None
    client = None
    try:
        from distributed import Client  # the head imports distributed meanwhile: side by side, not one after the other

        for module in FIRST_USE:  # while the head is still importing: a core is free
            importlib.import_module(module)
        settings = _Settings(local_settings())
        address = head.wait_for("scheduler", wait)
        client = Client(address, direct_to_workers=bool(config.get("local.direct-to-workers")), timeout=wait)
        tune(client_stream(client), local_interval())
        head.wait_for("workers", wait)
        _wait_for_workers(client, groups, wait)
        extension = ensure_extension(client)
        show_notices(client)
    except BaseException:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close(timeout=5)
        head.close()
        if settings is not None:
            settings.leave()
        raise
    local = _LocalHead(client, head, settings)
    return Session(client, head, owns_cluster=True, extension=extension, address=address,
                   dashboard_link=_dashboard_link(client, host, dashboard), on_close=local.close, check=local.check)


def _start_in_process(groups: list[WorkerGroup], host: str, dashboard: str | None, wait: float) -> Session:
    """Thread workers and the scheduler in this process (``processes=False``)."""
    from distributed import Client

    from ..cluster.local import in_process_address, start_in_process

    settings = _Settings(local_settings())
    cluster = None
    try:
        with warnings.catch_warnings():  # a busy dashboard port falls back to a free one: the session's repr says it
            warnings.filterwarnings("ignore", message=".*already in use", category=UserWarning)
            cluster = start_in_process(groups, dashboard_address=dashboard)
        client = Client(in_process_address(cluster) or cluster)
        tune(client_stream(client), local_interval())
        _wait_for_workers(client, groups, wait)
        extension = ensure_extension(client)
    except BaseException:
        if cluster is not None:
            cluster.close(timeout=10)
        settings.leave()
        raise

    def close() -> None:
        try:
            client.close(timeout=10)
        finally:
            try:
                cluster.close(timeout=20)
            finally:
                settings.leave()

    return Session(client, cluster, owns_cluster=True, extension=extension, address=str(cluster.scheduler_address),
                   dashboard_link=_dashboard_link(client, host, dashboard), on_close=close)


def _wait_for_workers(client: Client, groups: Sequence[WorkerGroup], wait: float) -> None:
    expected = sum(g.n for g in groups)
    try:
        client.wait_for_workers(expected, timeout=wait)
    except TimeoutError as e:
        arrived = len(client.scheduler_info(n_workers=-1)["workers"])
        raise WorkerStartTimeout(arrived, expected, wait) from e


def _dashboard_link(client: Client, host: str, dashboard: str | None) -> Any:
    def link() -> str | None:
        # built from where it binds: Dask derives it from the scheduler's address, which for in-process
        # clusters is the machine's IP, not the loopback the dashboard listens on
        port = dashboard_port(client) if dashboard is not None else None
        return f"http://{host}:{port}/status" if port else None

    return link


class _LocalHead:
    """What a session whose cluster runs in a head process checks on every call, and closes at the end."""

    def __init__(self, client: Client, head: Head, settings: _Settings) -> None:
        self.client, self.head, self.settings = client, head, settings

    def check(self) -> None:
        # a client that lost the scheduler: a local head's goes only when the head stops, which it is about to say
        # (a client closed the scheduler) or show (it exits); a moment for that, not Dask's 60 s of retries
        gone = self.head.died(wait=5.0 if self.client.status == "connecting" else 0.0)
        if gone is not None:
            raise ClusterError(f"{gone}: every task and object of this session went with it; call lc.shutdown() "
                               "and lc.init() to start a new cluster")

    def close(self) -> None:
        gone = self.head.died()
        try:
            # with the head gone, the client is retrying to reach it; Dask logs that being cut short as an error
            with _quiet("distributed.client") if gone is not None else contextlib.nullcontext():
                self.client.close(timeout=10)
        finally:
            try:
                self.head.close()  # it releases actor and bundle holders, closes its Nannies, exits
            finally:
                self.settings.leave()


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Drop that logger's records below CRITICAL while the block runs."""
    log = logging.getLogger(logger_name)
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


atexit.register(shutdown)


def current_session(auto_init: bool = True) -> Session:
    """The session for the calling context: the worker's inside tasks and actors; else the driver's.

    Without ``init``, work (``auto_init``: a task, an actor, ``put``, a placement group) starts a default local
    cluster, as Ray does, and says so in one line; a question about the cluster (``auto_init=False``: its
    resources, nodes, task records) raises :class:`ClusterError` instead: a cluster started just to answer it would
    be empty."""
    worker = current_worker()
    if worker is not None:
        return worker_session(worker)
    session = driver_session()
    if session is not None:
        session.check()  # fails fast, and says why, once the session's cluster is gone
        return session
    if not auto_init:
        raise ClusterError("labcluster is not initialized: call lc.init() first (or submit work: the first "
                           ".remote() or lc.put() starts a local cluster)")
    with driver_lock():
        session = driver_session()
        if session is None:
            started = time.monotonic()
            session = init()
            total = total_resources(session.workers())
            print(f"labcluster: started a local cluster in {time.monotonic() - started:.1f}s "
                  f"({_resources_line(total)}), as lc.init() would; lc.shutdown() stops it", flush=True)
        return session


def _resources_line(total: Mapping[str, float]) -> str:
    """``{"CPU": 4.0, "GPU": 1.0, "memory": ...}`` -> ``"CPU: 4, GPU: 1"``."""
    return ", ".join(f"{k}: {v:g}" for k, v in sorted(total.items()) if k != "memory" and not k.startswith("pg_"))


def current_client() -> Client:
    """The client for the calling context (see :func:`current_session`)."""
    return current_session().client
