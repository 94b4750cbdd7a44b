"""What an execution reports while it runs and when it is done: per-stage stats, and the hook progress bars use.

>>> StageStats("Map(f)", "CPU: 1", blocks=1, rows=3, bytes=2048)
Map(f): 1 block, 3 rows, 2.0 KiB; tasks 0.00 s wall / 0.00 s CPU; span 0.00 s; at most 0 submitted at once [CPU: 1]
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..api import hooks
from ..text import plural

_UNSET: Any = object()
#: who hears how an execution is getting on (``watching``): called from the execution's thread with its stats
_watcher: contextvars.ContextVar[Callable[[Any], None] | None] = contextvars.ContextVar(
    "labcluster_data_watcher", default=_UNSET)

#: how often a watcher hears (seconds)
WATCH_EVERY = 0.1


@contextlib.contextmanager
def watching(fn: Callable[[Any], None] | None) -> Iterator[None]:
    """Executions started inside the block call ``fn(execution)`` as they go (every 0.1 s) and once at the end:
    progress bars (the demo's, the notebook's) read ``execution.stats`` and ``execution.totals``. ``None``: no one
    hears them (an unmeasured warm-up)."""
    token = _watcher.set(fn)
    try:
        yield
    finally:
        _watcher.reset(token)


def current_watcher() -> Callable[[Any], None] | None:
    """Who hears an execution started now: the innermost ``watching``'s, else the notebook layer's bars
    (``api/hooks.py``), else no one."""
    watcher = _watcher.get()
    return hooks.execution_watcher() if watcher is _UNSET else watcher


@dataclass
class StageStats:
    """What one stage did in one execution (``Dataset.stats()``)."""

    name: str
    resources: str
    blocks: int = 0
    rows: int = 0
    bytes: int = 0
    #: seconds of the tasks' own wall and CPU time, summed
    task_wall: float = 0.0
    task_cpu: float = 0.0
    first_start: float | None = None
    last_end: float | None = None
    max_in_flight: int = 0
    #: the most blocks it had out at once: running, plus finished and not yet taken downstream (the backpressure
    #: bound's measure)
    max_out: int = 0
    #: the pipelined bound on ``max_out`` it ran under (None in bulk mode)
    bound: int | None = None

    @property
    def wall(self) -> float:
        return 0.0 if self.first_start is None or self.last_end is None else self.last_end - self.first_start

    def __repr__(self) -> str:
        return (f"{self.name}: {plural(self.blocks, 'block')}, {plural(self.rows, 'row')}, {size_label(self.bytes)}; "
                f"tasks {self.task_wall:.2f} s wall / {self.task_cpu:.2f} s CPU; span {self.wall:.2f} s; at most "
                f"{self.max_in_flight} submitted at once [{self.resources}]")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "resources": self.resources, "blocks": self.blocks, "rows": self.rows,
                "bytes": self.bytes, "task_wall": self.task_wall, "task_cpu": self.task_cpu, "wall": self.wall,
                "max_in_flight": self.max_in_flight, "max_out": self.max_out, "bound": self.bound}


def size_label(n: int) -> str:
    """Bytes as the Dataset reports show them: ``"2.0 KiB"``, ``"16.0 MiB"`` (bytes below 1 KiB)."""
    if n < 1024:
        return f"{n} bytes"
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"
