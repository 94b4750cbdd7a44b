"""``lc.util.ActorPool``: spread work over a fixed set of actors (Ray's ``ray.util.ActorPool``).

>>> pool = lc.util.ActorPool([Model.remote(), Model.remote()])          # doctest: +SKIP
>>> list(pool.map(lambda actor, x: actor.predict.remote(x), range(4)))  # doctest: +SKIP
[0, 2, 4, 6]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..api.actors import ActorHandle
from ..api.objects import get, wait
from ..api.refs import ObjectRef

Submit = Callable[[ActorHandle, Any], ObjectRef]


class ActorPool:
    """Run ``fn(actor, value)`` on whichever actor is idle; results in submission order (``get_next``) or as
    they finish (``get_next_unordered``)."""

    def __init__(self, actors: Iterable[ActorHandle]) -> None:
        self._idle: deque[ActorHandle] = deque(actors)
        if not self._idle:
            raise ValueError("ActorPool needs at least one actor")
        self._running: dict[ObjectRef, tuple[int, ActorHandle]] = {}
        self._queued: deque[tuple[Submit, Any]] = deque()
        self._next_submit = 0
        self._next_return = 0
        self._done: dict[int, ObjectRef] = {}

    def __repr__(self) -> str:
        return f"ActorPool(idle={len(self._idle)}, running={len(self._running)}, queued={len(self._queued)})"

    def submit(self, fn: Submit, value: Any) -> None:
        """Schedule ``fn(actor, value)`` on an idle actor, or queue it until one is free."""
        if self._idle:
            actor = self._idle.popleft()
            self._running[fn(actor, value)] = (self._next_submit, actor)
            self._next_submit += 1
        else:
            self._queued.append((fn, value))

    def has_next(self) -> bool:
        return bool(self._running or self._queued or self._done)

    def has_free(self) -> bool:
        return bool(self._idle) and not self._queued

    def _finish(self, ref: ObjectRef) -> int:
        index, actor = self._running.pop(ref)
        self._idle.append(actor)
        if self._queued:
            self.submit(*self._queued.popleft())
        return index

    def get_next(self, timeout: float | None = None) -> Any:
        """The next result in submission order (TimeoutError after ``timeout`` seconds)."""
        if not self.has_next():
            raise StopIteration("no more results to get")
        index = self._next_return
        while index not in self._done:
            ref = next((r for r, (i, _) in self._running.items() if i == index), None)
            if ref is None:
                raise StopIteration("no more results to get")
            ready, _ = wait([ref], timeout=timeout)
            if not ready:
                raise TimeoutError(f"ActorPool.get_next timed out after {timeout}s")
            self._done[self._finish(ref)] = ref
        self._next_return += 1
        return get(self._done.pop(index))

    def get_next_unordered(self, timeout: float | None = None) -> Any:
        """Whichever result finishes first (TimeoutError after ``timeout`` seconds)."""
        if not self._running and not self._queued:
            raise StopIteration("no more results to get")
        ready, _ = wait(list(self._running), num_returns=1, timeout=timeout)
        if not ready:
            raise TimeoutError(f"ActorPool.get_next_unordered timed out after {timeout}s")
        self._finish(ready[0])
        self._next_return += 1
        return get(ready[0])

    def map(self, fn: Submit, values: Iterable[Any]) -> Iterator[Any]:
        """Results of ``fn(actor, v)`` for every value, in order."""
        for v in values:
            self.submit(fn, v)
        while self.has_next():
            yield self.get_next()

    def map_unordered(self, fn: Submit, values: Iterable[Any]) -> Iterator[Any]:
        """Results of ``fn(actor, v)`` for every value, as they finish."""
        for v in values:
            self.submit(fn, v)
        while self._running or self._queued:
            yield self.get_next_unordered()

    def push(self, actor: ActorHandle) -> None:
        """Add an idle actor to the pool."""
        self._idle.append(actor)
        if self._queued:
            self.submit(*self._queued.popleft())

    def pop_idle(self) -> ActorHandle | None:
        """Remove and return an idle actor, or None if all are busy."""
        return self._idle.popleft() if self.has_free() else None
