"""``lc.init()``: start a local cluster or connect to one; and the current session, starting a default one on first use.

A local cluster is started by ``cluster/local.py``; here the session is built around it: the client, the Dask
settings it runs with (for the session's lifetime), the scheduler extension's info, and what to check on every call.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dask.config
from distributed import Client
from distributed.deploy.cluster import Cluster

from .. import config
from ..cluster.groups import WorkerGroup, default_groups
from ..cluster.local import in_process_address, local_dask_config, start_local_cluster
from ..cluster.scheduler_process import SchedulerProcess
from ..cluster.tuning import dask_settings, local_interval, tune
from ..dask_internals import client_stream
from ..exceptions import ClusterError, WorkerStartTimeout
from .calls import call
from .session import (
    Session,
    current_worker,
    dashboard_port,
    driver_session,
    ensure_extension,
    set_driver_session,
    shutdown,
    worker_session,
)
from .session import _driver as driver

logger = logging.getLogger("labcluster")

_INIT_KEYWORDS = ("address", "cluster", "workers", "num_cpus", "num_gpus", "resources", "simulate_gpus",
                  "processes", "host", "dashboard_address", "include_dashboard", "security",
                  "ignore_reinit_error", "timeout")


def init(
    address: str | None = None,
    *,
    cluster: Cluster | Any | None = None,
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

    A local cluster's scheduler runs in a process of its own (``labcluster.local.scheduler-process``), worker
    processes each behind a Nanny; ``processes=False`` runs workers as threads, with the scheduler, in this process.

    >>> import labcluster as lc
    >>> with lc.init(num_cpus=2, processes=False) as ctx:
    ...     lc.cluster_resources()["CPU"]
    2.0
    """
    if unknown:
        raise TypeError(f"lc.init() got unknown keyword(s) {sorted(unknown)}; valid ones are "
                        f"{', '.join(_INIT_KEYWORDS)}")
    with driver.lock:
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
            session = _start_local(groups, processes, host, dashboard_address, include_dashboard, timeout)
        set_driver_session(session)
        return session


def _connect(address: str | None, cluster: Any | None, security: Any | None, timeout: float | None) -> Session:
    timeout = timeout if timeout is not None else config.seconds("timeouts.connect")
    target = cluster if cluster is not None else address
    settings = dask.config.set(dask_settings())  # for the session's lifetime: its close leaves it
    try:
        client = Client(target, timeout=timeout, security=security)
    except (OSError, TimeoutError) as e:
        settings.__exit__(None, None, None)
        raise ClusterError(f"could not reach a Dask scheduler at {address!r} within {timeout:g}s ({e}); "
                           f"check the address (e.g. 'tcp://127.0.0.1:8786'), that `labcluster scheduler` "
                           f"or `dask scheduler` runs there, and any TLS settings (security=)") from e
    extension = ensure_extension(client)

    def close() -> None:
        try:
            client.close(timeout=10)
        finally:
            settings.__exit__(None, None, None)

    return Session(client, cluster, owns_cluster=False, extension=extension, on_close=close)


_MAIN_GUARD_HINT = (
    "if this is a script, put the code that calls lc.init() (or the first .remote()) under "
    "`if __name__ == \"__main__\":` -- worker processes are started with multiprocessing's 'spawn', which "
    "imports your script again in each worker, and an unguarded lc.init() there tries to start another cluster"
)


def _prepare_main_for_spawn() -> None:
    """Worker processes start with multiprocessing's 'spawn', which re-imports ``__main__`` from its file."""
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise RuntimeError(f"lc.init() was called while a worker process was importing your script; {_MAIN_GUARD_HINT}")
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is not None and isinstance(path, str) and not os.path.isfile(path):
        # code read from stdin (`python - <<EOF`) has the fake path "<stdin>": spawn would try to run that file in
        # each worker and fail. Without a path, spawn skips re-importing __main__, as it does for notebooks.
        del main.__file__


def _start_local(groups: list[WorkerGroup], processes: bool | None, host: str | None,
                 dashboard_address: str | None, include_dashboard: bool, timeout: float | None) -> Session:
    _prepare_main_for_spawn()
    # the scheduler-wide ceiling; each task's own max_retries is applied by the extension's retry plugin
    settings = {**dask_settings(), **local_dask_config(),
                "distributed.scheduler.allowed-failures": int(config.get("max-retries-ceiling"))}
    config_ctx = dask.config.set(settings)
    cluster = None
    try:
        cluster = start_local_cluster(groups, host=host, dashboard_address=dashboard_address, processes=processes,
                                      include_dashboard=include_dashboard)
        direct = bool(config.get("local.direct-to-workers"))
        inproc = in_process_address(cluster) if processes is not False else None
        client = Client(inproc or cluster, direct_to_workers=direct)
        tune(client_stream(client), local_interval())
        expected = sum(g.n for g in groups)
        wait = timeout if timeout is not None else config.seconds("timeouts.worker-start")
        try:
            client.wait_for_workers(expected, timeout=wait)
        except TimeoutError as e:
            arrived = len(client.scheduler_info(n_workers=-1)["workers"])
            client.close()
            raise WorkerStartTimeout(arrived, expected, wait) from e
        extension = ensure_extension(client)
        call(client, "keep_workers", workers={
            name: dict(entry.get("options", {}).get("resources") or {}) for name, entry in cluster.worker_spec.items()})
    except BaseException as e:
        if cluster is not None:
            cluster.close(timeout=10)
        config_ctx.__exit__(None, None, None)
        if isinstance(e.__cause__, ClusterError):  # the scheduler process's own error (SpecCluster wraps it)
            raise e.__cause__ from None
        if isinstance(e, RuntimeError) and "failed to start" in str(e):
            main_file = getattr(sys.modules.get("__main__"), "__file__", None)
            hint = f"; {_MAIN_GUARD_HINT}" if main_file and os.path.isfile(main_file) else ""
            raise ClusterError(f"the local cluster's worker processes failed to start ({e}); the worker's own error "
                               f"is printed above{hint}") from e
        raise
    dashboard_host = (host or config.get("local.host")) if include_dashboard else None
    scheduler = getattr(cluster, "scheduler", None)
    process = scheduler if isinstance(scheduler, SchedulerProcess) else None
    local = _LocalCluster(client, cluster, config_ctx, process)

    def dashboard_link() -> str | None:
        # built from where it binds: Dask derives it from the scheduler's address, which for in-process
        # clusters is the machine's IP, not the loopback the dashboard listens on
        port = dashboard_port(client) if dashboard_host is not None else None
        return f"http://{dashboard_host}:{port}/status" if port else None

    return Session(client, cluster, owns_cluster=True, extension=extension, address=str(cluster.scheduler_address),
                   dashboard_link=dashboard_link, on_close=local.close, check=local.check)


class _LocalCluster:
    """What a session that started its cluster checks on every call, and closes at the end."""

    def __init__(self, client: Client, cluster: Any, config_ctx: Any, process: SchedulerProcess | None) -> None:
        self.client, self.cluster, self.config_ctx, self.process = client, cluster, config_ctx, process

    def gone(self) -> str | None:
        """Why the scheduler is gone, when it was a process ``init`` started and it exited; else None."""
        return self.process.died() if self.process is not None else None

    def error(self) -> ClusterError | None:
        gone = self.gone()
        if gone is None:
            return None
        return ClusterError(f"{gone}: every task and object of this session went with it; call lc.shutdown() "
                            "and lc.init() to start a new cluster")

    def check(self) -> None:
        if self.process is not None and self.process.died() is not None:
            error = self.error()
            if error is not None:
                raise error

    def close(self) -> None:
        gone = self.gone()
        if gone is not None:
            self.cluster.shutdown_scheduler = False  # nothing to ask it: close the workers and the client only
        else:
            # let actor and placement-group holders end cleanly: the cluster goes away with them
            with contextlib.suppress(Exception):
                call(self.client, "release_all")
        try:
            # with the scheduler gone, the client is retrying to reach it; Dask logs that being cut short as an error
            with _quiet("distributed.client") if gone is not None else contextlib.nullcontext():
                self.client.close(timeout=10)
        finally:
            try:
                self.cluster.close(timeout=20)
            finally:
                self.config_ctx.__exit__(None, None, None)


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


def scheduler_error(session: Session, wait: float = 0.0) -> ClusterError | None:
    """The error to raise if ``session``'s scheduler process is gone; ``wait``: seconds to give this process to
    notice that it exited (a lost connection can be seen first)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            session.check()
        except ClusterError as e:
            return e
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


atexit.register(shutdown)


def current_session(auto_init: bool = True) -> Session:
    """The session for the calling context: the worker's inside tasks and actors; else the driver's, where the
    first call without ``init`` starts a default local cluster, as Ray does."""
    worker = current_worker()
    if worker is not None:
        return worker_session(worker)
    session = driver_session()
    if session is not None:
        session.check()  # fails fast, and says why, once the session's cluster is gone
        return session
    if not auto_init:
        raise RuntimeError("labcluster is not initialized; call lc.init() first")
    with driver.lock:
        session = driver_session()
        if session is None:
            started = time.monotonic()
            session = init()
            logger.info("started a local cluster (lc.init()) in %.1fs", time.monotonic() - started)
        return session


def current_client() -> Client:
    """The client for the calling context (see :func:`current_session`)."""
    return current_session().client
