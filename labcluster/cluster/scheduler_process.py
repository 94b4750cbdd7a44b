"""The scheduler of a local cluster in its own process (``labcluster.local.scheduler-process``, the default).

In the driver's process the scheduler shares one GIL with the notebook's code, the client and everything a
user runs there: a busy cell stalls scheduling, and scheduling steals the driver's time. On its own it is
Dask's plain ``Scheduler``, started the way ``labcluster scheduler`` starts one (same plugins), with the
local cluster's stream tuning; bench/ measures 1.1-1.4x the no-op task throughput of the in-process scheduler,
for one TCP hop per round trip.

``SpecCluster`` drives it like any scheduler: :class:`SchedulerProcess` is its ``ProcessInterface``. ``start``
launches a Python process running :func:`main`, with this process's Dask config and import path,
and reads the address the child prints; ``close`` stops that PID (SIGTERM, then SIGKILL after a grace period).
The child runs in its own session, so a Ctrl-C meant for the driver does not reach it, and it stops by itself
once its parent is gone (a kernel that was killed), so nothing is left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections import deque
from typing import Any

import dask
from distributed.core import Status
from distributed.deploy.spec import ProcessInterface

from ..dask_internals import inherit_config_env
from ..exceptions import ClusterError
from .node import ADDRESS_LINE, run_scheduler
from .tuning import local_interval

logger = logging.getLogger(__name__)
#: what the child runs (not ``-m`` this module: the package imports it first, and runpy warns about that)
_ENTRY = f"import sys; from {__name__} import main; sys.exit(main(sys.argv[1:]))"


class SchedulerProcess(ProcessInterface):
    """A ``Scheduler`` with labcluster's plugins in a child process of this one.

    >>> SchedulerProcess(host="127.0.0.1", dashboard_address=None)
    <SchedulerProcess: not started>
    """

    def __init__(self, host: str, dashboard_address: str | None, start_timeout: float = 60.0,
                 close_timeout: float = 10.0) -> None:
        self.host = host
        self.dashboard_address = dashboard_address
        self.start_timeout = start_timeout
        self.close_timeout = close_timeout
        self.process: asyncio.subprocess.Process | None = None
        self._tasks: list[asyncio.Future[None]] = []
        self._stderr: deque[str] = deque(maxlen=20)
        self._closing = False
        super().__init__()  # type: ignore[no-untyped-call]

    def __repr__(self) -> str:
        if self.process is None:
            return "<SchedulerProcess: not started>"
        return f"<SchedulerProcess: pid {self.process.pid} at {self.address}, {self.status.name}>"

    async def start(self) -> None:
        spec = {"host": self.host, "dashboard_address": self.dashboard_address, "parent_pid": os.getpid()}
        env = {**os.environ,
               # the config the scheduler would have had in this process: labcluster.*, the local cluster's Dask
               # settings and anything the user set (what a Nanny passes its worker, too)
               **inherit_config_env(_plain(dask.config.config)),
               # run_on_scheduler ships functions by reference when they are importable here: make them there
               "PYTHONPATH": os.pathsep.join(_import_path())}
        self.process = process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _ENTRY, json.dumps(spec), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True)
        assert process.stdout is not None and process.stderr is not None
        self._tasks = [asyncio.ensure_future(self._forward(process.stderr))]
        try:
            line = await asyncio.wait_for(process.stdout.readline(), self.start_timeout)
        except TimeoutError:
            await self._stop()
            raise ClusterError(f"the scheduler process did not start within {self.start_timeout:g} s") from None
        text = line.decode(errors="replace").strip()
        if not text.startswith(ADDRESS_LINE):
            await self._stop()
            error = next((line for line in reversed(self._stderr) if line.strip()), "no error printed")
            raise ClusterError(f"the local cluster's scheduler process failed to start on host {self.host!r}: {error}")
        self.address = text[len(ADDRESS_LINE):]
        self._tasks.append(asyncio.ensure_future(self._forward(process.stdout)))
        await super().start()  # type: ignore[no-untyped-call]
        self._tasks.append(asyncio.ensure_future(self._watch(process)))

    def died(self) -> str | None:
        """Why the scheduler is gone, if its process exited without :meth:`close` being called; else None."""
        process = self.process
        if process is None or process.returncode is None or self._closing:
            return None
        code = process.returncode
        how = f"killed by {_signal_name(-code)}" if code < 0 else f"exit code {code}"
        return f"the local cluster's scheduler process (pid {process.pid}) exited ({how})"

    async def _watch(self, process: asyncio.subprocess.Process) -> None:
        await process.wait()
        # exit code 0: it was asked to close (SpecCluster does that before calling close(), or a client did)
        if process.returncode and self.status == Status.running:
            self.status = Status.failed  # SpecCluster then closes the workers without asking the scheduler
            logger.error("%s", self.died())

    async def _forward(self, stream: asyncio.StreamReader) -> None:
        """Pass what the child prints on to this process's own stderr (its terminal: not into notebook cells), so
        that it never blocks on a full pipe; keep the last lines for an error message."""
        out = sys.__stderr__
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip()
            self._stderr.append(text)
            if out is not None:
                print(text, file=out, flush=True)

    async def close(self) -> None:
        self._closing = True
        await self._stop()
        await super().close()  # type: ignore[no-untyped-call]

    async def _stop(self) -> None:
        """Stop the process this object started (by its PID). SpecCluster has asked the scheduler to close by now,
        so give it a moment to exit by itself; then SIGTERM, and SIGKILL after ``close_timeout``."""
        process = self.process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), min(2.0, self.close_timeout))
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), self.close_timeout)
            except TimeoutError:
                logger.warning("the scheduler process (pid %d) did not stop within %g s of SIGTERM; killing it",
                               process.pid, self.close_timeout)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        tasks, self._tasks = self._tasks, []
        await asyncio.gather(*tasks, return_exceptions=True)


def _import_path() -> list[str]:
    """This process's ``sys.path``, with "" (the working directory) spelled out, for a child's PYTHONPATH."""
    try:
        cwd = os.getcwd()
    except OSError:  # the working directory was deleted: "" finds nothing there anyway
        cwd = ""
    return [p or cwd for p in sys.path if p or cwd]


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


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


def main(argv: list[str]) -> int:
    """The child's entry point: run the scheduler ``argv[0]`` (JSON from :class:`SchedulerProcess`) describes."""
    spec: dict[str, Any] = json.loads(argv[0])
    asyncio.run(run_scheduler(spec["host"], 0, spec["dashboard_address"], local_interval(),
                              parent_pid=spec["parent_pid"]))
    return 0

