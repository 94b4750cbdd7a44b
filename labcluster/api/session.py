"""The session: one Dask client per driver process, and the cluster labcluster started (if any).

``lc.init()`` creates it; ``lc.shutdown()`` closes what ``init`` started and nothing else. Inside a
task, every API call uses the worker's own client instead (``distributed.get_client``), so tasks can
submit tasks and ``lc.get`` their results.
"""

from __future__ import annotations

import atexit
import contextlib
import html
import logging
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dask.config
from distributed import Client, get_worker
from distributed.deploy.cluster import Cluster

from .. import config
from ..cluster import info as cluster_info
from ..cluster.groups import WorkerGroup
from ..cluster.local import default_groups, in_process_address, local_dask_config, start_local_cluster
from ..cluster.scheduler_process import SchedulerProcess
from ..cluster.tuning import StreamTuning, tune_client
from ..exceptions import ClusterError, WorkerStartTimeout

logger = logging.getLogger("labcluster")

_lock = threading.RLock()
_session: Session | None = None


class Session:
    """A connection to a cluster: the object ``lc.init()`` returns.

    Use it as a context manager to shut down on exit::

        with lc.init(num_cpus=2, num_gpus=1) as ctx:
            print(ctx.workers())
    """

    def __init__(self, client: Client, cluster: Any | None, owns_cluster: bool, config_ctx: Any | None,
                 dashboard_host: str | None = None, address: str | None = None) -> None:
        self.client = client
        #: for clusters labcluster starts: the host the dashboard binds, or None when it is off
        self._dashboard_host = dashboard_host
        self.cluster = cluster
        self.owns_cluster = owns_cluster
        self._config_ctx = config_ctx
        self._closed = False
        #: whether the scheduler runs labcluster's retry plugin (per-task max_retries for worker deaths)
        self.per_task_retries = owns_cluster or _has_retry_plugin(client)
        # the address others connect to (the session's own client may use an in-process link)
        self._address = address or (str(client.scheduler.address) if client.scheduler is not None else "?")
        scheduler = getattr(cluster, "scheduler", None) if owns_cluster else None
        #: the scheduler's process, when init started one (local.scheduler-process)
        self._scheduler_process = scheduler if isinstance(scheduler, SchedulerProcess) else None

    # -- what the cluster has -------------------------------------------------------------------
    def kept_worker_resources(self) -> list[dict[str, float]]:
        """The resources of each worker this session's own cluster keeps running (its spec: a Nanny restarts a
        worker process that died); empty for a cluster it connected to."""
        spec = getattr(self.cluster, "worker_spec", None) if self.owns_cluster else None
        return [dict(entry.get("options", {}).get("resources") or {}) for entry in (spec or {}).values()]

    @property
    def address(self) -> str:
        """The scheduler's address, e.g. ``tcp://127.0.0.1:8786``."""
        return self._address

    @property
    def dashboard_link(self) -> str | None:
        """The scheduler's dashboard URL, or None when it has none."""
        if self.owns_cluster:
            if self._dashboard_host is None:
                return None
            # built from where it binds: Dask derives it from the scheduler's address, which for
            # in-process clusters is the machine's IP, not the loopback the dashboard listens on
            port = self.client.scheduler_info(n_workers=0).get("services", {}).get("dashboard")
            return f"http://{self._dashboard_host}:{port}/status" if port else None
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
        res = ", ".join(f"{k}: {v:g}" for k, v in sorted(total.items()) if k != "memory")
        sim = sum(1 for w in workers if w.simulated)
        sim_note = f", {sim} simulated GPU(s)" if sim else ""
        return f"<labcluster.Session {kind} {self.address} workers={len(workers)} {{{res}}}{sim_note}>"

    def _repr_html_(self) -> str:
        kind, workers, total = self._summary()
        res = ", ".join(f"{k}: {v:g}" for k, v in sorted(total.items()) if k != "memory")
        link = self.dashboard_link
        dash = f" &middot; <a href='{html.escape(link)}' target='_blank'>dashboard</a>" if link else ""
        return (
            f"<div><strong>labcluster session</strong> ({kind}) <code>{html.escape(self.address)}</code>{dash}"
            f"<br>{len(workers)} workers &middot; {html.escape(res)}"
            f"{cluster_info.workers_html(workers)}</div>"
        )

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        """Disconnect; close the cluster too if this session started it."""
        if self._closed:
            return
        self._closed = True
        gone = self.scheduler_gone()
        if gone is not None and self.cluster is not None:
            self.cluster.shutdown_scheduler = False  # nothing to ask it: close the workers and the client only
        elif self.owns_cluster:
            from . import _on_scheduler

            # let actor and placement-group holders end cleanly: the cluster goes away with them (a cluster
            # that is already gone has nothing to release)
            with contextlib.suppress(Exception):
                self.client.run_on_scheduler(_on_scheduler.release_holders, "labcluster-")
        from . import actors, feasibility

        actors.forget_client(self.client)
        feasibility.forget_client(self.client)
        try:
            # with the scheduler gone, the client is retrying to reach it; Dask logs that being cut short as an error
            with _quiet("distributed.client") if gone is not None else contextlib.nullcontext():
                self.client.close(timeout=10)
        finally:
            try:
                if self.owns_cluster and self.cluster is not None:
                    self.cluster.close(timeout=20)
            finally:
                if self._config_ctx is not None:
                    self._config_ctx.__exit__(None, None, None)

    def scheduler_gone(self) -> str | None:
        """Why this session's scheduler is gone, when it was a process ``init`` started and it exited; else None."""
        process = self._scheduler_process
        return process.died() if process is not None else None

    def scheduler_error(self, wait: float = 0.0) -> ClusterError | None:
        """The error to raise if this session's scheduler process is gone (see :meth:`scheduler_gone`); ``wait``:
        seconds to give this process to notice that it exited (a lost connection can be seen first)."""
        deadline = time.monotonic() + wait
        while (gone := self.scheduler_gone()) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if gone is None or self._closed:
            return None
        return ClusterError(f"{gone}: every task and object of this session went with it; call lc.shutdown() "
                            "and lc.init() to start a new cluster")

    def check_scheduler(self) -> None:
        """Raise :meth:`scheduler_error` if there is one (cheap: every API call runs it)."""
        if self._scheduler_process is not None and self._scheduler_process.died() is not None:
            error = self.scheduler_error()
            if error is not None:
                raise error

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        shutdown()


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


def scheduler_plugins(client: Client) -> list[str]:
    """The names of the scheduler's plugins (empty if it refuses to run functions: assume plain Dask)."""
    from . import _on_scheduler

    try:
        return list(client.run_on_scheduler(_on_scheduler.plugin_names))
    except Exception:
        return []


def _has_retry_plugin(client: Client) -> bool:
    from ..cluster.retries import RetryLimitPlugin

    return RetryLimitPlugin.name in scheduler_plugins(client)


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
    global _session
    if unknown:
        raise TypeError(f"lc.init() got unknown keyword(s) {sorted(unknown)}; valid ones are "
                        f"{', '.join(_INIT_KEYWORDS)}")
    with _lock:
        if _session is not None:
            if ignore_reinit_error:
                return _session
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
            _session = _connect(address, cluster, security, timeout)
        else:
            groups = list(workers) if workers is not None else default_groups(
                num_cpus, num_gpus, resources, simulate_gpus)
            _session = _start_local(groups, processes, host, dashboard_address, include_dashboard, timeout)
        return _session


def _connect(address: str | None, cluster: Any | None, security: Any | None, timeout: float | None) -> Session:
    timeout = timeout if timeout is not None else config.seconds("timeouts.connect")
    target = cluster if cluster is not None else address
    try:
        client = Client(target, timeout=timeout, security=security)
    except (OSError, TimeoutError) as e:
        raise ClusterError(f"could not reach a Dask scheduler at {address!r} within {timeout:g}s ({e}); "
                           f"check the address (e.g. 'tcp://127.0.0.1:8786'), that `labcluster scheduler` "
                           f"or `dask scheduler` runs there, and any TLS settings (security=)") from e
    tune_client(client, StreamTuning.configured(local=False))
    from ..cluster import records

    try:
        records.ensure_on(client, scheduler_plugins(client))
    except Exception as e:  # a scheduler without labcluster installed, or one that refuses plugins
        logger.warning("this scheduler does not keep labcluster's task records (%s); lc.timeline and lc.lineage "
                       "will be empty. Start it with `labcluster scheduler` to get them.", e)
    return Session(client, cluster, owns_cluster=False, config_ctx=None)


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
    # the scheduler-wide ceiling; each task's own max_retries is applied by cluster/retries.py
    settings = {**local_dask_config(),
                "distributed.scheduler.allowed-failures": int(config.get("max-retries-ceiling"))}
    config_ctx = dask.config.set(settings)
    cluster = None
    try:
        cluster = start_local_cluster(groups, host=host, dashboard_address=dashboard_address, processes=processes,
                                      include_dashboard=include_dashboard)
        direct = bool(config.get("local.direct-to-workers"))
        inproc = in_process_address(cluster) if processes is not False else None
        client = Client(inproc or cluster, direct_to_workers=direct)
        tune_client(client, StreamTuning.configured(local=True))
        # connections from this process to the workers: on one machine a live worker answers at once, and a dead
        # one would otherwise be retried for distributed.comm.timeouts.connect (30 s) by every gather
        client.rpc.timeout = config.seconds("local.worker-connect-timeout")
        expected = sum(g.n for g in groups)
        wait = timeout if timeout is not None else config.seconds("timeouts.worker-start")
        try:
            client.wait_for_workers(expected, timeout=wait)
        except TimeoutError as e:
            arrived = len(client.scheduler_info(n_workers=-1)["workers"])
            client.close()
            raise WorkerStartTimeout(arrived, expected, wait) from e
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
    return Session(client, cluster, owns_cluster=True, config_ctx=config_ctx, dashboard_host=dashboard_host,
                   address=str(cluster.scheduler_address))


def shutdown() -> None:
    """Disconnect and stop what ``init`` started (a connected cluster keeps running). Safe to call twice."""
    global _session
    with _lock:
        session, _session = _session, None
    if session is not None:
        session.close()


atexit.register(shutdown)


def is_initialized() -> bool:
    """True if ``lc.init()`` ran in this process (and was not shut down), or inside a task."""
    return _session is not None or in_task()


def in_task() -> bool:
    """True when called from a task running on a worker."""
    try:
        get_worker()
    except ValueError:
        return False
    return True


def current_session(auto_init: bool = True) -> Session:
    """The driver's session; the first call without ``init`` starts a default local cluster, as Ray does."""
    session = _session
    if session is not None:
        return session
    if not auto_init:
        raise RuntimeError("labcluster is not initialized; call lc.init() first")
    with _lock:
        if _session is None:
            started = time.monotonic()
            init()
            logger.info("started a local cluster (lc.init()) in %.1fs", time.monotonic() - started)
        assert _session is not None
        return _session


def session_of(client: Client) -> Session | None:
    """The driver's session if ``client`` is its client (not a worker's, inside a task)."""
    session = _session
    return session if session is not None and session.client is client else None


def current_client() -> Client:
    """The client for the calling context: the worker's inside a task, else the driver session's."""
    if in_task():
        from distributed import get_client

        return get_client()
    session = current_session()
    session.check_scheduler()  # every call fails fast, and says why, once the session's scheduler process died
    return session.client
