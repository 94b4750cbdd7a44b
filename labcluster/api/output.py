"""What tasks and actor calls print, sent back to the code that started them (a notebook cell).

A task started inside a work scope that wants its output (``scopes.py``) carries ``labcluster_origin``: the
driver's event topic and the scope's id. In a worker process, ``sys.stdout`` and ``sys.stderr`` then route what
such a task's thread (or an async actor's coroutine) writes into a per-task buffer instead of the worker's own
stream. The buffer goes to the driver as Dask events on that topic, in order, while the task runs: at once when
it has been quiet for a while, else every ``labcluster.output.flush-interval``. A task that prints faster than
``labcluster.output.max-lines-per-second`` loses the excess, and the next message says how many lines were dropped.

Everything else a worker prints (Dask's own output, tasks started outside a scope) goes where it always went.
Thread workers in the driver's process (``processes=False``) print straight to the driver: nothing is routed.

The driver side is :func:`listen`: it calls a sink with each message; the notebook layer's sink writes it into the
scope's cell.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from .. import config
from ..cluster.worker_process import process_worker
from ..scheduler.protocol import ORIGIN
from ..text import plural
from .blocking import current_task_key
from .scopes import inheriting, output_topic

#: the capture of the task running in this thread or coroutine (None: its output is not routed)
_capture: contextvars.ContextVar[_Capture | None] = contextvars.ContextVar("labcluster_output", default=None)
_install_lock = threading.Lock()
_active: set[_Capture] = set()
_flusher: threading.Thread | None = None


class _Capture:
    """One task's (or actor call's) output on its way to the driver."""

    def __init__(self, worker: Any, topic: str, scope: str, task: str) -> None:
        self.worker, self.topic, self.scope, self.task = worker, topic, scope, task
        self.chunks: list[tuple[str, str]] = []  # (stream, text), complete lines
        self.partial = {"stdout": "", "stderr": ""}
        self.lock = threading.Lock()
        self.sent_at = 0.0
        self.window_start = time.monotonic()
        self.window_lines = 0
        self.dropped = 0
        self.max_lines = int(config.get("output.max-lines-per-second"))
        self.interval = config.seconds("output.flush-interval")

    def write(self, stream: str, text: str) -> None:
        with self.lock:
            text = self.partial[stream] + text
            head, sep, tail = text.rpartition("\n")
            self.partial[stream] = tail
            if sep:
                self._add(stream, head + "\n")
            quiet = time.monotonic() - self.sent_at >= self.interval
        if sep and quiet:
            self.flush()

    def _add(self, stream: str, text: str) -> None:
        now = time.monotonic()
        if now - self.window_start >= 1.0:
            self.window_start, self.window_lines = now, 0
        lines = text.splitlines(keepends=True)
        room = max(0, self.max_lines - self.window_lines)
        if len(lines) > room:
            self.dropped += len(lines) - room
            lines = lines[:room]
        self.window_lines += len(lines)
        if lines:
            if self.chunks and self.chunks[-1][0] == stream:
                self.chunks[-1] = (stream, self.chunks[-1][1] + "".join(lines))
            else:
                self.chunks.append((stream, "".join(lines)))

    def flush(self, final: bool = False) -> None:
        with self.lock:
            if final:
                for stream, rest in self.partial.items():
                    if rest:
                        self._add(stream, rest if rest.endswith("\n") else rest + "\n")
                        self.partial[stream] = ""
            chunks, self.chunks = self.chunks, []
            dropped, self.dropped = self.dropped, 0
            if chunks or dropped:
                self.sent_at = time.monotonic()
            if dropped and not chunks:
                chunks = [("stderr", "")]
            # under the lock: the task's thread and the flusher never send two chunks out of order (log_event only
            # queues the message on the worker's stream)
            for i, (stream, text) in enumerate(chunks):  # the count of dropped lines rides on the last
                self.worker.log_event(self.topic, {"scope": self.scope, "task": self.task,
                                                   "worker": str(self.worker.name), "stream": stream, "text": text,
                                                   "dropped": dropped if i == len(chunks) - 1 else 0})


class _Router(io.TextIOBase):
    """A worker process's ``sys.stdout`` / ``sys.stderr``: a routed task's writes go to its capture."""

    def __init__(self, name: str, inner: TextIO) -> None:
        self.name, self.inner = name, inner

    def write(self, text: str) -> int:
        capture = _capture.get()
        if capture is None:
            return self.inner.write(text)
        capture.write(self.name, text)
        return len(text)

    def flush(self) -> None:
        self.inner.flush()

    def fileno(self) -> int:
        return self.inner.fileno()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.inner, "encoding", "utf-8")


def _install() -> None:
    """Route this worker process's streams (once) and start the thread that flushes quiet captures."""
    global _flusher
    with _install_lock:
        if _flusher is not None:
            return
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if not isinstance(stream, _Router):
                setattr(sys, name, _Router(name, stream))
        _flusher = threading.Thread(target=_flush_quiet, name="labcluster-output", daemon=True)
        _flusher.start()


def _flush_quiet() -> None:
    interval = config.seconds("output.flush-interval")
    while True:
        time.sleep(interval)
        for capture in list(_active):
            if capture.chunks or capture.dropped:
                with contextlib.suppress(Exception):  # one bad flush must not stop every later one
                    capture.flush()


@contextlib.contextmanager
def routed(origin: str | None, task: str) -> Iterator[None]:
    """Route what ``task`` prints while the block runs to ``origin`` (``"<topic> <scope>"``); a no-op for None and
    outside worker processes."""
    worker = process_worker() if origin else None
    if worker is None or origin is None:
        yield
        return
    topic, _, scope = origin.partition(" ")
    _install()
    capture = _Capture(worker, topic, scope, task)
    token = _capture.set(capture)
    _active.add(capture)
    try:
        with inheriting(origin):  # the tasks it starts print to the same cell
            yield
    finally:
        _capture.reset(token)
        _active.discard(capture)
        with contextlib.suppress(Exception):  # output must never fail a task
            capture.flush(final=True)


def current_task_origin() -> str | None:
    """The origin annotation of the Dask task running in this thread (None: none, not a task thread, or a thread
    worker in the driver's process, whose prints go to the driver as they are). Cheap where nothing is routed: one
    look at this process's worker."""
    worker = process_worker()
    if worker is None:
        return None
    key = current_task_key(worker)
    if key is None:
        return None
    ts = worker.state.tasks.get(key)
    annotations = getattr(ts, "annotations", None) or {}
    value = annotations.get(ORIGIN)
    return str(value) if value else None


# -- the driver's side ---------------------------------------------------------------------------------------------

Sink = Callable[[dict[str, Any]], None]


def listen(client: Any, sink: Sink) -> Callable[[], None]:
    """Call ``sink(message)`` for each output message of this client's tasks; returns a function that stops it.
    A message: ``scope``, ``task``, ``worker``, ``stream`` ("stdout"/"stderr"), ``text``, ``dropped`` (lines lost
    to the rate limit just before this text)."""
    topic = output_topic(str(client.id))

    def handler(event: Any) -> None:
        _, msg = event
        with contextlib.suppress(Exception):  # a broken sink must not break the client's event loop
            sink(msg)

    client.subscribe_topic(topic, handler)

    def stop() -> None:
        with contextlib.suppress(Exception):
            client.unsubscribe_topic(topic)

    return stop


def as_text(msg: dict[str, Any]) -> str:
    """A message as the cell shows it: its text, then a note on the lines dropped after it."""
    dropped = int(msg.get("dropped") or 0)
    note = (f"[labcluster: {plural(dropped, 'line')} of {msg.get('task')} dropped: it printed more than "
            f"{config.get('output.max-lines-per-second')} lines/s (labcluster.output.max-lines-per-second)]\n"
            if dropped else "")
    return str(msg.get("text") or "") + note
