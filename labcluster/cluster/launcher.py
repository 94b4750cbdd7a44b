"""Start, watch and stop a local cluster's head process (``head.py``) from the driver's side.

Imports no Dask: ``lc.init()`` launches the head first and imports distributed while the head starts, so the two
imports run side by side. The head runs in a session of its own (``start_new_session``), gets this process's Dask
config and import path, says what happens on a pipe of its own, and is stopped by its PID: SIGTERM, then SIGKILL
after a grace period. What it prints on stderr goes to this process's terminal (``sys.__stderr__``); the last lines
are kept for error messages. Dask's own log records go to the cluster's log file.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from typing import IO, Any

from .. import config
from ..dask_internals import inherit_config_env, pre_spawn_environ
from ..exceptions import ClusterError
from .groups import WorkerGroup
from .tuning import local_settings

#: what a worker process imports anyway: the head imports it before it forks its forkserver (``forkserver.py``)
WORKER_IMPORTS = ("distributed", "distributed.nanny", "labcluster.cluster.worker_plugin", "labcluster.api.runner")

#: what the head process runs (not ``-m``: the package imports the module first, and runpy warns about that)
ENTRY = """\
import sys
from labcluster.cluster.head import main
sys.exit(main(sys.argv[1:]))
"""


class Head:
    """A local cluster's head process: Dask's scheduler and the workers' Nannies (see ``head.py``).

    >>> Head([WorkerGroup("cpu", nthreads=2)], host="127.0.0.1", dashboard_address=None)
    <Head: not started>
    """

    def __init__(self, groups: Sequence[WorkerGroup], *, host: str, dashboard_address: str | None,
                 close_timeout: float = 20.0) -> None:
        self.groups = list(groups)
        self.host = host
        self.dashboard_address = dashboard_address
        self.close_timeout = close_timeout
        self.process: subprocess.Popen[bytes] | None = None
        #: where the head and its workers write Dask's log records (removed after a clean close)
        self.log_file = os.path.join(_log_dir(), f"labcluster-{os.getpid()}-{uuid.uuid4().hex[:8]}.log")
        self.address: str | None = None
        self._said: queue.Queue[dict[str, Any]] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=30)
        self._closing = False
        #: why the head is stopping, once it says so (a client closed its scheduler)
        self.stopping: str | None = None
        #: set once it said why it stops, or its pipe closed (it exited)
        self.ending = threading.Event()
        self._threads: list[threading.Thread] = []

    def __repr__(self) -> str:
        if self.process is None:
            return "<Head: not started>"
        return f"<Head: pid {self.process.pid} at {self.address or '(starting)'}>"

    # -- start -----------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Launch the head process (returns at once; :meth:`wait_for` reads what it says)."""
        settings = self.dask_config()
        forkserver = settings["distributed"]["worker"]["multiprocessing-method"] == "forkserver"
        spec = {"groups": [g.to_dict() for g in self.groups], "host": self.host,
                "dashboard_address": self.dashboard_address, "parent_pid": os.getpid(),
                "close_timeout": self.close_timeout, "forkserver": list(WORKER_IMPORTS) if forkserver else None}
        read, write = os.pipe()
        env = {**os.environ, **inherit_config_env(settings),
               # the head forks its forkserver, and so every worker, from itself: it starts with the environment a
               # Nanny gives a worker it spawns (malloc reads its settings as a process starts)
               **(pre_spawn_environ(settings) if forkserver else {}),
               # functions shipped by reference (run_on_scheduler, plugins) must import there as they do here
               "PYTHONPATH": os.pathsep.join(_import_path())}
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", ENTRY, json.dumps(spec), str(write)], pass_fds=(write,), env=env,
                stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        finally:
            os.close(write)
        assert self.process.stderr is not None
        self._threads = [threading.Thread(target=self._read_said, args=(os.fdopen(read, "rb"),), daemon=True,
                                          name="labcluster-head-said"),
                         threading.Thread(target=self._forward, args=(self.process.stderr,), daemon=True,
                                          name="labcluster-head-stderr")]
        for thread in self._threads:
            thread.start()

    def dask_config(self) -> dict[str, Any]:
        """The Dask config the head (and, through it, every worker) runs with: this process's (labcluster.* and
        anything the user set), the local cluster's settings, and logging to the cluster's log file."""
        import dask.config

        method = str(config.get("local.worker-start-method"))
        if method not in ("forkserver", "spawn"):
            raise ValueError(f"labcluster.local.worker-start-method must be 'forkserver' or 'spawn', got {method!r}")
        if method not in multiprocessing.get_all_start_methods():  # Windows has spawn only
            method = "spawn"
        merged: dict[str, Any] = dask.config.merge(_plain(dask.config.config), _nest(local_settings()),
                                                   {"distributed": {"worker": {"multiprocessing-method": method}}})
        return {**merged, "logging": logging_config(self.log_file)}

    def _read_said(self, stream: IO[bytes]) -> None:
        with stream:
            for line in stream:
                with contextlib.suppress(ValueError):
                    message = json.loads(line)
                    if "stopping" in message:
                        self.stopping = str(message["stopping"])
                        self.ending.set()
                    self._said.put(message)
        self.ending.set()
        self._said.put({"exited": True})

    def _forward(self, stream: IO[bytes]) -> None:
        """What the head and its workers print on stderr: to this process's terminal, the last lines kept."""
        out = sys.__stderr__
        with stream:
            for line in stream:
                text = line.decode(errors="replace").rstrip()
                self._stderr.append(text)
                if out is not None:
                    with contextlib.suppress(Exception):
                        print(text, file=out, flush=True)

    def wait_for(self, what: str, timeout: float) -> Any:
        """Block until the head says ``what`` (``scheduler``, ``workers``); raise ClusterError if it fails first."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                message = self._said.get(timeout=max(0.0, min(left, 0.5)))
            except queue.Empty:
                if left <= 0:
                    raise ClusterError(f"the local cluster's head process did not report its {what} within "
                                       f"{timeout:g}s; see {self.log_file}, or raise dask.config "
                                       f"'labcluster.timeouts.worker-start'") from None
                continue
            if what in message:
                if what == "scheduler":
                    self.address = str(message["scheduler"])
                return message[what]
            if "error" in message:
                raise self._error(message)
            if message.get("exited"):
                raise ClusterError(self._exit_text())

    def _error(self, message: Mapping[str, Any]) -> Exception:
        text = str(message["error"])
        if message.get("type") == "ValueError":  # a spec that cannot be: the groups' own validation
            return ValueError(text.removeprefix("ValueError: "))
        return ClusterError(f"the local cluster failed to start on host {self.host!r}: {text} "
                            f"(its log: {self.log_file})")

    def _exit_text(self) -> str:
        process = self.process
        code = process.wait(timeout=5) if process is not None else None
        last = next((line for line in reversed(self._stderr) if line.strip()), "nothing printed")
        return f"the local cluster's head process exited while starting ({_how(code)}): {last}"

    # -- while it runs ---------------------------------------------------------------------------------------------
    def died(self, wait: float = 0.0) -> str | None:
        """Why the head is gone (or going: it said why it stops), if that was not :meth:`close`; else None.
        ``wait``: seconds to give a head that may be ending (its client lost the scheduler) to say why or exit."""
        process = self.process
        if process is None or self._closing:
            return None
        if wait and self.ending.wait(timeout=wait) and self.stopping is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=wait)  # its pipe closed: it is exiting
        if process.poll() is None:  # running; or closing its Nannies because its scheduler was closed
            return f"the local cluster stopped: {self.stopping}" if self.stopping is not None else None
        return f"the local cluster's head process (pid {process.pid}) exited ({_how(process.returncode)})"

    # -- stop ------------------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the head by its PID: SIGTERM (it closes its Nannies and exits), SIGKILL after ``close_timeout``."""
        self._closing = True
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=self.close_timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait(timeout=10)
        for thread in self._threads:
            thread.join(timeout=2)
        if process.returncode == 0:
            with contextlib.suppress(OSError):
                os.unlink(self.log_file)


def logging_config(log_file: str | None) -> dict[str, Any]:
    """Dask's log records of the head and its workers go to the cluster's log file (None: discarded). It travels
    in the Dask config the head gets, which its workers inherit: each applies it as it imports distributed
    (``logging`` in ``dask.config``, new style)."""
    handler = ({"class": "logging.FileHandler", "filename": log_file, "formatter": "plain"} if log_file
               else {"class": "logging.NullHandler"})
    return {"version": 1, "disable_existing_loggers": False,
            "formatters": {"plain": {"format": "%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"}},
            "handlers": {"file": handler},
            # every library's records (bokeh's and tornado's too), not only Dask's
            "root": {"level": "WARNING", "handlers": ["file"]},
            "loggers": {"distributed": {"level": "INFO", "handlers": ["file"], "propagate": False},
                        "labcluster": {"level": "INFO", "handlers": ["file"], "propagate": False}}}


def _log_dir() -> str:
    path = config.get("local.log-dir", None) or os.path.join(tempfile.gettempdir(), "labcluster")
    os.makedirs(path, exist_ok=True)
    return str(path)


def _how(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _import_path() -> list[str]:
    """This process's ``sys.path``, with "" (the working directory) spelled out, for a child's PYTHONPATH."""
    try:
        cwd = os.getcwd()
    except OSError:  # the working directory was deleted: "" finds nothing there anyway
        cwd = ""
    return [p or cwd for p in sys.path if p or cwd]


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}`` (Dask config keys written with dots).

    >>> _nest({"distributed.comm.compression": None, "logging.distributed": "warning"})
    {'distributed': {'comm': {'compression': None}}, 'logging': {'distributed': 'warning'}}
    """
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def _plain(value: Any) -> Any:
    """``value`` without what JSON cannot carry (Python objects a user put in the config stay behind).

    >>> _plain({"a": 1, "b": object(), "c": (1, None, object()), "d": {"e": "x"}})
    {'a': 1, 'c': [1, None], 'd': {'e': 'x'}}
    """
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            v = _plain(v)
            if v is not _DROP:
                out[str(k)] = v
        return out
    if isinstance(value, (list, tuple)):
        return [v for v in map(_plain, value) if v is not _DROP]
    return value if value is None or isinstance(value, (str, int, float, bool)) else _DROP


_DROP = object()
