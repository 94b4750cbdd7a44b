"""Streaming generator tasks on the scheduler (``num_returns="streaming"``): the refs each has yielded so far.

The task's worker puts each value it yields and pushes the object's key here (``labcluster_stream_push``); the
extension makes the task's caller a holder of that key at once (so the object outlives the worker's own ref), and
the caller's ``ObjectRefGenerator`` reads the keys in order (``labcluster_stream_next``, waiting for the next one).

>>> import asyncio
>>> streams = Streams()
>>> streams.push("gen-1", "put-a")
>>> asyncio.run(streams.next("gen-1", 0, timeout=0))
{'key': 'put-a'}
>>> streams.push("gen-1", done=True)
>>> asyncio.run(streams.next("gen-1", 1, timeout=0))
{'done': True}
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


class Streams:
    """Per streaming task: the keys it yielded, whether it is done, and waits for the next key."""

    def __init__(self) -> None:
        self.table: dict[str, dict[str, Any]] = {}

    def _entry(self, stream: str) -> dict[str, Any]:
        entry = self.table.get(stream)
        if entry is None:
            entry = self.table[stream] = {"keys": [], "done": False, "changed": asyncio.Event()}
        return entry

    def push(self, stream: str, key: str | None = None, done: bool = False) -> None:
        entry = self._entry(stream)
        if key is not None:
            entry["keys"].append(key)
        if done:
            entry["done"] = True
        entry["changed"].set()
        entry["changed"] = asyncio.Event()

    async def next(self, stream: str, index: int, timeout: float) -> dict[str, Any]:
        """The ``index``-th key the task yielded, ``{"done": True}`` past the last, or ``{"pending": True}`` when
        nothing came within ``timeout`` seconds."""
        entry = self._entry(stream)
        if index >= len(entry["keys"]) and not entry["done"] and timeout > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(entry["changed"].wait(), timeout)
        if index < len(entry["keys"]):
            return {"key": entry["keys"][index]}
        return {"done": True} if entry["done"] else {"pending": True}

    def close(self, stream: str, read: int) -> list[str]:
        """Forget the stream; returns the keys past the first ``read``, which its caller never read."""
        entry = self.table.pop(stream, None)
        return list(entry["keys"][read:]) if entry is not None else []
